"""SCIM filters (RFC 7644 §3.4.2.2): text → our own immutable AST → in-memory evaluation.

Pipeline. `parse()` scans the text once itself (string, number and bare-word literals), hands
the rest to scim2-filter-parser 0.7.0's lexer and parser, and walks *their* AST into ours while
resolving every attribute against the schema documents. Nothing else of that package is used:
its transpilers look names up case-sensitively, silently drop unknown attributes, ignore
`caseExact` and do not escape `%`/`_` (see DESIGN.md, "Filters"). The database layer compiles
the same AST into SQL; `matches()` is the reference both are tested against.

Worked around in scim2-filter-parser 0.7.0:

* Its lexer reads numbers one digit at a time (`x eq 42` fails), rejects decimals, and ends a
  string at the first `"` even when escaped (`"a\\"b"`). We therefore replace every literal in
  value position, and every quoted string anywhere, by a placeholder string `"#<n>"` before
  lexing; the literal itself is decoded by us (strings with `json.loads`, so all RFC 8259
  escapes work; numbers by the RFC 8259 grammar) and put back when we walk their AST.
* Its operator table gives `and` and `or` the same precedence, so `a or b and c` comes out as
  `(a or b) and c`. We flatten each parenthesis level back into its operand/operator sequence
  (their AST marks parentheses with an extra `Filter` wrapper) and rebuild it with `and`
  binding tighter than `or`, as RFC 7644 §3.4.2.2 requires.
* It raises `ValueError` (lexer), `SCIMParserError` (parser) and, on odd input, other
  exceptions: every failure leaves `parse()` as `InvalidFilter` (400 `invalidFilter`).

Leniency (deliberate, and only where the grammar stays unambiguous):

* Bare-word values, as in Entra ID's documentation (`externalId eq jyoung`): a token right after
  a comparison operator that is not a quoted string, not `true`/`false`/`null`, not a number
  and not a keyword (`and or not pr eq ne co sw ew gt ge lt le`) is read as a string. A bare
  token that starts like a number (digit, `-`, `+`, `.`) must be a valid number; quote it
  otherwise (`externalId eq "5f1c-…"`).
* `true`, `false` and `null` are accepted in any letter case (`active eq True`).
* `emails[type eq "work"].value eq "x"` (a value path followed by a sub-attribute, sent by
  Entra ID) becomes `ValuePath(emails, type eq "work" and value eq "x")`, so both conditions
  bind to the same e-mail.
* A dateTime literal without a UTC offset is read as UTC.

Normalisation (so the database compiler has fewer cases):

* A comparison on a complex attribute that has a `value` sub-attribute compares that
  sub-attribute (`emails co "x"` ≡ `emails.value co "x"`, `members eq "<id>"`, RFC 7644 §3.4.2.2).
* `x eq null` becomes `not (x pr)` and `x ne null` becomes `x pr`: unassigned, null and empty
  are the same state (RFC 7643 §2.5). `Compare.value` is therefore never None; other operators
  with `null` are refused.
* dateTime literals become timezone-aware `datetime` objects.

Evaluation (`matches`), from RFC 7644 §3.4.2.2:

* A comparison looks at every value of the attribute (each element of a multi-valued
  attribute); it matches if any value satisfies it. An attribute with no value counts as one
  null value, and a null value satisfies only `ne`: `title ne "x"` matches a user without a
  title ("the attribute and operator values are not identical"), so for a single-valued
  attribute `ne` is exactly `not eq`. A stored value of the wrong type counts as null.
* Strings compare folded (`scim_schemas.fold`, lower-casing as the database does) unless the
  attribute is `caseExact`; `gt`/`ge`/`lt`/`le` on strings compare code points (of the folded
  text), on dateTimes chronologically.
* `pr` is false for missing, null, `""`, `[]`, and complex values whose members are all absent.

Attributes that are never returned (`password`) cannot be filtered on at all: a filter would
let a client test guesses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from typing import Any, TypeAlias

from scim2_filter_parser import ast as their
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError

from app.errors import InvalidFilter
from scim_schemas import Attribute, ResourceType, fold

__all__ = [
    "And",
    "AttrRef",
    "Compare",
    "Expr",
    "Not",
    "Or",
    "Present",
    "Value",
    "ValuePath",
    "matches",
    "matches_element",
    "parse",
    "parse_datetime",
    "parse_value_filter",
    "render",
]

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
SUBSTRING_OPS = frozenset({"co", "sw", "ew"})
KEYWORDS = COMPARE_OPS | {"pr", "and", "or", "not"}
STRING_TYPES = frozenset({"string", "reference", "binary"})

MAX_LENGTH = 4096
MAX_NODES = 200
MAX_DEPTH = 20

_INT64 = 2**63

Value: TypeAlias = str | bool | int | float | datetime


# --------------------------------------------------------------------------------------------
# The AST
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttrRef:
    """A resolved attribute: the top-level `attribute` and, if named, its `sub`-attribute."""

    attribute: Attribute
    sub: Attribute | None = None

    @property
    def target(self) -> Attribute:
        """The attribute whose values are compared: the sub-attribute if there is one."""
        return self.sub if self.sub is not None else self.attribute

    @property
    def path(self) -> str:
        """The canonical path; extension attributes carry their schema URN (RFC 7644 §3.10)."""
        base = self.attribute.name
        if self.attribute.is_extension:
            base = f"{self.attribute.schema}:{base}"
        return f"{base}.{self.sub.name}" if self.sub is not None else base


@dataclass(frozen=True, slots=True)
class Compare:
    """`attr op value` with op one of eq ne co sw ew gt ge lt le (lowercase)."""

    attr: AttrRef
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class Present:
    """`attr pr`: the attribute has a non-empty value."""

    attr: AttrRef


@dataclass(frozen=True, slots=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    expr: Expr


@dataclass(frozen=True, slots=True)
class ValuePath:
    """`attr[filter]`: `filter` must hold for one and the same value of `attr`.

    The inner filter's AttrRefs are `AttrRef(attr.attribute, sub)` (RFC 7644 §3.4.2.2, "[ ]").
    """

    attr: AttrRef
    filter: Expr


Expr: TypeAlias = Compare | Present | And | Or | Not | ValuePath


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def parse(
    text: str,
    resource_type: ResourceType,
    *,
    max_length: int = MAX_LENGTH,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
) -> Expr:
    """Parse a `filter` (RFC 7644 §3.4.2.2) against a resource type's schemas.

    Raises InvalidFilter, and nothing else, for any text that is not a valid filter, names an
    unknown attribute, compares with an operator or value the attribute's type does not allow,
    or exceeds a limit.
    """
    limits = _Limits(max_length, max_nodes, max_depth)
    return _guarded(text, resource_type, None, limits)


def parse_value_filter(
    text: str,
    attribute: Attribute,
    resource_type: ResourceType,
    *,
    max_length: int = MAX_LENGTH,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
) -> Expr:
    """Parse the filter inside a PATCH path's brackets, relative to `attribute`.

    `emails[type eq "work"]` → `parse_value_filter('type eq "work"', emails, User)`; the
    result's AttrRefs are `AttrRef(emails, sub)` (RFC 7644 §3.5.2, valuePath of §3.4.2.2).
    """
    if not isinstance(attribute, Attribute) or not attribute.is_complex:
        name = getattr(attribute, "name", attribute)
        raise InvalidFilter(f"'{name}' has no sub-attributes to filter on.")
    limits = _Limits(max_length, max_nodes, max_depth)
    return _guarded(text, resource_type, attribute, limits)


@dataclass(frozen=True)
class _Limits:
    max_length: int
    max_nodes: int
    max_depth: int


def _guarded(
    text: Any, resource_type: ResourceType, parent: Attribute | None, limits: _Limits
) -> Expr:
    try:
        return _parse(text, resource_type, parent, limits)
    except InvalidFilter:
        raise
    except RecursionError as exc:
        raise InvalidFilter("The filter is too complex.") from exc
    except Exception as exc:
        raise InvalidFilter("The filter could not be parsed.") from exc


def _parse(
    text: Any, resource_type: ResourceType, parent: Attribute | None, limits: _Limits
) -> Expr:
    if not isinstance(text, str):
        raise InvalidFilter("The filter must be a string.")
    if len(text) > limits.max_length:
        raise InvalidFilter(
            f"The filter is longer than the limit of {limits.max_length} characters."
        )
    if not text.strip():
        raise InvalidFilter("The filter is empty.")
    prepared = _prepare(text, limits.max_depth)
    tree = _run_their_parser(prepared)
    builder = _Builder(resource_type, prepared, limits)
    expr = builder.filter(tree, parent)
    if _depth(expr) > limits.max_depth:
        raise InvalidFilter(
            f"The filter is nested deeper than the limit of {limits.max_depth} levels."
        )
    return expr


# --- our literal pass ------------------------------------------------------------------------

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_PUNCTUATION = "()[]"


@dataclass(frozen=True)
class _Literal:
    kind: str  # string, bare, number, boolean, null
    value: str | int | float | bool | None
    start: int  # span in the original text
    end: int


@dataclass
class _Prepared:
    """The text handed to their lexer (literals replaced by `"#<n>"`) and the literals."""

    original: str
    text: str = ""
    literals: list[_Literal] = field(default_factory=list)
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

    def source(self, literal: _Literal) -> str:
        return self.original[literal.start : literal.end]


def _prepare(text: str, max_depth: int) -> _Prepared:
    """Find the literals ourselves (RFC 7644 §3.4.2.2 compValue, RFC 8259 string and number).

    Also checks the nesting of `(` and `[` before anything recursive walks the filter.
    """
    prepared = _Prepared(text)
    pieces: list[str] = []
    size = 0  # length of the text built so far
    recent: list[tuple[str, str]] = []  # the last significant tokens: (kind, text)
    depth = 0
    i, n = 0, len(text)

    def emit_literal(literal: _Literal) -> None:
        nonlocal size
        placeholder = f'"#{len(prepared.literals)}"'
        prepared.spans.append((size, size + len(placeholder), literal.start, literal.end))
        prepared.literals.append(literal)
        pieces.append(placeholder)
        size += len(placeholder)
        recent.append(("literal", ""))

    while i < n:
        char = text[i]
        if char.isspace():
            pieces.append(char)
            size += 1
            i += 1
        elif char in _PUNCTUATION:
            if char in "([":
                depth += 1
                if depth > max_depth:
                    raise InvalidFilter(
                        f"The filter is nested deeper than the limit of {max_depth} levels."
                    )
            else:
                depth = max(depth - 1, 0)
            pieces.append(char)
            size += 1
            recent.append(("punct", char))
            i += 1
        elif char == '"':
            end = _string_end(text, i)
            emit_literal(_Literal("string", _decode_string(text, i, end), i, end))
            i = end
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] not in '()[]"':
                end += 1
            word = text[i:end]
            if _in_value_position(recent):
                emit_literal(_bare_literal(word, i, end, recent[-1][1]))
            else:
                pieces.append(word)
                size += len(word)
                recent.append(("word", word))
            i = end
        del recent[:-2]
    prepared.text = "".join(pieces)
    return prepared


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


def _bare_literal(word: str, start: int, end: int, op: str) -> _Literal:
    """Classify an unquoted token in value position: true/false/null, number, or bare word."""
    lowered = word.lower()
    if lowered in ("true", "false"):
        return _Literal("boolean", lowered == "true", start, end)
    if lowered == "null":
        return _Literal("null", None, start, end)
    if _NUMBER.fullmatch(word):
        if any(c in word for c in ".eE"):
            number: int | float = float(word)
            if not math.isfinite(number):
                raise InvalidFilter(f"The number at position {start} is out of range.")
        else:
            number = int(word)
        return _Literal("number", number, start, end)
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
    return _Literal("bare", word, start, end)


# --- their lexer and parser ------------------------------------------------------------------


# Their trees by the text they were parsed from. That text has its literals replaced by
# placeholders, so it is the filter's shape alone: an IdP's look-ups (`userName eq "…"` with
# a different name each time) share one entry, and their lexer and parser, the slowest part of
# a look-up, run once per shape. Bounded; trees are only read afterwards.
_TREES: dict[str, their.Filter] = {}
_TREES_MAX = 512


def _run_their_parser(prepared: _Prepared) -> their.Filter:
    """Run scim2-filter-parser's lexer and parser (once per shape; see `_TREES`)."""
    tree = _TREES.get(prepared.text)
    if tree is None:
        tree = _parse_shape(prepared)
        if len(_TREES) >= _TREES_MAX:
            _TREES.clear()
        _TREES[prepared.text] = tree
    return tree


