"""One identity per person: the key that userName, e-mail values and group names are unique
under, and the characters a name may not carry.

Case-folding alone (`str.lower()`) let fullwidth letters, `josé` in NFD, the `ﬁ` ligature,
`STRASSE` next to `straße`, a fullwidth at sign or a zero-width space inside a name sit next to
the plain name as a different person. The
key is Unicode's NFKC case-fold (UAX #31 §5, `NFKC_Casefold`): compatibility forms become plain
letters, case is fully folded (`ß` → `ss`) and default-ignorable code points, which render as
nothing, are removed. The stored value stays as the IdP sent it; only the key is normalised.
"""

from __future__ import annotations

import unicodedata

# Default_Ignorable_Code_Point, from the Unicode Character Database's DerivedCoreProperties.txt
# (Unicode 15.1). They render as nothing, so a name with one inside looks like the name without.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),  # zero-width space, joiners, LRM, RLM
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero-width no-break space (BOM)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # unassigned specials
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0000, 0xE0FFF),  # tags and variation selectors supplement
)
_IGNORABLE_TABLE = {code: None for low, high in _DEFAULT_IGNORABLE for code in range(low, high + 1)}

# Bidi formatting characters (Unicode's Bidi_Control): they reorder how a name is displayed,
# so a name with U+202E RIGHT-TO-LEFT OVERRIDE inside shows as something else entirely.
_BIDI_CONTROLS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})


def identity_key(text: str) -> str:
    """The key two names are the same identity under: NFKC case-fold, default-ignorables removed.

    `İ` (U+0130) folds to `i` followed by a combining dot above, which no one can tell from `i`;
    the dot is dropped after an `i`, as CaseFolding.txt's Turkic mapping does, so `İSTANBUL` and
    `istanbul` are one identity. The key is stable (`identity_key` of a key is the key): the fold
    is repeated until nothing changes, which is what `NFKC_Casefold`'s closure guarantees.
    """
    if text.isascii():
        return text.lower()
    key = _fold_once(text)
    for _ in range(3):
        again = _fold_once(key)
        if again == key:
            break
        key = again
    return key


def _fold_once(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text.translate(_IGNORABLE_TABLE)).casefold()
    folded = folded.replace("i\u0307", "i")
    return unicodedata.normalize("NFKC", folded).translate(_IGNORABLE_TABLE)


def name_problem(text: str) -> str | None:
    """Why `text` cannot name a person, group, token or operator; None when it can.

    RFC 7643 §4.1.1 asks for a non-empty userName; edge white space and invisible controls are
    refused because two names that differ only by them look identical to every human who reads
    them, in the IdP, in the LMS and in the audit trail.
    """
    if not text or text.isspace():
        return "must not be empty or only white space"
    if text[0].isspace() or text[-1].isspace():
        return "must not begin or end with white space"
    for char in text:
        code = ord(char)
        if unicodedata.category(char) == "Cc":
            return f"must not contain a control character (U+{code:04X})"
        if code in _BIDI_CONTROLS:
            return f"must not contain a bidirectional formatting character (U+{code:04X})"
    return None
