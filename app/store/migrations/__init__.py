"""Numbered migrations, applied in order, each in its own transaction, safe to run again.

A migration is a module `mNNNN_name.py` here with `apply(db, migrator)`. Applied numbers are
recorded in `schema_migration`; on PostgreSQL an advisory lock keeps two instances that start at
once from migrating together (SQLite's IMMEDIATE transactions already serialise them).
A migration states what it creates as frozen DDL (`_ddl`), never through `app.store.models`,
so a fresh database and one upgraded from any earlier release end up the same
(tests/unit/test_migrations.py checks it, and that the result matches the models).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType

import peewee
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator

from app.store.models import SchemaMigration

_ADVISORY_LOCK_ID = 0x5C1A_0001


def _migrations() -> list[tuple[int, str, ModuleType]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append((int(info.name[1:5]), info.name, module))
    return sorted(found)


def _migrator(db: peewee.Database) -> SchemaMigrator:
    if isinstance(db, peewee.PostgresqlDatabase):
        return PostgresqlMigrator(db)
    if isinstance(db, peewee.SqliteDatabase):
        return SqliteMigrator(db)
    return SchemaMigrator.from_database(db)


def upgrade(
    db: peewee.Database,
    report: Callable[[str], None] = lambda _msg: None,
    target: int | None = None,
) -> list[str]:
    """Apply every migration not yet applied, or only those numbered up to `target` (a
    database as an earlier release left it, for tests); return the names applied now."""
    applied_now = []
    # `db`, not whatever the models' proxy points at, keeps the bookkeeping.
    with db.bind_ctx([SchemaMigration]), db.connection_context():
        with db.atomic():
            db.create_tables([SchemaMigration], safe=True)
        for number, name, module in _migrations():
            if target is not None and number > target:
                break
            with db.atomic():
                if isinstance(db, peewee.PostgresqlDatabase):
                    db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_ID,))
                if SchemaMigration.get_or_none(SchemaMigration.number == number):
                    continue
                module.apply(db, _migrator(db))
                SchemaMigration.create(number=number, name=name)
                applied_now.append(name)
                report(f"applied {name}")
    return applied_now


def pending(db: peewee.Database) -> list[str]:
    """The names of the migrations `db` has not had yet, in order."""
    with db.bind_ctx([SchemaMigration]), db.connection_context():
        if not db.table_exists(SchemaMigration._meta.table_name):
            return [name for _, name, _ in _migrations()]
        done = {row.number for row in SchemaMigration.select(SchemaMigration.number)}
    return [name for number, name, _ in _migrations() if number not in done]