def _parse_shape(prepared: _Prepared) -> their.Filter:
    """Run scim2-filter-parser's lexer and parser; turn every failure into InvalidFilter."""
    last: list[Any] = [None]
    finished = [False]

    def tokens() -> Iterator[Any]:
        for token in SCIMLexer().tokenize(prepared.text):
            last[0] = token
            yield token
        finished[0] = True

    try:
        tree = SCIMParser().parse(tokens())
    except SCIMParserError as exc:
        token = last[0]
        if finished[0] or token is None:
            raise InvalidFilter("The filter ends unexpectedly.") from exc
        raise InvalidFilter(
            f"Unexpected {_describe(prepared, token)} at position {prepared.position(token.index)}."
        ) from exc
    except ValueError as exc:  # their lexer: "Illegal character in filter query"
        where = last[0].end if last[0] is not None else 0
        while where < len(prepared.text) and prepared.text[where] in " \t":
            where += 1
        char = prepared.text[where] if where < len(prepared.text) else "?"
        raise InvalidFilter(
            f"Unexpected character {char!r} at position {prepared.position(where)}."
        ) from exc
    if not isinstance(tree, their.Filter):
        raise InvalidFilter("The filter could not be parsed.")
    return tree


def _describe(prepared: _Prepared, token: Any) -> str:
    value = str(token.value)
    if token.type == "COMP_VALUE" and value.startswith("#") and value[1:].isdecimal():
        index = int(value[1:])
        if index < len(prepared.literals):
            return f"value {prepared.source(prepared.literals[index])}"
    if token.type == "SUBATTR":
        value = "." + value
    return f"'{value}'"


