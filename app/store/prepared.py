"""The hot paths' SQL, built by peewee once and reused; and rows built without its per-field work.

Building SQL is most of what a small read costs in Python (peewee walks the query tree on every
execution: about a millisecond a query, several per request). So:

* `tuples`/`models`: the queries that load a page's multi-valued attributes, groups and enrolments
  differ only in their ids; their SQL is made once for each number of ids — with probe ids, to
  learn where each id goes among the parameters — and executed afterwards with the real ids.
* `rows`/`first`: a `Model.select()` of every column (and any aliased subqueries after them)
  has its column list rendered once per model; peewee still renders the WHERE clause and the
  rest.
* `insert`: multi-row INSERTs rendered once per model, column set and row count.
* `instances`: result rows go straight into model instances' data.

Values always travel only as bound parameters.
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import peewee

from app.store import tenancy
from app.store.db import database

# SQL, and per parameter what fills it: ("id", index), ("tenant", None) or ("value", value).
_Template = tuple[str, tuple[tuple[str, Any], ...]]
_cache: dict[tuple[int, str, int, bool], _Template] = {}
_lock = threading.Lock()
# Stands for the tenant while a template is built: the tenant is a parameter like the ids,
# never a value frozen into a template that every tenant then shares.
_TENANT_PROBE = -0x5C1A_7E4A


def _slot(param: Any, ids: dict[str, int]) -> tuple[str, Any]:
    if isinstance(param, str) and param in ids:
        return ("id", ids[param])
    if param == _TENANT_PROBE and not isinstance(param, bool):
        return ("tenant", None)
    return ("value", param)


def _template(build: Callable[[list[str]], peewee.SelectBase], size: int) -> _Template:
    probes = [f"\x00probe-{i}\x00" for i in range(size)]
    scoped = tenancy.current() is not None
    with tenancy.use(_TENANT_PROBE) if scoped else tenancy.everywhere():
        sql, params = build(probes).sql()
    where = {probe: index for index, probe in enumerate(probes)}
    return sql, tuple(_slot(p, where) for p in params)


def _bound(
    name: str, build: Callable[[list[str]], peewee.SelectBase], ids: list[str]
) -> tuple[str, list[Any]]:
    """`build(ids)`'s SQL (made once per `len(ids)`, database and scoping) and its parameters:
    the ids, and the tenant at hand where the template has its slot."""
    tenant = tenancy.current()
    key = (id(database.obj), name, len(ids), tenant is None)
    template = _cache.get(key)
    if template is None:
        template = _template(build, len(ids))
        with _lock:
            _cache[key] = template
    sql, slots = template
    params = [
        ids[value] if kind == "id" else tenant if kind == "tenant" else value
        for kind, value in slots
    ]
    return sql, params


def tuples(
    name: str, build: Callable[[list[str]], peewee.SelectBase], ids: Sequence[str]
) -> list[tuple[Any, ...]]:
    """`build(ids)`'s rows as the driver returns them, with the SQL built once per `len(ids)`
    and database. For columns whose stored value is the Python value (ids, text): no peewee
    query object is made or compiled to run it, and no row goes through a cursor wrapper."""
    sql, params = _bound(name, build, list(ids))
    return database.execute_sql(sql, params).fetchall()


def models(
    model: type[peewee.Model],
    name: str,
    build: Callable[[list[str]], peewee.SelectBase],
    ids: Sequence[str],
) -> list[Any]:
    """`build(ids)`'s rows as instances of `model` (built by `instances`), with the SQL built
    once per `len(ids)` and database."""
    sql, params = _bound(name, build, list(ids))
    return instances(model, sql, params)


# Fields whose database value is already the Python value (text is text, and an integer
# column an int, on both databases: `tenant_id`, on every tenant-owned row, costs no call).
_AS_STORED = (peewee.CharField, peewee.TextField, peewee.IntegerField, peewee.AutoField)


def _plan(model: type[peewee.Model], names: Sequence[str]) -> list[tuple[str, bool, Any]]:
    plan = []
    for name in names:
        column = model._meta.columns.get(name)
        if column is None:  # an alias such as a sort value: an attribute of its own
            plan.append((name, False, None))
            continue
        target = column.rel_field if isinstance(column, peewee.ForeignKeyField) else column
        convert = None if type(target) in _AS_STORED else column.python_value
        plan.append((column.name, True, convert))
    return plan


def instances(model: type[peewee.Model], sql: str, params: Sequence[Any]) -> list[Any]:
    """Rows of `sql` as instances of `model`, made without peewee's per-field machinery.

    Peewee builds a row by calling the model's constructor and then setting every field
    through its descriptor (which also marks it dirty): for a page of a hundred users with
    thirty-odd columns that was a third of the page's cost. Here each row's values (with the
    field's own conversion, where it has one) go straight into the instance's data, as a
    freshly loaded, unmodified row has them; reading the instance is the same as ever.
    """
    cursor = database.execute_sql(sql, params)
    plan = _plan(model, [d[0] for d in cursor.description])
    found = []
    for row in cursor.fetchall():
        obj = model.__new__(model)
        data: dict[str, Any] = {}
        extras = []
        for (name, is_field, convert), value in zip(plan, row, strict=True):
            if value is not None and convert is not None:
                value = convert(value)
            if is_field:
                data[name] = value
            else:
                extras.append((name, value))
        obj.__data__, obj._dirty, obj.__rel__ = data, set(), {}
        for name, value in extras:
            setattr(obj, name, value)
        found.append(obj)
    return found


_columns: dict[tuple[int, type[peewee.Model]], tuple[str, str]] = {}


def _column_list(model: type[peewee.Model]) -> tuple[str, str]:
    """The model's whole column list as peewee renders it, and its primary key alone."""
    key = (id(database.obj), model)
    found = _columns.get(key)
    if found is None:
        whole, _ = model.select().sql()
        narrow, _ = model.select(model._meta.primary_key).sql()
        found = (whole.split(" FROM ", 1)[0], narrow.split(" FROM ", 1)[0])
        with _lock:
            _columns[key] = found
    return found


def rows(query: peewee.ModelSelect) -> list[Any]:
    """`query` (a `Model.select()` of every column, with any WHERE, ORDER BY and LIMIT) run
    with its column list rendered once per model instead of once per execution.

    Rendering thirty-odd columns is most of what building a page query costs; the WHERE clause
    and the rest are still rendered by peewee, with values as bound parameters. A query that
    selects anything else (but aliased subqueries after every column) runs as it is.
    """
    rendered = _rendered(query)
    if rendered is None:
        return list(query)
    return instances(query.model, *rendered)


def _rendered(query: peewee.ModelSelect) -> tuple[str, list[Any]] | None:
    """`query`'s SQL and parameters as `rows` runs it; None when it must run as it is."""
    model = query.model
    fields = list(model._meta.sorted_fields)
    returning = list(query._returning)
    extras = returning[len(fields) :]
    same = len(returning) >= len(fields) and all(map(operator.is_, returning, fields))
    if not same or not all(map(_subquery, extras)):
        return None
    whole, narrow = _column_list(model)
    cheap = query.clone()
    cheap._returning = (model._meta.primary_key, *extras)
    sql, params = cheap.sql()
    if not sql.startswith(narrow + (", " if extras else " FROM ")):
        return None
    return whole + sql[len(narrow) :], list(params)


# A shaped page's SQL, cut around its condition: (model, SQL, parameters before the condition's,
# parameters after them); or _UNSHAPED where the condition could not be found in its SQL.
_Shaped = tuple[type[peewee.Model], str, list[Any], list[Any]]
_shaped: dict[tuple[Any, ...], _Shaped | None] = {}
_UNSHAPED = None
_MISSING = object()
# Per process: a look-up shape per tenant and page position, each a few kilobytes of SQL.
SHAPED_LIMIT = 2048


def shaped_rows(
    build: Callable[[], peewee.ModelSelect], condition: Any, shape: tuple[Any, ...]
) -> list[Any]:
    """`rows(build())`, where `build()` is `condition` applied to a query whose every other part
    (columns, order, OFFSET and LIMIT) `shape` determines: only `condition` is rendered.

    An IdP's look-up (`userName eq "…"`) is the same statement every time but for its value,
    yet peewee renders the whole page query (the tenant, the children's subqueries, the order)
    for each one. Here the query is built and rendered once per shape, condition text and
    tenant, and afterwards only the condition, a handful of nodes, is rendered to learn its
    text and values. Learning checks that the condition's text occurs exactly once in the
    query's and that its values sit there in order; where not, the shape runs as `rows`.
    """
    if condition is None:
        condition_sql, condition_params = "", []
    else:
        condition_sql, condition_params = database.obj.get_sql_context().parse(condition)
    key = (id(database.obj), shape, condition_sql, tenancy.current())
    found = _shaped.get(key, _MISSING)
    if found is _MISSING:
        found = _learn(build(), condition_sql, list(condition_params))
        with _lock:
            if len(_shaped) >= SHAPED_LIMIT:
                _shaped.pop(next(iter(_shaped)), None)
            _shaped[key] = found
    if found is _UNSHAPED:
        return rows(build())
    model, sql, before, after = found
    return instances(model, sql, [*before, *condition_params, *after])


def _learn(query: peewee.ModelSelect, condition_sql: str, condition_params: list[Any]) -> Any:
    """`query`'s SQL cut around its condition (`_Shaped`), or _UNSHAPED."""
    rendered = _rendered(query)
    if rendered is None:
        return _UNSHAPED
    sql, params = rendered
    marker = database.obj.param
    if sql.count(marker) != len(params):
        return _UNSHAPED
    if not condition_sql:
        return (query.model, sql, params, [])
    if sql.count(condition_sql) != 1:
        return _UNSHAPED
    start = sql[: sql.index(condition_sql)].count(marker)
    end = start + len(condition_params)
    if params[start:end] != condition_params or condition_sql.count(marker) != end - start:
        return _UNSHAPED
    return (query.model, sql, params[:start], params[end:])


def _subquery(node: Any) -> bool:
    """A column such as a user's children (`users.CHILDREN`): a subquery under an alias, whose
    value instances() keeps as the driver returns it, as peewee's own rows would have it."""
    if isinstance(node, Column):
        return True
    return isinstance(node, peewee.Alias) and isinstance(node.node, peewee.SelectQuery)


class Column(peewee.ColumnBase):
    """A column of `model`'s SELECTs, such as an aliased correlated subquery, whose SQL `build()`
    makes once per database and scoping; every query that selects it gets that text and its
    parameters (the tenant at hand where it has its slot) without rendering it again.

    Its SQL names the outer table as peewee aliases the first table of a `model.select()`
    ("t1"), as the subquery peewee rendered did.
    """

    _converter = None  # peewee's rows keep its value as the driver returns it

    def __init__(self, model: type[peewee.Model], name: str, build: Callable[[], Any]) -> None:
        super().__init__()
        self.model, self.name, self.build = model, name, build

    def __sql__(self, ctx: peewee.Context) -> peewee.Context:
        pieces, slots = _column_template(self)
        tenant = tenancy.current()
        ctx.literal(pieces[0])
        for (kind, value), piece in zip(slots, pieces[1:], strict=True):
            ctx.value(tenant if kind == "tenant" else value, converter=False)
            ctx.literal(piece)
        return ctx


_column_cache: dict[tuple[int, str, bool], tuple[list[str], tuple[tuple[str, Any], ...]]] = {}


def _column_template(column: Column) -> tuple[list[str], tuple[tuple[str, Any], ...]]:
    """`column.build()`'s SQL cut at its parameters, and what fills each: learnt from
    `SELECT pk, <column> FROM …` beside `SELECT pk FROM …`, rendered with the tenant probe."""
    tenant = tenancy.current()
    key = (id(database.obj), column.name, tenant is None)
    found = _column_cache.get(key)
    if found is not None:
        return found
    pk = column.model._meta.primary_key
    with tenancy.use(_TENANT_PROBE) if tenant is not None else tenancy.everywhere():
        full, full_params = column.model.select(pk, column.build()).sql()
        bare, bare_params = column.model.select(pk).sql()
    head, _, _ = bare.partition(" FROM ")
    rest = bare[len(head) :]
    extra = len(full_params) - len(bare_params)
    if not (full.startswith(head + ", ") and full.endswith(rest)) or extra < 0:
        raise RuntimeError(f"unexpected SELECT {full!r} beside {bare!r}")
    sql = full[len(head) + 2 : len(full) - len(rest)]
    params = list(full_params[:extra])
    pieces = sql.split(database.obj.param)
    if len(pieces) != len(params) + 1 or list(full_params[extra:]) != list(bare_params):
        raise RuntimeError(f"cannot find the parameters of {sql!r}")
    found = (pieces, tuple(_slot(p, {}) for p in params))
    with _lock:
        _column_cache[key] = found
    return found


def first(query: peewee.ModelSelect) -> Any:
    """The first row of `query` (as `rows` runs it), or None."""
    return next(iter(rows(query.limit(1))), None)


# SQLite before 3.32 allows 999 bound parameters per statement; newer builds report their limit.
_SQLITE_DEFAULT_VARIABLES = 999
# PostgreSQL's wire protocol allows 65,535 parameters; psycopg2 interpolates client-side, but
# keeping statements this size bounds the memory one statement needs.
_POSTGRES_VARIABLES = 65_535


def variable_limit() -> int:
    """How many bound parameters one statement may have on this database."""
    db = database.obj
    if isinstance(db, peewee.SqliteDatabase):
        connection = db.connection()
        getlimit = getattr(connection, "getlimit", None)  # Python 3.11+
        if getlimit is not None:
            return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        return _SQLITE_DEFAULT_VARIABLES
    return _POSTGRES_VARIABLES


class _Inserter:
    """Multi-row INSERTs for one model and one set of columns.

    Peewee renders the statement for one row (quoting, placeholders, no RETURNING); the
    `(?, …)` group is repeated for more rows and the values go in as bound parameters, through
    each field's own `db_value`, as peewee would pass them. Building the SQL node by node for
    every value through `insert_many` costs three quarters of the time of a big import.
    """

    def __init__(self, model: type[peewee.Model], names: Sequence[str], limit: int) -> None:
        fields = [model._meta.fields[name] for name in names]
        self.names = list(names)
        self.converters = [field.db_value for field in fields]
        one, _ = model.insert_many([(None,) * len(fields)], fields=fields).returning().sql()
        self.head, _, self.group = one.rpartition(" VALUES ")
        if not (self.group.startswith("(") and self.group.endswith(")")):
            raise RuntimeError(f"unexpected INSERT statement {one!r}")
        self.per_statement = max(1, limit // len(fields))
        self.statements: dict[int, str] = {}

    def statement(self, rows: int) -> str:
        if rows not in self.statements:
            self.statements[rows] = f"{self.head} VALUES {', '.join([self.group] * rows)}"
        return self.statements[rows]

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        pairs = list(zip(self.names, self.converters, strict=True))
        for start in range(0, len(rows), self.per_statement):
            chunk = rows[start : start + self.per_statement]
            params = [convert(row[name]) for row in chunk for name, convert in pairs]
            database.execute_sql(self.statement(len(chunk)), params)


_inserters: dict[tuple[int, type[peewee.Model], tuple[str, ...]], _Inserter] = {}


def insert(model: type[peewee.Model], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys; a field left out gets the model's default) in
    as few statements as the driver allows, each statement rendered once per shape."""
    if not rows:
        return
    defaults = {
        field.name: default
        for field, default in model._meta.defaults.items()
        if field.name not in rows[0]
    }
    if defaults:
        rows = [
            {**row, **{k: v() if callable(v) else v for k, v in defaults.items()}} for row in rows
        ]
    names = tuple(rows[0])
    key = (id(database.obj), model, names)
    inserter = _inserters.get(key)
    if inserter is None:
        inserter = _Inserter(model, names, variable_limit())
        with _lock:
            _inserters[key] = inserter
    inserter.insert(rows)
