"""Composite foreign keys: a row can point only at users and groups of its own tenant.

`membership` (tenant_id, user_id) → `lms_user` (tenant_id, id) and (tenant_id, group_id) →
`lms_group` (tenant_id, id); the same (tenant_id, user_id) key for `user_value`,
`user_address` and `kept_enrolment`, and (tenant_id, group_id) for `enrolment_rule`; all
ON DELETE CASCADE. They point at the unique `(tenant_id, id)` indexes of m0009. So the
database itself refuses a membership (or e-mail, address, rule, kept enrolment) that joins
two tenants, whichever code path writes it, and a query that joins on `user_id` alone and
forgets the tenant still cannot pair rows of two tenants: no such pair is stored.

The single-column foreign keys (`user_id` → `lms_user.id`, …) are kept beside them: the
models keep their `ForeignKeyField`s, which peewee's joins and backrefs use and which peewee
always declares as a single-column key; the composite key is the stronger of the two.

PostgreSQL adds the constraints in place, under the names PostgreSQL gives an unnamed key in
a CREATE TABLE (what the models create); adding one validates every existing row under a
lock on both tables, once. SQLite cannot add a foreign key to a table, so it rebuilds the
five tables (new table, copy, drop, rename, indexes), as m0006 did: nothing references them,
so dropping the old ones cascades nowhere. Existing rows that already join two tenants (a
release's bug) stop the upgrade with a message naming the table, before anything changes.
"""

from __future__ import annotations

from typing import NamedTuple

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import dialect, execute, table


class _Key(NamedTuple):
    """(tenant_id, column) of `child` → (tenant_id, id) of `parent`."""

    child: str
    column: str
    parent: str

    @property
    def name(self) -> str:
        return f"{self.child}_tenant_id_{self.column}_fkey"

    @property
    def clause(self) -> str:
        return (
            f'FOREIGN KEY ("tenant_id", "{self.column}") REFERENCES "{self.parent}" '
            '("tenant_id", "id") ON DELETE CASCADE'
        )


KEYS = (
    _Key("membership", "group_id", "lms_group"),
    _Key("membership", "user_id", "lms_user"),
    _Key("user_value", "user_id", "lms_user"),
    _Key("user_address", "user_id", "lms_user"),
    _Key("enrolment_rule", "group_id", "lms_group"),
    _Key("kept_enrolment", "user_id", "lms_user"),
)


def _fk(column: str, parent: str) -> str:
    return f'FOREIGN KEY ("{column}") REFERENCES "{parent}" ("id") ON DELETE CASCADE'


def _composite(child: str) -> tuple[str, ...]:
    return tuple(key.clause for key in KEYS if key.child == child)


_TENANT = '"tenant_id" INTEGER NOT NULL DEFAULT 1'

# The five tables as m0010 left them on SQLite, plus the composite keys: (columns and table
# constraints, indexes).
_SQLITE_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "membership": (
        (
            '"group_id" VARCHAR(32) NOT NULL',
            '"user_id" VARCHAR(32) NOT NULL',
            _TENANT,
            'PRIMARY KEY ("group_id", "user_id")',
            _fk("group_id", "lms_group"),
            _fk("user_id", "lms_user"),
            *_composite("membership"),
        ),
        (
            'CREATE INDEX "membership_group_id" ON "membership" ("group_id")',
            'CREATE INDEX "membership_user_id" ON "membership" ("user_id")',
            'CREATE INDEX "membership_user_id_group_id" ON "membership" ("user_id", "group_id")',
        ),
    ),
    "user_value": (
        (
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
            _TENANT,
            _fk("user_id", "lms_user"),
            *_composite("user_value"),
        ),
        (
            'CREATE INDEX "user_value_user_id" ON "user_value" ("user_id")',
            'CREATE UNIQUE INDEX "user_value_user_id_attr_position" '
            'ON "user_value" ("user_id", "attr", "position")',
            'CREATE UNIQUE INDEX "user_value_tenant_id_unique_key" '
            'ON "user_value" ("tenant_id", "unique_key")',
            'CREATE INDEX "user_value_tenant_id_attr_value_key" '
            'ON "user_value" ("tenant_id", "attr", "value_key")',
        ),
    ),
    "user_address": (
        (
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
            _TENANT,
            _fk("user_id", "lms_user"),
            *_composite("user_address"),
        ),
        (
            'CREATE INDEX "user_address_user_id" ON "user_address" ("user_id")',
            'CREATE UNIQUE INDEX "user_address_user_id_position" '
            'ON "user_address" ("user_id", "position")',
        ),
    ),
    "enrolment_rule": (
        (
            '"id" INTEGER NOT NULL PRIMARY KEY',
            '"group_id" VARCHAR(32) NOT NULL',
            '"course_id" VARCHAR(64) NOT NULL',
            '"role" VARCHAR(16) NOT NULL',
            '"keep_on_leave" INTEGER NOT NULL',
            '"created" DATETIME NOT NULL',
            _TENANT,
            _fk("group_id", "lms_group"),
            *_composite("enrolment_rule"),
        ),
        (
            'CREATE INDEX "enrolment_rule_group_id" ON "enrolment_rule" ("group_id")',
            'CREATE UNIQUE INDEX "enrolment_rule_group_id_course_id" '
            'ON "enrolment_rule" ("group_id", "course_id")',
        ),
    ),
    "kept_enrolment": (
        (
            '"user_id" VARCHAR(32) NOT NULL',
            '"course_id" VARCHAR(64) NOT NULL',
            '"role" VARCHAR(16) NOT NULL',
            _TENANT,
            'PRIMARY KEY ("user_id", "course_id", "role")',
            _fk("user_id", "lms_user"),
            *_composite("kept_enrolment"),
        ),
        ('CREATE INDEX "kept_enrolment_user_id" ON "kept_enrolment" ("user_id")',),
    ),
}


def _rebuild(name: str) -> list[str]:
    """SQLite: `name` again with its composite keys, rows, indexes and nothing else changed."""
    definitions, indexes = _SQLITE_TABLES[name]
    columns = [d.split('"')[1] for d in definitions if d.startswith('"')]
    listed = ", ".join(f'"{column}"' for column in columns)
    return [
        table(f"{name}__new", *definitions),
        f'INSERT INTO "{name}__new" ({listed}) SELECT {listed} FROM "{name}"',  # noqa: S608
        f'DROP TABLE "{name}"',
        f'ALTER TABLE "{name}__new" RENAME TO "{name}"',
        *indexes,
    ]


def _check_no_row_joins_two_tenants(db: peewee.Database) -> None:
    """Refuse, naming the table, to upgrade a database whose rows already join two tenants: the
    key cannot hold them, and which tenant is right is for a person to decide."""
    for key in KEYS:
        # Names from KEYS, never input.
        (crossing,) = db.execute_sql(
            f'SELECT count(*) FROM "{key.child}" c JOIN "{key.parent}" p '  # noqa: S608
            f'ON p."id" = c."{key.column}" WHERE p."tenant_id" <> c."tenant_id"'
        ).fetchone()
        if crossing:
            raise RuntimeError(
                f"m0011: {crossing} {key.child} row(s) point at a {key.parent} row of another "
                f"tenant ({key.column}); delete or move them, then upgrade again"
            )


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _check_no_row_joins_two_tenants(db)
    if dialect(db) == "postgres":
        execute(db, (f'ALTER TABLE "{k.child}" ADD CONSTRAINT "{k.name}" {k.clause}' for k in KEYS))
    else:
        execute(db, (statement for name in _SQLITE_TABLES for statement in _rebuild(name)))