# --- walking their AST into ours -------------------------------------------------------------


def _sequence(node: Any) -> list[Any]:
    """The operands and `and`/`or` operators of one parenthesis level, in text order.

    Iterative, so a long `a or b or c …` chain cannot exhaust the stack.
    """
    out: list[Any] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if (
            isinstance(item, their.Filter)
            and isinstance(item.expr, their.LogExpr)
            and not item.negated
            and item.namespace is None
        ):
            log = item.expr
            stack.extend((log.expr2, str(log.op).lower(), log.expr1))
        else:
            out.append(item)
    return out


def _unexpected() -> InvalidFilter:
    return InvalidFilter("The filter could not be parsed.")


class _Builder:
    """Walk scim2-filter-parser's AST into ours, validating against the schema as we go."""

    def __init__(self, resource_type: ResourceType, prepared: _Prepared, limits: _Limits):
        self.resource_type = resource_type
        self.prepared = prepared
        self.limits = limits
        self.count = 0
        self.used: set[int] = set()

    def add(self, node: Expr) -> Expr:
        self.count += 1
        if self.count > self.limits.max_nodes:
            raise InvalidFilter(
                f"The filter has more than the limit of {self.limits.max_nodes} expressions."
            )
        return node

    def filter(self, node: Any, parent: Attribute | None) -> Expr:
        """One parenthesis level; `and` binds tighter than `or` (RFC 7644 §3.4.2.2)."""
        items = _sequence(node)
        operands = [self.atom(item, parent) for item in items[0::2]]
        groups: list[list[Expr]] = [[operands[0]]]
        for op, operand in zip(items[1::2], operands[1:], strict=True):
            if op == "and":
                groups[-1].append(operand)
            elif op == "or":
                groups.append([operand])
            else:
                raise _unexpected()
        conjunctions = [
            reduce(lambda left, right: self.add(And(left, right)), group) for group in groups
        ]
        return reduce(lambda left, right: self.add(Or(left, right)), conjunctions)

    def atom(self, node: Any, parent: Attribute | None) -> Expr:
        if not isinstance(node, their.Filter):
            raise _unexpected()
        if node.namespace is not None:
            return self.value_path(node.namespace, node.expr, parent)
        inner = node.expr
        if node.negated:
            return self.add(Not(self.filter(inner, parent)))
        if isinstance(inner, their.Filter):  # parentheses
            return self.filter(inner, parent)
        if isinstance(inner, their.AttrExpr):
            return self.attr_exp(inner, parent)
        raise _unexpected()

    def value_path(self, namespace: Any, inner: Any, parent: Attribute | None) -> Expr:
        attribute = self.value_path_attribute(namespace, parent)
        if namespace.sub_attr is not None:
            raise InvalidFilter(
                f"'[...]' must follow a complex attribute, not a sub-attribute: write "
                f"'{attribute.name}[...]', not '{attribute.name}.{namespace.sub_attr.value}[...]'."
            )
        return self.add(ValuePath(AttrRef(attribute), self.filter(inner, attribute)))

    def value_path_attribute(self, namespace: Any, parent: Attribute | None) -> Attribute:
        if parent is not None:
            raise InvalidFilter(f"Filters in '[...]' cannot be nested inside '{parent.name}[...]'.")
        if not isinstance(namespace, their.AttrPath) or not isinstance(namespace.attr_name, str):
            raise InvalidFilter("Filters in '[...]' cannot be nested.")
        name = namespace.attr_name
        path = f"{namespace.uri}:{name}" if namespace.uri else name
        resolved = self.resource_type.resolve(path)
        if resolved is None:
            raise _unknown(path)
        attribute = resolved.attribute
        if not attribute.is_complex:
            raise InvalidFilter(
                f"'{path}' is not a complex attribute, so it cannot be filtered with '[...]'."
            )
        return attribute

    def attr_exp(self, node: Any, parent: Attribute | None) -> Expr:
        op = str(node.value).lower()
        path = node.attr_path
        if not isinstance(path, their.AttrPath):
            raise _unexpected()
        if isinstance(path.attr_name, their.Filter):
            return self.entra_value_path(path.attr_name, op, node.comp_value, parent)
        return self.condition(self.ref(path, parent), op, node.comp_value)

    def entra_value_path(
        self, value_path: Any, op: str, comp_value: Any, parent: Attribute | None
    ) -> Expr:
        """`emails[type eq "work"].value eq "x"` → `emails[type eq "work" and value eq "x"]`.

        Not in the RFC grammar, but Entra ID sends it; the sub-attribute condition must hold
        for the same element as the bracketed filter.
        """
        namespace = value_path.namespace
        attribute = self.value_path_attribute(namespace, parent)
        if namespace.sub_attr is None:
            raise InvalidFilter(
                f"After '{attribute.name}[...]' name a sub-attribute to compare "
                f"(e.g. '{attribute.name}[...].value eq ...')."
            )
        sub = attribute.sub(str(namespace.sub_attr.value))
        if sub is None:
            raise _unknown(f"{attribute.name}.{namespace.sub_attr.value}")
        inner = self.filter(value_path.expr, attribute)
        condition = self.condition(AttrRef(attribute, sub), op, comp_value)
        return self.add(ValuePath(AttrRef(attribute), self.add(And(inner, condition))))

    def ref(self, path: Any, parent: Attribute | None) -> AttrRef:
        name, uri = path.attr_name, path.uri
        sub = str(path.sub_attr.value) if path.sub_attr is not None else None
        if not isinstance(name, str):
            raise _unexpected()
        if parent is not None:
            if uri is not None or sub is not None:
                written = f"{uri}:{name}" if uri else name
                written = f"{written}.{sub}" if sub else written
                raise InvalidFilter(
                    f"Inside '{parent.name}[...]' name a sub-attribute of '{parent.name}', "
                    f"not '{written}'."
                )
            target = parent.sub(name)
            if target is None:
                raise _unknown(f"{parent.name}.{name}")
            return AttrRef(parent, target)
        full = f"{uri}:{name}" if uri else name
        full = f"{full}.{sub}" if sub is not None else full
        resolved = self.resource_type.resolve(full)
        if resolved is None:
            raise _unknown(full)
        return AttrRef(resolved.attribute, resolved.sub_attribute)

    def literal(self, comp_value: Any) -> _Literal:
        raw = getattr(comp_value, "value", None)
        if isinstance(raw, str) and raw.startswith("#") and raw[1:].isascii() and raw[1:].isdigit():
            index = int(raw[1:])
            if index < len(self.prepared.literals) and index not in self.used:
                self.used.add(index)
                return self.prepared.literals[index]
        raise _unexpected()

    def condition(self, ref: AttrRef, op: str, comp_value: Any) -> Expr:
        if "never" in (ref.attribute.returned, ref.target.returned):
            # A filter on `password` would be an oracle for guessing it (RFC 7644 §7.8 asks
            # that passwords never be exposed; RFC 7643 §7 `returned: never`).
            raise InvalidFilter(f"'{ref.path}' cannot be used in a filter.")
        if op == "pr":
            return self.add(Present(ref))
        if op not in COMPARE_OPS:
            raise InvalidFilter(f"The operator '{op}' is not supported.")
        literal = self.literal(comp_value)
        if literal.kind == "null":
            # RFC 7643 §2.5: unassigned and null are the same state.
            if op == "eq":
                return self.add(Not(self.add(Present(ref))))
            if op == "ne":
                return self.add(Present(ref))
            raise InvalidFilter(f"'{op} null' is not allowed; compare null with 'eq' or 'ne'.")
        if ref.target.is_complex:
            value_sub = ref.target.sub("value")
            if value_sub is None:
                example = next(ref.target.subs()).name
                raise InvalidFilter(
                    f"'{ref.path}' is a complex attribute; compare one of its sub-attributes "
                    f"(e.g. '{ref.path}.{example}')."
                )
            ref = AttrRef(ref.attribute, value_sub)  # RFC 7644 §3.4.2.2: emails eq → emails.value
        return self.add(Compare(ref, op, self.value(ref, op, literal)))

    def value(self, ref: AttrRef, op: str, literal: _Literal) -> Value:
        """Check the operator and value against the attribute type (RFC 7644 §3.4.2.2)."""
        target, path = ref.target, ref.path
        kind = target.type
        if op in ORDER_OPS and kind in ("boolean", "binary"):
            raise InvalidFilter(f"'{op}' cannot be used on the {kind} attribute '{path}'.")
        if op in SUBSTRING_OPS and kind not in STRING_TYPES:
            raise InvalidFilter(
                f"'{op}' only applies to string attributes; '{path}' is of type {kind}."
            )
        value = literal.value
        source = self.prepared.source(literal)
        if kind in STRING_TYPES and isinstance(value, str):
            return value
        if kind == "boolean" and isinstance(value, bool):
            return value
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            if not -_INT64 <= value < _INT64:
                raise InvalidFilter(f"The number {source} is out of range for '{path}'.")
            return value
        if kind == "decimal" and isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if kind == "dateTime" and isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is None:
                raise InvalidFilter(
                    f"'{path}' is a dateTime; {source} is not an xsd:dateTime "
                    f'(e.g. "2011-05-13T04:42:34Z").'
                )
            return parsed
        hint = "; put string values in double quotes" if kind in STRING_TYPES else ""
        raise InvalidFilter(f"'{path}' is of type {kind}; {source} is not a {kind} value{hint}.")


