"""Filter ASTs (from `app.filters`) compiled into Peewee expressions, and `sortBy` into orders.

RFC 7644 §3.4.2.2 (filtering) and §3.4.2.3 (sorting), through the store's allow-list: only
attributes in the field maps (`user_mapping`, `group_mapping`) can reach SQL, and values are
always bound parameters. `co`/`sw`/`ew` use instr/substr rather than LIKE, so `%`, `_` and `\\`
in a value match literally, and comparisons are null-safe so that `not (…)` matches what the
in-memory evaluator (`app.filters.matches`, the RFC reference) matches. Multi-valued attributes
become one `owner IN (SELECT …)` per value path, so `emails[type eq "work" and value co "@x"]`
binds both conditions to the same e-mail row.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from functools import reduce
from typing import Any

import peewee
from peewee import SQL, NodeList, fn

from app import filters as f
from app.errors import InvalidFilter, InvalidValue
from app.store import group_mapping
from app.store.db import is_postgres
from app.store.models import Group, Membership, User, UserAddress, UserValue
from app.store.paging import Sort
from app.store.user_mapping import (
    ADDRESS_COLUMNS,
    SCALAR_BY_PATH,
    VALUE_ATTRIBUTES,
    VALUE_COLUMNS,
)
from scim_schemas import Attribute, fold

Expression = Any


def fold_sql(column: Expression) -> Expression:
    """`column` folded in SQL as `scim_schemas.fold` folds in Python (lower-case)."""
    return fn.LOWER(column) if is_postgres() else fn.scim_fold(column)


def contains(column: Expression, text: str) -> Expression:
    """`column` contains `text` literally: no LIKE, so `%`, `_` and `\\` are plain characters."""
    return (fn.strpos(column, text) if is_postgres() else fn.instr(column, text)) > 0


def _binary(column: Expression) -> Expression:
    """Code-point ordering on both databases (PostgreSQL would otherwise use the locale)."""
    return NodeList((column, SQL('COLLATE "C"'))) if is_postgres() else column


def _sql_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    return value


def compare(
    column: Expression, op: str, value: Any, attribute: Attribute, folded: bool = False
) -> Expression:
    """`column op value` with the attribute's case rules; `folded` means the column is folded."""
    if value is None:
        if op == "eq":
            return column.is_null()
        if op == "ne":
            return column.is_null(False)
        raise InvalidFilter(f"{op} null is not a meaningful comparison.")
    value = _sql_value(value)
    caseless = (
        isinstance(value, str)
        and attribute.type in ("string", "reference")
        and not attribute.case_exact
    )
    if caseless:
        # A folded column holds `attribute.key` of each value (the identity key for names).
        value = attribute.key(value) if folded else fold(value)
        if not folded:
            column = fold_sql(column)
    if op == "ne":
        return column.is_null() | (column != value)
    if op == "eq":
        condition = column == value
    elif op == "co":
        condition = contains(column, value)
    elif op == "sw":
        condition = fn.substr(column, 1, len(value)) == value
    elif op == "ew":
        if not value:
            condition = SQL("1 = 1")
        elif is_postgres():
            condition = fn.right(column, len(value)) == value
        else:
            condition = fn.substr(column, -len(value)) == value
    else:
        ordered = _binary(column) if isinstance(value, str) else column
        condition = {
            "gt": ordered > value,
            "ge": ordered >= value,
            "lt": ordered < value,
            "le": ordered <= value,
        }[op]
    return column.is_null(False) & condition


def _expression(column: Expression) -> Expression:
    """A column, or a scalar subquery (`groups.display`) wrapped to be used as one."""
    return column if isinstance(column, peewee.ColumnBase) else NodeList((column,))


def _present(column: Expression) -> Expression:
    """`pr` (RFC 7644 §3.4.2.2): not null, and for text (subqueries give text) not empty."""
    if isinstance(column, peewee.Field) and not _is_text(column):
        return column.is_null(False)
    column = _expression(column)
    return column.is_null(False) & (column != "")


def _is_text(column: Expression) -> bool:
    return isinstance(column, peewee.TextField | peewee.CharField)


def _any_present(columns: list[Expression]) -> Expression:
    """`pr` on a complex value: any of its stored members is present (RFC 7644 §3.4.2.2)."""
    return reduce(operator.or_, (_present(column) for column in columns))


