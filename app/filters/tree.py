"""The filter AST (RFC 7644 §3.4.2.2): immutable nodes over attributes resolved against the schema.

Parsing builds it (`app.filters.parser`), `matches()` evaluates it in memory (the reference
semantics) and the store compiles it into SQL (`app.store.filter_sql`). `fold_logic` is the one
walk over `and`/`or`/`not` that the evaluator and the SQL compilers share.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias, TypeVar

from scim_schemas import AttrRef

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
SUBSTRING_OPS = frozenset({"co", "sw", "ew"})
KEYWORDS = COMPARE_OPS | {"pr", "and", "or", "not"}
STRING_TYPES = frozenset({"string", "reference", "binary"})

Value: TypeAlias = str | bool | int | float | datetime


@dataclass(frozen=True, slots=True)
class Compare:
    """`attr op value` with op one of eq ne co sw ew gt ge lt le (lowercase).

    `value` is never None: `eq null`/`ne null` are parsed into `Present` (RFC 7643 §2.5).
    """

    attr: AttrRef
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class Present:
    """`attr pr`: the attribute has a non-empty value."""

    attr: AttrRef


@dataclass(frozen=True, slots=True)
class And:
    """`left and right`; `and` binds tighter than `or` (RFC 7644 §3.4.2.2)."""

    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Or:
    """`left or right`."""

    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    """`not (expr)`: true where `expr` is false, including for absent attributes."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class ValuePath:
    """`attr[filter]`: `filter` must hold for one and the same value of `attr`.

    The inner filter's AttrRefs are `AttrRef(attr.attribute, sub)` (RFC 7644 §3.4.2.2, "[ ]").
    """

    attr: AttrRef
    filter: Expr


Expr: TypeAlias = Compare | Present | And | Or | Not | ValuePath
Leaf: TypeAlias = Compare | Present | ValuePath

T = TypeVar("T")


def fold_logic(
    expr: Expr,
    leaf: Callable[[Leaf], T],
    *,
    both: Callable[[T, T], T] = operator.and_,
    either: Callable[[T, T], T] = operator.or_,
    negate: Callable[[T], T] = operator.invert,
) -> T:
    """Combine the results of `leaf` over `expr`'s comparisons by its `and`/`or`/`not`.

    The defaults are Python's `&`, `|` and `~`, which build a Peewee expression; an evaluator of
    booleans passes `negate=operator.not_`. Every node that is not And/Or/Not goes to `leaf`,
    which refuses what it cannot handle.

    A run of one operator (`a or b or c …`, parsed left-deep) is combined as a balanced tree,
    in text order: combined as parsed, 100 `or`s became SQL nested 100 deep, past SQLite's
    parser stack (a 503 before issue 15). Balanced, it nests log2(n) deep.
    """

    def walk(node: Expr) -> T:
        if isinstance(node, And):
            return _balanced([walk(child) for child in _run(node)], both)
        if isinstance(node, Or):
            return _balanced([walk(child) for child in _run(node)], either)
        if isinstance(node, Not):
            return negate(walk(node.expr))
        return leaf(node)

    return walk(expr)


def _run(node: And | Or) -> list[Expr]:
    """The operands of the run of `node`'s operator that `node` heads, in text order.

    Iterative, so a long chain cannot exhaust Python's stack either."""
    kind = type(node)
    operands: list[Expr] = []
    stack: list[Expr] = [node]
    while stack:
        item = stack.pop()
        if type(item) is kind:
            stack.extend((item.right, item.left))
        else:
            operands.append(item)
    return operands


def _balanced(items: list[T], combine: Callable[[T, T], T]) -> T:
    """`combine` over `items` (at least one) as a tree of depth ceil(log2(len(items)))."""
    if len(items) == 1:
        return items[0]
    middle = len(items) // 2
    return combine(_balanced(items[:middle], combine), _balanced(items[middle:], combine))