def _unknown(path: str) -> InvalidFilter:
    return InvalidFilter(f"Unknown attribute '{path}' in filter.")


def _depth(expr: Expr) -> int:
    """Nesting depth; a chain of the same logical operator (`a or b or c`) is one level."""
    if isinstance(expr, Not):
        return 1 + _depth(expr.expr)
    if isinstance(expr, ValuePath):
        return 1 + _depth(expr.filter)
    if isinstance(expr, And | Or):
        return 1 + max(
            _depth(child) - (type(child) is type(expr)) for child in (expr.left, expr.right)
        )
    return 1


def parse_datetime(text: str) -> datetime | None:
    """An xsd:dateTime (RFC 7643 §2.3.5) as an aware datetime; no offset means UTC."""
    if not _DATETIME.fullmatch(text):
        return None
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def render(expr: Expr, *, relative: bool = False) -> str:
    """Canonical filter text for an AST; `parse(render(e))` gives `e` back.

    `relative=True` renders sub-attribute names only, for the text inside a PATCH path's
    brackets (`parse_value_filter`).
    """
    if isinstance(expr, Compare):
        return f"{_render_path(expr.attr, relative)} {expr.op} {_render_value(expr.value)}"
    if isinstance(expr, Present):
        return f"{_render_path(expr.attr, relative)} pr"
    if isinstance(expr, Not):
        return f"not ({render(expr.expr, relative=relative)})"
    if isinstance(expr, ValuePath):
        return f"{expr.attr.path}[{render(expr.filter, relative=True)}]"
    if isinstance(expr, And | Or):
        level = _precedence(expr)
        word = "and" if isinstance(expr, And) else "or"
        left = _render_operand(expr.left, level, relative, right=False)
        right = _render_operand(expr.right, level, relative, right=True)
        return f"{left} {word} {right}"
    raise TypeError(f"not a filter expression: {expr!r}")