class ChildTable:
    """How one multi-valued attribute's elements are stored and joined to their owner.

    `owner` is the column holding the owner's id; `folded` names the columns that already hold
    folded text; `sort_value`, if given, is the subquery that picks the value an owner sorts by
    (RFC 7644 §3.4.2.3: the primary one).
    """

    def __init__(
        self,
        model: type[peewee.Model],
        columns: dict[str, Any],
        owner: peewee.Field,
        folded: frozenset[str] = frozenset(),
        extra: Callable[[], Expression] | None = None,
        sort_value: Callable[[Expression], Expression] | None = None,
    ):
        self.model, self.columns, self.owner, self.folded = model, columns, owner, folded
        self.extra, self.sort_value = extra, sort_value

    def exists(self, condition: Expression | None, owner_id: Expression) -> Expression:
        """Owners with an element matching `condition`, as `owner_id IN (SELECT owner …)`.

        Not a correlated EXISTS: SQLite would scan every owner and probe per row (a full scan
        of a million users for one e-mail lookup), while IN starts from the element's index.
        Owner ids are never NULL, so `not`/`ne` keep their meaning.
        """
        where = self.extra() if self.extra is not None else None
        if condition is not None:
            where = condition if where is None else where & condition
        query = self.model.select(self.owner)
        return owner_id.in_(query.where(where) if where is not None else query)

    def any_present(self) -> Expression:
        """An element counts as present when any of its stored sub-attributes is."""
        return _any_present([c for c in self.columns.values() if isinstance(c, peewee.Field)])

    def condition(self, expr: f.Expr) -> Expression:
        """An element-level filter (inside `attr[...]`) over this table's columns."""
        return f.fold_logic(expr, self._element_leaf)

    def _element_leaf(self, expr: f.Leaf) -> Expression:
        if isinstance(expr, f.ValuePath):
            raise InvalidFilter("Nested value paths are not allowed.")
        sub = expr.attr.sub or expr.attr.attribute
        column = self.columns.get(sub.name)
        if column is None:
            raise InvalidFilter(f"{expr.attr.attribute.name}.{sub.name} cannot be filtered.")
        if isinstance(expr, f.Present):
            return _present(column)
        return compare(column, expr.op, expr.value, sub, folded=sub.name in self.folded)


def _value_table(attr: str) -> ChildTable:
    return ChildTable(
        UserValue,
        dict(VALUE_COLUMNS),
        UserValue.user,
        folded=frozenset({"value"}),
        extra=lambda: UserValue.attr == attr,
        sort_value=lambda owner: (
            UserValue.select(UserValue.value_key)
            .where((UserValue.user == owner) & (UserValue.attr == attr))
            .order_by(fn.COALESCE(UserValue.primary, False).desc(), UserValue.position)
            .limit(1)
        ),
    )


# Ids are lower-case hex (`users.new_id`), so a folded id is the id: membership lookups by
# `groups.value`/`members.value` (caseExact false in RFC 7643 §4) use the indexes as they are.
_IDS = frozenset({"value"})

_USER_CHILDREN: dict[str, ChildTable] = {name: _value_table(name) for name in VALUE_ATTRIBUTES}
_USER_CHILDREN["addresses"] = ChildTable(UserAddress, dict(ADDRESS_COLUMNS), UserAddress.user)
_GROUPS_DISPLAY = Group.select(Group.display_name).where(Group.id == Membership.group)
_USER_CHILDREN["groups"] = ChildTable(
    Membership,
    {"value": Membership.group, "display": _GROUPS_DISPLAY},
    Membership.user,
    folded=_IDS,
)

# A member's `display`: the user's displayName, else its userName (RFC 7643 §4.2). A scalar
# subquery per membership row, so a page of members costs that many primary-key lookups
# whatever the planner thinks of the user table.
MEMBER_DISPLAY = User.select(fn.COALESCE(User.display_name, User.user_name)).where(
    User.id == Membership.user
)
GROUP_MEMBERS = ChildTable(
    Membership,
    {
        "value": Membership.user,
        "display": MEMBER_DISPLAY,
        "type": peewee.Value(group_mapping.MEMBER_TYPE),
    },
    Membership.group,
    folded=_IDS,
)


