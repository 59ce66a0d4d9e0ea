"""`lms_group.unique_name_key`: the folded displayName under a unique index, filled only when
`UNIQUE_GROUP_NAMES` is on (see `app.store.models.Group`). NULLs never clash, so the
column costs nothing while the option is off, and existing groups are left as they are."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import execute

STATEMENTS = (
    'ALTER TABLE "lms_group" ADD COLUMN "unique_name_key" TEXT',
    'CREATE UNIQUE INDEX "lms_group_unique_name_key" ON "lms_group" ("unique_name_key")',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