def _precedence(expr: Expr) -> int:
    return 1 if isinstance(expr, Or) else 2 if isinstance(expr, And) else 3


def _render_operand(expr: Expr, level: int, relative: bool, *, right: bool) -> str:
    text = render(expr, relative=relative)
    inner = _precedence(expr)
    return f"({text})" if inner < level or (right and inner == level) else text


def _render_path(ref: AttrRef, relative: bool) -> str:
    if relative and ref.sub is not None:
        return ref.sub.name
    return ref.path


def _render_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def matches(expr: Expr, resource: Mapping[str, Any]) -> bool:
    """Does `resource` (canonical attribute names, extensions under their URN) match `expr`?

    The reference semantics of RFC 7644 §3.4.2.2 for this service (see the module docstring);
    the database query compiled from the same AST must agree with it.
    """

    def get(ref: AttrRef) -> Any:
        value = _top_value(resource, ref.attribute)
        if ref.sub is None:
            return value
        return [element.get(ref.sub.name) for element in _elements(value)]

    def elements(attribute: Attribute) -> list[Mapping[str, Any]]:
        return _elements(_top_value(resource, attribute))

    return _evaluate(expr, get, elements)


def matches_element(expr: Expr, element: Mapping[str, Any]) -> bool:
    """Does one value of a multi-valued complex attribute match a value filter?

    For PATCH paths like `emails[type eq "work"]` (RFC 7644 §3.5.2); `expr` comes from
    `parse_value_filter` (or is the `filter` of a ValuePath).
    """

    def get(ref: AttrRef) -> Any:
        if ref.sub is None or not isinstance(element, Mapping):
            return None
        return element.get(ref.sub.name)

    return _evaluate(expr, get, None)