class Compiler:
    """Compiles a filter for one resource type through its allow-list of columns."""

    def __init__(
        self,
        resource: str,
        owner_id: Expression,
        scalars: dict[tuple[str, str], Any],
        children: dict[str, ChildTable],
    ):
        self.resource, self.owner_id = resource, owner_id
        self.scalars, self.children = scalars, children

    def compile(self, expr: f.Expr) -> Expression:
        """A WHERE condition selecting the resources that match `expr` (RFC 7644 §3.4.2.2)."""
        return f.fold_logic(expr, self._leaf)

    def _leaf(self, expr: f.Leaf) -> Expression:
        if isinstance(expr, f.ValuePath):
            table = self._child(expr.attr.attribute)
            return table.exists(table.condition(expr.filter), self.owner_id)
        attribute, sub = expr.attr.attribute, expr.attr.sub
        if attribute.multi_valued:
            return self._multi_valued(expr, attribute, sub)
        if isinstance(expr, f.Present) and sub is None and attribute.is_complex:
            parts = [self._scalar(attribute, s) for s in attribute.subs()]
            fields = [p.field for p in parts if p is not None]
            if not fields:
                raise InvalidFilter(f"{attribute.name} cannot be filtered.")
            return _any_present(fields)
        target = sub or attribute
        if attribute.name == "meta" and target.name == "resourceType":
            return self._resource_type(expr)
        scalar = self._scalar(attribute, sub)
        if scalar is None:
            raise InvalidFilter(f"{target.path} cannot be filtered.")
        if isinstance(expr, f.Present):
            return _present(scalar.field)
        if (
            scalar.key_field is not None
            and isinstance(expr.value, str)
            and expr.op in ("eq", "ne", "sw", "co", "ew")
        ):
            return compare(scalar.key_field, expr.op, expr.value, target, folded=True)
        return compare(scalar.field, expr.op, expr.value, target)

    def _multi_valued(
        self, expr: f.Compare | f.Present, attribute: Attribute, sub: Attribute | None
    ) -> Expression:
        table = self._child(attribute)
        if sub is None:  # `emails pr`: an element with any sub-attribute present
            return table.exists(table.any_present(), self.owner_id)
        found = table.exists(table.condition(expr), self.owner_id)
        if isinstance(expr, f.Compare) and expr.op == "ne":
            # No element at all is one null value, and null is "not identical" to anything
            # (the reference evaluator's rule, app.filters.evaluate).
            found |= ~table.exists(None, self.owner_id)
        return found

    def _resource_type(self, expr: f.Compare | f.Present) -> Expression:
        """`meta.resourceType` is the same for every row of one endpoint: true or false."""
        if not isinstance(expr, f.Compare):
            return SQL("1 = 1")
        if expr.op not in ("eq", "ne"):
            raise InvalidFilter("meta.resourceType supports eq and ne only.")
        matched = (expr.value == self.resource) == (expr.op == "eq")
        return SQL("1 = 1") if matched else SQL("1 = 0")

    def _scalar(self, attribute: Attribute, sub: Attribute | None) -> Any:
        path = f"{attribute.name}.{sub.name}" if sub is not None else attribute.name
        return self.scalars.get((attribute.schema, path))

    def _child(self, attribute: Attribute) -> ChildTable:
        table = self.children.get(attribute.name) if not attribute.is_extension else None
        if table is None:
            raise InvalidFilter(f"{attribute.name} cannot be filtered.")
        return table

    def order(self, attribute: Attribute | None, descending: bool) -> Sort:
        """The order for `sortBy` (RFC 7644 §3.4.2.3); always ends in the id so pages are stable.

        Resources without a value sort last in both directions (§3.4.2.3: "null" values last).
        """
        if attribute is None:
            return Sort(self.owner_id, None, descending, shape=(self.resource, None, descending))
        if attribute.multi_valued:
            table = self.children.get(attribute.name) if not attribute.is_extension else None
            if table is None or table.sort_value is None:
                raise InvalidValue(f"Cannot sort by {attribute.name}.")
            column = table.sort_value(self.owner_id)
        else:
            scalar = self.scalars.get((attribute.schema, attribute.path))
            if scalar is None:
                raise InvalidValue(f"Cannot sort by {attribute.path}.")
            column = scalar.key_field or scalar.field
            if scalar.key_field is None and attribute.type == "string" and not attribute.case_exact:
                column = fold_sql(column)
        column = _expression(column)
        if attribute.type in ("string", "reference"):
            column = _binary(column)  # PostgreSQL refuses a collation on timestamps and booleans
        shape = (self.resource, attribute.schema, attribute.path, descending)
        return Sort(self.owner_id, column, descending, shape=shape)


USER_COMPILER = Compiler("User", User.id, SCALAR_BY_PATH, _USER_CHILDREN)
GROUP_COMPILER = Compiler(
    "Group",
    Group.id,
    group_mapping.SCALAR_BY_PATH,
    {"members": GROUP_MEMBERS},
)
