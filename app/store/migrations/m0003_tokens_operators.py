"""`api_token.rotated_at` (a rotated token works on through its grace period) and the `operator`
table (people who sign in to `/admin`). m0001 creates tables from the live models, so a fresh
database already has both: skip what exists."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from app.store.models import Operator

TABLE = "api_token"
COLUMN = "rotated_at"


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    if COLUMN not in {column.name for column in db.get_columns(TABLE)}:
        migrate(migrator.add_column(TABLE, COLUMN, peewee.DateTimeField(null=True)))
    db.create_tables([Operator], safe=True)
