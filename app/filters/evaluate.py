"""In-memory evaluation of a filter: the reference semantics of RFC 7644 §3.4.2.2 here.

The database query compiled from the same AST (`app.store.filter_sql`) must agree with
`matches()`; the property tests check that on SQLite and PostgreSQL.

* A comparison looks at every value of the attribute (each element of a multi-valued
  attribute); it matches if any value satisfies it. An attribute with no value counts as one
  null value, and a null value satisfies only `ne`: `title ne "x"` matches a user without a
  title ("the attribute and operator values are not identical"), so for a single-valued
  attribute `ne` is exactly `not eq`. A stored value of the wrong type counts as null.
* Strings compare folded unless the attribute is `caseExact`: by `Attribute.key`, the identity
  key for names and e-mail values and lower-casing (as the database does) otherwise;
  `gt`/`ge`/`lt`/`le` on strings compare code points (of the folded text), on dateTimes
  chronologically.
* `pr` is false for missing, null, `""`, `[]`, and complex values whose members are all absent.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from app.datetimes import parse as parse_datetime
from app.filters.tree import (
    STRING_TYPES,
    AttrRef,
    Compare,
    Expr,
    Leaf,
    Present,
    ValuePath,
    fold_logic,
)
from scim_schemas import Attribute


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
    def leaf(node: Leaf) -> bool:
        if isinstance(node, Compare):
            return any(_compare(node, value) for value in _values(get(node.attr)))
        if isinstance(node, Present):
            return _present(get(node.attr))
        if isinstance(node, ValuePath):
            if elements is None:
                raise ValueError("a value path cannot be nested inside another")
            return any(matches_element(node.filter, e) for e in elements(node.attr.attribute))
        raise TypeError(f"not a filter expression: {node!r}")

    return fold_logic(expr, leaf, negate=operator.not_)


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
        actual, expected = target.key(actual), target.key(expected)
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
