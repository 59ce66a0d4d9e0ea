"""`user_value.primary` and `user_address.primary` become nullable, and a stored `false` NULL.

Since commit 40a14aa the models store `primary` as true or NULL (`primary: false` means "not
primary"), but no migration said so: a database created at release m0001 kept both columns
NOT NULL and refused every element that is not primary. Databases created later already have
them nullable; for them this changes nothing.

PostgreSQL drops the constraint in place. SQLite rebuilds the two tables (new table, copy,
drop, rename, indexes): no table references them, so dropping the old ones cascades nowhere.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import dialect, execute, table

_USER_VALUE_COLUMNS = (
    "id",
    "user_id",
    "attr",
    "position",
    "value",
    "value_key",
    "type",
    "primary",
    "display",
    "unique_key",
)
_USER_ADDRESS_COLUMNS = (
    "id",
    "user_id",
    "position",
    "formatted",
    "street_address",
    "locality",
    "region",
    "postal_code",
    "country",
    "type",
    "primary",
)


def _copy(name: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    listed = ", ".join(f'"{column}"' for column in columns)
    return (
        f'INSERT INTO "{name}__new" ({listed}) SELECT {listed} FROM "{name}"',  # noqa: S608
        f'DROP TABLE "{name}"',
        f'ALTER TABLE "{name}__new" RENAME TO "{name}"',
    )


SQLITE = (
    table(
        "user_value__new",
        '"id" INTEGER NOT NULL PRIMARY KEY',
        '"user_id" VARCHAR(32) NOT NULL',
        '"attr" VARCHAR(32) NOT NULL',
        '"position" INTEGER NOT NULL',
        '"value" TEXT',
        '"value_key" TEXT',
        '"type" TEXT',
        '"primary" INTEGER',
        '"display" TEXT',
        '"unique_key" TEXT',
        'FOREIGN KEY ("user_id") REFERENCES "lms_user" ("id") ON DELETE CASCADE',
    ),
    *_copy("user_value", _USER_VALUE_COLUMNS),
    'CREATE INDEX "user_value_user_id" ON "user_value" ("user_id")',
    'CREATE UNIQUE INDEX "user_value_unique_key" ON "user_value" ("unique_key")',
    'CREATE INDEX "user_value_attr_value_key" ON "user_value" ("attr", "value_key")',
    'CREATE UNIQUE INDEX "user_value_user_id_attr_position" '
    'ON "user_value" ("user_id", "attr", "position")',
    table(
        "user_address__new",
        '"id" INTEGER NOT NULL PRIMARY KEY',
        '"user_id" VARCHAR(32) NOT NULL',
        '"position" INTEGER NOT NULL',
        '"formatted" TEXT',
        '"street_address" TEXT',
        '"locality" TEXT',
        '"region" TEXT',
        '"postal_code" TEXT',
        '"country" TEXT',
        '"type" TEXT',
        '"primary" INTEGER',
        'FOREIGN KEY ("user_id") REFERENCES "lms_user" ("id") ON DELETE CASCADE',
    ),
    *_copy("user_address", _USER_ADDRESS_COLUMNS),
    'CREATE INDEX "user_address_user_id" ON "user_address" ("user_id")',
    'CREATE UNIQUE INDEX "user_address_user_id_position" ON "user_address" ("user_id", "position")',
)

POSTGRES = (
    'ALTER TABLE "user_value" ALTER COLUMN "primary" DROP NOT NULL',
    'ALTER TABLE "user_address" ALTER COLUMN "primary" DROP NOT NULL',
)

# Both databases: what release m0001 stored as false is "not primary", NULL now.
NOT_PRIMARY_IS_NULL = (
    'UPDATE "user_value" SET "primary" = NULL WHERE NOT "primary"',
    'UPDATE "user_address" SET "primary" = NULL WHERE NOT "primary"',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, POSTGRES if dialect(db) == "postgres" else SQLITE)
    execute(db, NOT_PRIMARY_IS_NULL)
