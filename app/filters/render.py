"""Canonical filter text for an AST (RFC 7644 §3.4.2.2): `parse(render(e))` gives `e` back.

Used to show a filter back to people and, in the property tests, to round-trip random trees.
"""

from __future__ import annotations

import json
from datetime import datetime

from app.filters.tree import And, AttrRef, Compare, Expr, Not, Or, Present, Value, ValuePath


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
