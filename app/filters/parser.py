"""`parse()` and `parse_value_filter()`: filter text → our AST (RFC 7644 §3.4.2.2, §3.5.2).

The text goes through our literal pass (`app.filters.literals`), then scim2-filter-parser
0.7.0's lexer and parser, and their tree is walked into ours (`app.filters.build`). Their lexer
raises `ValueError`, their parser `SCIMParserError` and, on odd input, other exceptions: every
failure leaves `parse()` as `InvalidFilter` (400 `invalidFilter`), and so does a filter over
the limits the app's Config sets (`FILTER_MAX_LENGTH`, `FILTER_MAX_NODES`, `FILTER_MAX_DEPTH`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from scim2_filter_parser import ast as their
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError

from app.config import Config
from app.errors import InvalidFilter
from app.filters.build import Builder
from app.filters.literals import Prepared, prepare
from app.filters.tree import And, Expr, Not, Or, ValuePath
from scim_schemas import Attribute, ResourceType


@dataclass(frozen=True)
class Limits:
    """How large a filter may be; callers pass the app's settings, the defaults are Config's."""

    max_length: int = Config.filter_max_length
    max_nodes: int = Config.filter_max_nodes
    max_depth: int = Config.filter_max_depth


DEFAULT_LIMITS = Limits()


def parse(
    text: str,
    resource_type: ResourceType,
    *,
    max_length: int = DEFAULT_LIMITS.max_length,
    max_nodes: int = DEFAULT_LIMITS.max_nodes,
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> Expr:
    """Parse a `filter` (RFC 7644 §3.4.2.2) against a resource type's schemas.

    Raises InvalidFilter, and nothing else, for any text that is not a valid filter, names an
    unknown attribute, compares with an operator or value the attribute's type does not allow,
    or exceeds a limit.
    """
    limits = Limits(max_length, max_nodes, max_depth)
    # Without other resource types no attribute is absent, so the result is an expression.
    return cast(Expr, _guarded(text, resource_type, None, limits))


def parse_across(
    text: str,
    resource_types: Sequence[ResourceType],
    *,
    max_length: int = DEFAULT_LIMITS.max_length,
    max_nodes: int = DEFAULT_LIMITS.max_nodes,
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> dict[str, Expr | bool]:
    """A filter searching several resource types at once (`POST /.search` at the root, RFC 7644
    §3.4.3), parsed for each of them, by name.

    RFC 7644 §3.4.2.1: an attribute that some of them lack is treated, for those, "as if there
    is no attribute value", so a condition on it is constant there: True means every resource
    of that type matches, False none. An attribute none of them defines is still InvalidFilter,
    and so is anything `parse()` refuses for any one of them.
    """
    limits = Limits(max_length, max_nodes, max_depth)
    return {
        rtype.name: _guarded(
            text, rtype, None, limits, tuple(o for o in resource_types if o is not rtype)
        )
        for rtype in resource_types
    }


def parse_value_filter(
    text: str,
    attribute: Attribute,
    resource_type: ResourceType,
    *,
    max_length: int = DEFAULT_LIMITS.max_length,
    max_nodes: int = DEFAULT_LIMITS.max_nodes,
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> Expr:
    """Parse the filter inside a PATCH path's brackets, relative to `attribute`.

    `emails[type eq "work"]` → `parse_value_filter('type eq "work"', emails, User)`; the
    result's AttrRefs are `AttrRef(emails, sub)` (RFC 7644 §3.5.2, valuePath of §3.4.2.2).
    """
    if not isinstance(attribute, Attribute) or not attribute.is_complex:
        name = getattr(attribute, "name", attribute)
        raise InvalidFilter(f"'{name}' has no sub-attributes to filter on.")
    limits = Limits(max_length, max_nodes, max_depth)
    return cast(Expr, _guarded(text, resource_type, attribute, limits))


def _guarded(
    text: Any,
    resource_type: ResourceType,
    parent: Attribute | None,
    limits: Limits,
    others: tuple[ResourceType, ...] = (),
) -> Expr | bool:
    try:
        return _parse(text, resource_type, parent, limits, others)
    except InvalidFilter:
        raise
    except RecursionError as exc:
        raise InvalidFilter("The filter is too complex.") from exc
    except Exception as exc:
        raise InvalidFilter("The filter could not be parsed.") from exc


def _parse(
    text: Any,
    resource_type: ResourceType,
    parent: Attribute | None,
    limits: Limits,
    others: tuple[ResourceType, ...],
) -> Expr | bool:
    if not isinstance(text, str):
        raise InvalidFilter("The filter must be a string.")
    if len(text) > limits.max_length:
        raise InvalidFilter(
            f"The filter is longer than the limit of {limits.max_length} characters."
        )
    if not text.strip():
        raise InvalidFilter("The filter is empty.")
    prepared = prepare(text, limits.max_depth)
    tree = _run_their_parser(prepared)
    expr = Builder(resource_type, prepared, limits.max_nodes, others).filter(tree, parent)
    if not isinstance(expr, bool) and _depth(expr) > limits.max_depth:
        raise InvalidFilter(
            f"The filter is nested deeper than the limit of {limits.max_depth} levels."
        )
    return expr


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


# Their trees by the text they were parsed from. That text has its literals replaced by
# placeholders, so it is the filter's shape alone: an IdP's look-ups (`userName eq "…"` with
# a different name each time) share one entry, and their lexer and parser, the slowest part of
# a look-up, run once per shape. Bounded; trees are only read afterwards.
_TREES: dict[str, their.Filter] = {}
_TREES_MAX = 512


def _run_their_parser(prepared: Prepared) -> their.Filter:
    """Run scim2-filter-parser's lexer and parser (once per shape; see `_TREES`)."""
    tree = _TREES.get(prepared.text)
    if tree is None:
        tree = _parse_shape(prepared)
        if len(_TREES) >= _TREES_MAX:
            _TREES.clear()
        _TREES[prepared.text] = tree
    return tree


def _parse_shape(prepared: Prepared) -> their.Filter:
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


def _describe(prepared: Prepared, token: Any) -> str:
    value = str(token.value)
    if token.type == "COMP_VALUE" and value.startswith("#") and value[1:].isdecimal():
        index = int(value[1:])
        if index < len(prepared.literals):
            return f"value {prepared.source(prepared.literals[index])}"
    if token.type == "SUBATTR":
        value = "." + value
    return f"'{value}'"
