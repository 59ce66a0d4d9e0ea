"""The literal pass: every value in a filter is found and decoded here, not by scim2-filter-parser.

Worked around in scim2-filter-parser 0.7.0: its lexer reads numbers one digit at a time
(`x eq 42` fails), rejects decimals, and ends a string at the first `"` even when escaped
(`"a\\"b"`). We therefore replace every literal in value position, and every quoted string
anywhere, by a placeholder string `"#<n>"` before lexing; the literal itself is decoded here
(strings with `json.loads`, so all RFC 8259 escapes work; numbers by the RFC 8259 grammar) and
put back when the builder walks their AST (`app.filters.build`).

Leniency (deliberate, and only where the grammar stays unambiguous):

* Bare-word values, as in Entra ID's documentation (`externalId eq jyoung`): a token right after
  a comparison operator that is not a quoted string, not `true`/`false`/`null`, not a number
  and not a keyword (`and or not pr eq ne co sw ew gt ge lt le`) is read as a string. A bare
  token that starts like a number (digit, `-`, `+`, `.`) must be a valid number; quote it
  otherwise (`externalId eq "5f1c-…"`).
* `true`, `false` and `null` are accepted in any letter case (`active eq True`).
* A dateTime literal without a UTC offset is read as UTC (`app.datetimes.parse`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from app.errors import InvalidFilter
from app.filters.tree import COMPARE_OPS, KEYWORDS

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_PUNCTUATION = "()[]"


@dataclass(frozen=True)
class Literal:
    """One value as written in the filter, decoded, with its span in the original text."""

    kind: str  # string, bare, number, boolean, null
    value: str | int | float | bool | None
    start: int
    end: int


@dataclass
class Prepared:
    """The text handed to their lexer (literals replaced by `"#<n>"`) and the literals."""

    original: str
    text: str = ""
    literals: list[Literal] = field(default_factory=list)
    # (start, end) in `text` and (start, end) in `original` of each placeholder
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)

    def position(self, index: int) -> int:
        """Map a position in `text` back to the original filter."""
        offset = 0
        for new_start, new_end, old_start, old_end in self.spans:
            if index < new_start:
                break
            if index < new_end:
                return old_start
            offset = old_end - new_end
        return index + offset

    def source(self, literal: Literal) -> str:
        return self.original[literal.start : literal.end]

    def placeholder(self, literal: Literal, size: int) -> str:
        """Record `literal` and return its placeholder, which starts at `size` in `text`."""
        placeholder = f'"#{len(self.literals)}"'
        self.spans.append((size, size + len(placeholder), literal.start, literal.end))
        self.literals.append(literal)
        return placeholder


def prepare(text: str, max_depth: int) -> Prepared:
    """Find the literals ourselves (RFC 7644 §3.4.2.2 compValue, RFC 8259 string and number).

    Also checks the nesting of `(` and `[` before anything recursive walks the filter.
    """
    prepared = Prepared(text)
    pieces: list[str] = []
    size = 0  # length of the text built so far
    recent: list[tuple[str, str]] = []  # the last significant tokens: (kind, text)
    depth = 0
    i, n = 0, len(text)
    while i < n:
        char, piece = text[i], None
        if char.isspace():
            piece, end = char, i + 1
        elif char in _PUNCTUATION:
            depth = _nest(depth, char, max_depth)
            piece, end = char, i + 1
            recent.append(("punct", char))
        elif char == '"':
            end = _string_end(text, i)
            literal = Literal("string", _decode_string(text, i, end), i, end)
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] not in '()[]"':
                end += 1
            word = text[i:end]
            if _in_value_position(recent):
                literal = _bare_literal(word, i, end, recent[-1][1])
            else:
                piece = word
                recent.append(("word", word))
        if piece is None:
            piece = prepared.placeholder(literal, size)
            recent.append(("literal", ""))
        pieces.append(piece)
        size += len(piece)
        i = end
        del recent[:-2]
    prepared.text = "".join(pieces)
    return prepared


def _nest(depth: int, char: str, max_depth: int) -> int:
    """The nesting depth after the bracket `char`; too deep is refused before any recursion."""
    if char not in "([":
        return max(depth - 1, 0)
    if depth + 1 > max_depth:
        raise InvalidFilter(f"The filter is nested deeper than the limit of {max_depth} levels.")
    return depth + 1


def _string_end(text: str, start: int) -> int:
    """The index just past the closing quote of the string opening at `start`."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    raise InvalidFilter(f"The string starting at position {start} has no closing quote.")


def _decode_string(text: str, start: int, end: int) -> str:
    try:
        value = json.loads(text[start:end], strict=False)
    except ValueError as exc:
        raise InvalidFilter(
            f"The string starting at position {start} has an invalid escape sequence "
            "(strings follow JSON, RFC 8259 §7)."
        ) from exc
    _check_text(value, start)
    return value


def _check_text(value: str, start: int) -> None:
    # A lone surrogate cannot be stored or sent on; PostgreSQL refuses NUL in text.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFilter(f"The value at position {start} is not valid Unicode text.") from exc
    if "\x00" in value:
        raise InvalidFilter(f"The value at position {start} contains a NUL character.")


def _in_value_position(recent: list[tuple[str, str]]) -> bool:
    """True right after `attrPath compareOp` (an attribute path ends in a word or `]`)."""
    if len(recent) < 2:
        return False
    (before_kind, before), (kind, word) = recent[-2], recent[-1]
    return (
        kind == "word" and word.lower() in COMPARE_OPS and (before_kind == "word" or before == "]")
    )


def _bare_literal(word: str, start: int, end: int, op: str) -> Literal:
    """Classify an unquoted token in value position: true/false/null, number, or bare word."""
    lowered = word.lower()
    if lowered in ("true", "false"):
        return Literal("boolean", lowered == "true", start, end)
    if lowered == "null":
        return Literal("null", None, start, end)
    if _NUMBER.fullmatch(word):
        if any(c in word for c in ".eE"):
            number: int | float = float(word)
            if not math.isfinite(number):
                raise InvalidFilter(f"The number at position {start} is out of range.")
        else:
            number = int(word)
        return Literal("number", number, start, end)
    if lowered in KEYWORDS:
        raise InvalidFilter(
            f"Expected a value after '{op}' at position {start}, found the keyword '{word}'."
        )
    if word[0] in "0123456789+-.":
        raise InvalidFilter(
            f"'{word}' at position {start} is not a valid number; "
            "put string values in double quotes."
        )
    if not word.isprintable():
        raise InvalidFilter(f"The value at position {start} contains unprintable characters.")
    _check_text(word, start)
    return Literal("bare", word, start, end)
