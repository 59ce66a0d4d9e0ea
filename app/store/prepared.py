"""Queries by a list of ids whose SQL is built by peewee once per list length, then reused.

Building SQL is most of what a small read costs in Python (peewee walks the query tree on every
execution: about a millisecond a query, several per request). The queries that load a page's
multi-valued attributes, groups and enrolments differ only in their ids, so their SQL is made
once for each number of ids — with probe ids, to learn where each id goes among the parameters —
and executed afterwards with the real ids. Values still travel only as bound parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import peewee

from app.store.db import database

_Template = tuple[str, tuple[tuple[bool, Any], ...]]  # SQL, and per parameter (is_id, index|value)
_cache: dict[tuple[int, str, int], _Template] = {}
_lock = threading.Lock()


def _template(build: Callable[[list[str]], peewee.SelectBase], size: int) -> _Template:
    probes = [f"\x00probe-{i}\x00" for i in range(size)]
    sql, params = build(probes).sql()
    where = {probe: index for index, probe in enumerate(probes)}
    slots = tuple(
        (True, where[p]) if isinstance(p, str) and p in where else (False, p) for p in params
    )
    return sql, slots


def raw(
    model: type[peewee.Model],
    name: str,
    build: Callable[[list[str]], peewee.SelectBase],
    ids: Sequence[str],
) -> peewee.RawQuery:
    """`build(ids)` as a `model.raw` query (rows as model instances with their fields' type
    conversions, or `.tuples()`), with the SQL built once per `len(ids)` and database."""
    ids = list(ids)
    key = (id(database.obj), name, len(ids))
    template = _cache.get(key)
    if template is None:
        template = _template(build, len(ids))
        with _lock:
            _cache[key] = template
    sql, slots = template
    params = [ids[value] if is_id else value for is_id, value in slots]
    return model.raw(sql, *params)