def _evaluate(
    expr: Expr,
    get: Callable[[AttrRef], Any],
    elements: Callable[[Attribute], list[Mapping[str, Any]]] | None,
) -> bool:
    if isinstance(expr, Compare):
        return any(_compare(expr, value) for value in _values(get(expr.attr)))
    if isinstance(expr, Present):
        return _present(get(expr.attr))
    if isinstance(expr, And):
        return _evaluate(expr.left, get, elements) and _evaluate(expr.right, get, elements)
    if isinstance(expr, Or):
        return _evaluate(expr.left, get, elements) or _evaluate(expr.right, get, elements)
    if isinstance(expr, Not):
        return not _evaluate(expr.expr, get, elements)
    if isinstance(expr, ValuePath):
        if elements is None:
            raise ValueError("a value path cannot be nested inside another")
        return any(matches_element(expr.filter, e) for e in elements(expr.attr.attribute))
    raise TypeError(f"not a filter expression: {expr!r}")


def _top_value(resource: Mapping[str, Any], attribute: Attribute) -> Any:
    if attribute.is_extension:
        extension = resource.get(attribute.schema)
        return extension.get(attribute.name) if isinstance(extension, Mapping) else None
    return resource.get(attribute.name)


def _elements(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list | tuple):
        return [element for element in value if isinstance(element, Mapping)]
    return []


