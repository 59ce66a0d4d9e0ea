"""Frozen DDL for the migrations, written once for SQLite and PostgreSQL.

A migration states its tables as SQL text, never through `app.store.models`: the models change
with every release, and a migration must create what its release created, or a fresh database
and an upgraded one drift apart. The two databases differ only in the few type names below,
which are written as `{BOOL}`, `{TIMESTAMP}`, … in the statements (the text is what peewee
generated for the models of that release). Never change a mapping here: past migrations use it.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee

_TYPES = {
    "sqlite": {
        "BOOL": "INTEGER",
        "TIMESTAMP": "DATETIME",
        "SERIAL": "INTEGER",
        "BIGSERIAL": "INTEGER",
        "BIGINT": "INTEGER",
    },
    "postgres": {
        "BOOL": "BOOLEAN",
        "TIMESTAMP": "TIMESTAMP",
        "SERIAL": "SERIAL",
        "BIGSERIAL": "BIGSERIAL",
        "BIGINT": "BIGINT",
    },
}


def dialect(db: peewee.Database) -> str:
    """`postgres` or `sqlite`: the only databases the migrations have DDL for."""
    if isinstance(db, peewee.PostgresqlDatabase):
        return "postgres"
    if isinstance(db, peewee.SqliteDatabase):
        return "sqlite"
    raise RuntimeError(f"no migrations for {type(db).__name__}: SQLite and PostgreSQL only")


def table(name: str, *definitions: str) -> str:
    """`CREATE TABLE "name" (definition, …)`, as peewee writes it."""
    return f'CREATE TABLE "{name}" ({", ".join(definitions)})'


def execute(db: peewee.Database, statements: Iterable[str]) -> None:
    """Run `statements` in order, with this database's type names filled in."""
    types = _TYPES[dialect(db)]
    for statement in statements:
        db.execute_sql(statement.format_map(types))
