"""`lms_group.unique_name_key`: the folded displayName under a unique index, filled only when
`UNIQUE_GROUP_NAMES` is on (see `app.store.models.Group`). NULLs never clash, so the
column costs nothing while the option is off, and existing groups are left as they are."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

TABLE = "lms_group"
COLUMN = "unique_name_key"


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    # m0001 creates tables from the live models: skip what a fresh database already has.
    if COLUMN not in {column.name for column in db.get_columns(TABLE)}:
        migrate(migrator.add_column(TABLE, COLUMN, peewee.TextField(null=True)))
    if not any(index.columns == [COLUMN] for index in db.get_indexes(TABLE)):
        migrate(migrator.add_index(TABLE, (COLUMN,), unique=True))