def _values(value: Any) -> list[Any]:
    """Every value to compare; no value at all counts as one null value."""
    values = list(value) if isinstance(value, list | tuple) else [value]
    return values or [None]


def _present(value: Any) -> bool:
    """RFC 7644 §3.4.2.2 `pr`: non-empty, non-null; complex values need a present member."""
    if value is None:
        return False
    if isinstance(value, str):
        return value != ""
    if isinstance(value, list | tuple):
        return any(_present(item) for item in value)
    if isinstance(value, Mapping):
        return any(_present(item) for item in value.values())
    return True


def _comparable(attribute: Attribute, value: Any) -> Any:
    """The stored value in the type the attribute declares, or None if it is not one."""
    kind = attribute.type
    if kind in STRING_TYPES:
        return value if isinstance(value, str) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind in ("integer", "decimal"):
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if kind == "dateTime":
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return parse_datetime(value) if isinstance(value, str) else None
    return None


def _compare(expr: Compare, stored: Any) -> bool:
    target = expr.attr.target
    actual = _comparable(target, stored)
    if actual is None:
        return expr.op == "ne"  # null is "not identical" to any value
    expected = expr.value
    if isinstance(actual, str) and isinstance(expected, str) and not target.case_exact:
        actual, expected = fold(actual), fold(expected)
    op = expr.op
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "co":
        return expected in actual
    if op == "sw":
        return actual.startswith(expected)
    if op == "ew":
        return actual.endswith(expected)
    if op == "gt":
        return actual > expected
    if op == "ge":
        return actual >= expected
    if op == "lt":
        return actual < expected
    if op == "le":
        return actual <= expected
    raise ValueError(f"unknown operator {op!r}")
