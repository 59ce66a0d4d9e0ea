"""Paging a query: sort orders, keyset positions, `startIndex` pages and total counts.

RFC 7644 §3.4.2.3 (sorting, null values last), §3.4.2.4 (`startIndex`/`count` pagination,
`totalResults`) and RFC 9865 (cursors, which continue from a keyset position instead of an
OFFSET). The orders themselves come from `app.store.filter_sql.Compiler.order` (the `sortBy`
allow-list); this module only applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import peewee
from peewee import fn

from app.store import prepared
from app.store.db import filter_refusals
from app.store.models import COUNTED_MODELS, RowCount

Expression = Any

Position = tuple[Any, str]
"""Where a page ended: the last row's sort value (None without `sortBy`) and its id."""


@dataclass(frozen=True)
class Sort:
    """An ORDER BY and the keyset seek that continues it (RFC 7644 §3.4.2.3, RFC 9865).

    Rows are ordered by `key` (nulls last in both directions), then by id, so every row has a
    unique position and "the rows after this one" is a WHERE clause, not an OFFSET: a page
    deep in the collection is found by an index seek, like the first one.
    """

    owner_id: Expression
    key: Expression | None = None
    descending: bool = False

    def _beyond(self, column: Expression, value: Any) -> Expression:
        return column < value if self.descending else column > value

    def order_by(self) -> list[Expression]:
        tie = self.owner_id.desc() if self.descending else self.owner_id.asc()
        if self.key is None:
            return [tie]
        nulls_last = peewee.Case(None, [(self.key.is_null(), 1)], 0)
        return [nulls_last, self.key.desc() if self.descending else self.key.asc(), tie]

    def after(self, position: Position) -> Expression:
        """The rows that follow `position` in this order (`(key, id) > (value, id)`, spelt out
        because the null rows come last whichever the direction)."""
        value, last_id = position
        tied = self._beyond(self.owner_id, last_id)
        if self.key is None:
            return tied
        if value is None:  # already among the nulls: only the ids still ahead
            return self.key.is_null() & tied
        return self.key.is_null() | self._beyond(self.key, value) | ((self.key == value) & tied)

    def select(self, query: peewee.ModelSelect) -> peewee.ModelSelect:
        """The query with the sort value selected too, so a page can say where it ended."""
        return query if self.key is None else query.select_extend(self.key.alias(_SORT_VALUE))

    def position(self, row: peewee.Model) -> Position:
        value = getattr(row, _SORT_VALUE) if self.key is not None else None
        return value, getattr(row, self.owner_id.name)


_SORT_VALUE = "scim_sort_value"


@dataclass(frozen=True)
class PageRequest:
    """Which page: by `startIndex` (RFC 7644 §3.4.2.4) or, with `keyset`, the `count` rows after
    `after` (RFC 9865 cursors; `after` None is the first page)."""

    count: int
    start_index: int = 1
    keyset: bool = False
    after: Position | None = None


@dataclass
class Page:
    """One page of results, how many match in all, and, for keyset paging when more rows
    follow, the position of the page's last row."""

    total: int
    items: list[Any] = field(default_factory=list)
    next: Position | None = None


def count_of(model: type[peewee.Model]) -> int:
    """All of a table's rows, from the counts its triggers keep (m0005): a sum of a few rows
    where `COUNT(*)` would read a million."""
    found = (
        RowCount.select(fn.SUM(RowCount.n)).where(RowCount.name == model._meta.table_name).scalar()
    )
    return int(found or 0)


def count_matching(query: peewee.ModelSelect, condition: Any) -> int:
    """How many rows `query` (already filtered by `condition`) selects; without a condition,
    from the trigger-kept counts (`count_of`)."""
    if condition is None and query.model in COUNTED_MODELS:
        return count_of(query.model)
    return query.count()


def page(query: peewee.ModelSelect, condition: Any, sort: Sort, request: PageRequest) -> Page:
    """`_page`, with a filter the database refuses as too complex turned into 400
    `invalidFilter` (`db.filter_refusals`)."""
    if condition is None:
        return _page(query, condition, sort, request)
    with filter_refusals():
        return _page(query, condition, sort, request)


def _page(query: peewee.ModelSelect, condition: Any, sort: Sort, request: PageRequest) -> Page:
    """One page of the matching rows and how many match in all (an empty page when `count` is 0
    or `startIndex` is past the end).

    `totalResults` is always true, but it is counted only when the page cannot tell it: a page
    that starts at the beginning and ends before `count` rows *is* the whole result, which is the
    case for every look-up an IdP makes before a create. Keyset pages read one row more than
    asked to learn whether another page follows, and never use OFFSET.
    """
    if condition is not None:
        query = query.where(condition)

    def total() -> int:
        return count_matching(query, condition)

    if request.count <= 0:
        return Page(total())
    ordered = sort.select(query).order_by(*sort.order_by())
    if not request.keyset:
        rows = _offset_page(query, ordered, sort, request)
        whole = request.start_index == 1 and len(rows) < request.count
        ended = 0 < len(rows) < request.count
        if whole or ended:
            return Page(request.start_index - 1 + len(rows), rows)
        return Page(total(), rows)
    if request.after is not None:
        ordered = ordered.where(sort.after(request.after))
    rows = list(prepared.rows(ordered.limit(request.count + 1)))
    more = len(rows) > request.count
    rows = rows[: request.count]
    found = len(rows) if request.after is None and not more else total()
    return Page(found, rows, sort.position(rows[-1]) if more else None)


# Past this OFFSET, a page is found by its ids first: skipping index entries is much cheaper
# than skipping whole rows (measured at 100k users: 16 ms → 2 ms on SQLite, 48 → 30 ms on
# PostgreSQL). Deep pages still cost O(offset); cursors (RFC 9865) do not.
_DEFERRED_JOIN_OFFSET = 1000


def _offset_page(
    query: peewee.ModelSelect, ordered: peewee.ModelSelect, sort: Sort, request: PageRequest
) -> list[Any]:
    offset = request.start_index - 1
    if offset < _DEFERRED_JOIN_OFFSET or sort.key is not None:
        return list(prepared.rows(ordered.offset(offset).limit(request.count)))
    ids = query.select(sort.owner_id).order_by(*sort.order_by()).offset(offset).limit(request.count)
    model = query.model
    return list(
        prepared.rows(
            model.select(*query.selected_columns)
            .where(sort.owner_id.in_(ids))
            .order_by(*sort.order_by())
        )
    )
