"""Numbered migrations, applied in order, each in its own transaction, safe to run again.

A migration is a module `mNNNN_name.py` here with `apply(db, migrator)`. Applied numbers are
recorded in `schema_migration`; on PostgreSQL an advisory lock keeps two instances that start at
once from migrating together (SQLite's IMMEDIATE transactions already serialise them).
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


def upgrade(db: peewee.Database, report: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Apply every migration not yet applied; return the names applied now."""
    applied_now = []
    with db.connection_context():
        with db.atomic():
            db.create_tables([SchemaMigration], safe=True)
        for number, name, module in _migrations():
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
    with db.connection_context():
        if not db.table_exists(SchemaMigration._meta.table_name):
            return [name for _, name, _ in _migrations()]
        done = {row.number for row in SchemaMigration.select(SchemaMigration.number)}
    return [name for number, name, _ in _migrations() if number not in done]
