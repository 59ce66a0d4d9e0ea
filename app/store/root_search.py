"""One page of Users and Groups together: `POST /.search` at the root (RFC 7644 §3.4.3).

Each resource type is a branch, `SELECT '<type>', id, <sort value> FROM <its table> WHERE <its
filter>`, and the page is taken from their UNION ALL in one order: the sort value (null values
last in both directions, RFC 7644 §3.4.2.3), then the id. So index paging (§3.4.2.4) and cursors
(RFC 9865) work exactly as on one type (`paging.Sort` orders and seeks the union's columns), the
database reads no more rows than one type's listing would, and `totalResults` is the sum of the
branches' counts. Only the page's resources are loaded, by each type's own loader.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import peewee

from app.store import groups, users
from app.store.db import database, filter_refusals
from app.store.models import Group, User
from app.store.paging import Page, PageRequest, Sort, count_matching

Expression = Any


@dataclass(frozen=True)
class Branch:
    """One resource type's part of a root search: its name (`User`, `Group`), its compiled
    filter (None: every row) and the value it sorts by (None when the search is not sorted, or
    when the type has no such attribute: its rows then sort last)."""

    name: str
    condition: Expression | None = None
    key: Expression | None = None

    @property
    def model(self) -> type[peewee.Model]:
        return _TABLES[self.name][0]

    def load(self, ids: list[str]) -> list[dict[str, Any]]:
        return _TABLES[self.name][1](ids)


_Loader = Callable[[list[str]], list[dict[str, Any]]]
_TABLES: dict[str, tuple[type[peewee.Model], _Loader]] = {
    "User": (User, users.by_ids),
    "Group": (Group, groups.by_ids),
}


def search(
    branches: Sequence[Branch], sorted_: bool, descending: bool, request: PageRequest
) -> Page:
    """One page of `(type name, resource)` pairs over every branch, and how many match in all.

    A database's refusal of a filter as too complex is 400 `invalidFilter`, as for one type."""
    with filter_refusals():
        return _search(branches, sorted_, descending, request)


def _search(
    branches: Sequence[Branch], sorted_: bool, descending: bool, request: PageRequest
) -> Page:
    def total() -> int:
        return sum(count_matching(_filtered(b), b.condition) for b in branches)

    if request.count <= 0 or not branches:
        return Page(total())
    found = _union(branches, sorted_)
    key = found.c.k if sorted_ else None
    sort = Sort(found.c.rid, key, descending)
    columns = [found.c.rtype, found.c.rid] + ([key] if sorted_ else [])
    query = peewee.Select([found], columns).order_by(*sort.order_by())
    if request.keyset:
        if request.after is not None:
            query = query.where(sort.after(request.after))
        rows = _rows(query.limit(request.count + 1))
        more = len(rows) > request.count
        rows = rows[: request.count]
        count = len(rows) if request.after is None and not more else total()
        following = (rows[-1][2] if sorted_ else None, rows[-1][1]) if more else None
        return Page(count, _load(branches, rows), following)
    rows = _rows(query.offset(request.start_index - 1).limit(request.count))
    whole = request.start_index == 1 and len(rows) < request.count
    ended = 0 < len(rows) < request.count
    count = request.start_index - 1 + len(rows) if whole or ended else total()
    return Page(count, _load(branches, rows))


def _rows(query: peewee.Select) -> list[tuple[Any, ...]]:
    return list(query.bind(database).tuples())


def _filtered(branch: Branch) -> peewee.ModelSelect:
    query = branch.model.select()
    return query if branch.condition is None else query.where(branch.condition)


def _union(branches: Sequence[Branch], sorted_: bool) -> Any:
    """The branches' `(rtype, rid, k)` rows as one subquery, `found`."""
    selects = []
    for branch in branches:
        owner = branch.model._meta.primary_key
        columns = [peewee.Value(branch.name).alias("rtype"), owner.alias("rid")]
        if sorted_:
            key = branch.key if branch.key is not None else peewee.Value(None)
            columns.append(key.alias("k"))
        query = branch.model.select(*columns)
        selects.append(query if branch.condition is None else query.where(branch.condition))
    return reduce(lambda left, right: left.union_all(right), selects).alias("found")


def _load(branches: Sequence[Branch], rows: list[tuple[Any, ...]]) -> list[Any]:
    """The page's resources in the page's order, each type loaded with one call."""
    ids: dict[str, list[str]] = defaultdict(list)
    for name, rid, *_ in rows:
        ids[name].append(rid)
    loaded: dict[tuple[str, str], dict[str, Any]] = {}
    for branch in branches:
        if ids[branch.name]:
            for resource in branch.load(ids[branch.name]):
                loaded[branch.name, resource["id"]] = resource
    return [(name, loaded[name, rid]) for name, rid, *_ in rows if (name, rid) in loaded]
