"""Several LMS sites per tenant: the `lms_target` table, and every relay row names its target.

`lms_target` holds a tenant's LMS sites. Every existing tenant gets `default`, the row whose
site, token, match field, auth and role ids are the tenant's `LMS_*` settings
(`from_settings`), with the tenant's id as its own id: so the default tenant's is target 1,
which is also the database's default for `target_id` (a release that knows no targets keeps
writing the default tenant's rows during a deploy). `lms_target_audience` names the groups a
restricted target receives; a group that goes takes its audience rows with it.

`outbox`, `lms_user_link`, `lms_cohort_link`, `lms_enrolment`, `enrolment_rule` and
`kept_enrolment` gain `target_id` — existing rows go to their tenant's `default` — with the
composite key (tenant_id, target_id) → lms_target (tenant_id, id) ON DELETE CASCADE (a removed
target takes its rows and links along), and the target in their keys: the links are per target,
a rule and a kept enrolment name their target, and the outbox index the relay claims through is
(tenant_id, target_id, state, id) in place of (tenant_id, state, id).

PostgreSQL changes the tables in place (only rows of tenants other than the default one are
rewritten); SQLite cannot add a foreign key or change a primary key, so it rebuilds the six
tables (new table, copy, drop, rename, indexes), as m0011 did.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import dialect, execute, table

_TENANT = '"tenant_id" INTEGER NOT NULL DEFAULT 1'
_TARGET = '"target_id" INTEGER NOT NULL DEFAULT 1'
_TO_TARGET = (
    'FOREIGN KEY ("tenant_id", "target_id") REFERENCES "lms_target" ("tenant_id", "id") '
    "ON DELETE CASCADE"
)


def _fk(column: str, parent: str) -> str:
    return f'FOREIGN KEY ("{column}") REFERENCES "{parent}" ("id") ON DELETE CASCADE'


def _same_tenant(column: str, parent: str) -> str:
    return (
        f'FOREIGN KEY ("tenant_id", "{column}") REFERENCES "{parent}" ("tenant_id", "id") '
        "ON DELETE CASCADE"
    )


TARGETS = (
    table(
        "lms_target",
        '"id" {SERIAL} NOT NULL PRIMARY KEY',
        _TENANT,
        '"name" VARCHAR(64) NOT NULL',
        '"url" TEXT',
        '"token" TEXT',
        '"match_field" VARCHAR(16)',
        '"auth" TEXT',
        '"role_ids" TEXT',
        '"restricted" {BOOL} NOT NULL',
        '"from_settings" {BOOL} NOT NULL',
        '"created" {TIMESTAMP} NOT NULL',
    ),
    'CREATE UNIQUE INDEX "lms_target_tenant_id_name" ON "lms_target" ("tenant_id", "name")',
    'CREATE UNIQUE INDEX "lms_target_tenant_id_id" ON "lms_target" ("tenant_id", "id")',
    # Each tenant's `default`, with the tenant's id (the default tenant's is 1).
    'INSERT INTO "lms_target" ("id", "tenant_id", "name", "restricted", "from_settings", '
    '"created") SELECT "id", "id", \'default\', FALSE, TRUE, CURRENT_TIMESTAMP FROM "tenant"',
    table(
        "lms_target_audience",
        _TENANT,
        '"target_id" INTEGER NOT NULL',
        '"group_id" VARCHAR(32) NOT NULL',
        'PRIMARY KEY ("target_id", "group_id")',
        _fk("group_id", "lms_group"),
        _TO_TARGET,
        _same_tenant("group_id", "lms_group"),
    ),
    'CREATE INDEX "lms_target_audience_group_id" ON "lms_target_audience" ("group_id")',
)

# The six tables as they are from now on (SQLite's rebuild): (columns and table constraints,
# indexes).
_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "enrolment_rule": (
        (
            '"id" INTEGER NOT NULL PRIMARY KEY',
            _TENANT,
            '"group_id" VARCHAR(32) NOT NULL',
            _TARGET,
            '"course_id" VARCHAR(64) NOT NULL',
            '"role" VARCHAR(16) NOT NULL',
            '"keep_on_leave" INTEGER NOT NULL',
            '"created" DATETIME NOT NULL',
            _fk("group_id", "lms_group"),
            _same_tenant("group_id", "lms_group"),
            _TO_TARGET,
        ),
        (
            'CREATE INDEX "enrolment_rule_group_id" ON "enrolment_rule" ("group_id")',
            'CREATE UNIQUE INDEX "enrolment_rule_group_id_target_id_course_id" '
            'ON "enrolment_rule" ("group_id", "target_id", "course_id")',
        ),
    ),
    "kept_enrolment": (
        (
            _TENANT,
            '"user_id" VARCHAR(32) NOT NULL',
            _TARGET,
            '"course_id" VARCHAR(64) NOT NULL',
            '"role" VARCHAR(16) NOT NULL',
            'PRIMARY KEY ("user_id", "target_id", "course_id", "role")',
            _fk("user_id", "lms_user"),
            _same_tenant("user_id", "lms_user"),
            _TO_TARGET,
        ),
        ('CREATE INDEX "kept_enrolment_user_id" ON "kept_enrolment" ("user_id")',),
    ),
    "outbox": (
        (
            '"id" INTEGER NOT NULL PRIMARY KEY',
            _TENANT,
            _TARGET,
            '"kind" VARCHAR(8) NOT NULL',
            '"user_id" VARCHAR(32)',
            '"group_id" VARCHAR(32)',
            '"created" DATETIME NOT NULL',
            '"state" VARCHAR(8) NOT NULL',
            '"attempts" INTEGER NOT NULL',
            '"next_attempt_at" DATETIME',
            '"lease_until" DATETIME',
            '"last_error" TEXT',
            _TO_TARGET,
        ),
        (
            'CREATE INDEX "outbox_state_id" ON "outbox" ("state", "id")',
            'CREATE INDEX "outbox_tenant_id_target_id_state_id" '
            'ON "outbox" ("tenant_id", "target_id", "state", "id")',
            'CREATE INDEX "outbox_user_id_id" ON "outbox" ("user_id", "id")',
            'CREATE INDEX "outbox_group_id_id" ON "outbox" ("group_id", "id")',
        ),
    ),
    "lms_user_link": (
        (
            _TENANT,
            _TARGET,
            '"user_id" VARCHAR(32) NOT NULL',
            '"lms_id" INTEGER NOT NULL',
            '"matched" INTEGER NOT NULL',
            '"synced_at" DATETIME NOT NULL',
            'PRIMARY KEY ("tenant_id", "target_id", "user_id")',
            _TO_TARGET,
        ),
        (),
    ),
    "lms_cohort_link": (
        (
            _TENANT,
            _TARGET,
            '"group_id" VARCHAR(32) NOT NULL',
            '"lms_id" INTEGER NOT NULL',
            '"synced_at" DATETIME NOT NULL',
            'PRIMARY KEY ("tenant_id", "target_id", "group_id")',
            _TO_TARGET,
        ),
        (),
    ),
    "lms_enrolment": (
        (
            _TENANT,
            _TARGET,
            '"user_id" VARCHAR(32) NOT NULL',
            '"course_id" VARCHAR(64) NOT NULL',
            '"role" VARCHAR(16) NOT NULL',
            'PRIMARY KEY ("tenant_id", "target_id", "user_id", "course_id", "role")',
            _TO_TARGET,
        ),
        (),
    ),
}


def _rebuild(name: str) -> list[str]:
    """SQLite: `name` as it is from now on, each row with its tenant's `default` target (whose
    id is the tenant's)."""
    definitions, indexes = _TABLES[name]
    columns = [d.split('"')[1] for d in definitions if d.startswith('"')]
    listed = ", ".join(f'"{column}"' for column in columns)
    copied = ", ".join('"tenant_id"' if c == "target_id" else f'"{c}"' for c in columns)
    return [
        table(f"{name}__new", *definitions),
        f'INSERT INTO "{name}__new" ({listed}) SELECT {copied} FROM "{name}"',  # noqa: S608
        f'DROP TABLE "{name}"',
        f'ALTER TABLE "{name}__new" RENAME TO "{name}"',
        *indexes,
    ]


# PostgreSQL: the primary keys that gain the target (the constraint keeps PostgreSQL's name).
_PRIMARY_KEYS = {
    "kept_enrolment": ("user_id", "target_id", "course_id", "role"),
    "lms_user_link": ("tenant_id", "target_id", "user_id"),
    "lms_cohort_link": ("tenant_id", "target_id", "group_id"),
    "lms_enrolment": ("tenant_id", "target_id", "user_id", "course_id", "role"),
}


def _in_place(name: str) -> list[str]:
    """PostgreSQL: `target_id` added, filled for tenants other than the default one, keyed."""
    statements = [
        f'ALTER TABLE "{name}" ADD COLUMN {_TARGET}',
        f'UPDATE "{name}" SET "target_id" = "tenant_id" WHERE "tenant_id" <> 1',  # noqa: S608
        f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_tenant_id_target_id_fkey" {_TO_TARGET}',
    ]
    if name in _PRIMARY_KEYS:
        columns = ", ".join(f'"{c}"' for c in _PRIMARY_KEYS[name])
        statements += [
            f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_pkey"',
            f'ALTER TABLE "{name}" ADD PRIMARY KEY ({columns})',
        ]
    return statements


_POSTGRES_INDEXES = (
    'DROP INDEX "enrolment_rule_group_id_course_id"',
    'CREATE UNIQUE INDEX "enrolment_rule_group_id_target_id_course_id" '
    'ON "enrolment_rule" ("group_id", "target_id", "course_id")',
    'DROP INDEX "outbox_tenant_id_state_id"',
    'CREATE INDEX "outbox_tenant_id_target_id_state_id" '
    'ON "outbox" ("tenant_id", "target_id", "state", "id")',
    # Targets made from now on follow the ones with their tenant's id.
    "SELECT setval(pg_get_serial_sequence('lms_target', 'id'), "
    'COALESCE((SELECT MAX("id") FROM "lms_target"), 0) + 1, false)',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, TARGETS)
    if dialect(db) == "postgres":
        execute(db, (s for name in _TABLES for s in _in_place(name)))
        execute(db, _POSTGRES_INDEXES)
    else:
        execute(db, (s for name in _TABLES for s in _rebuild(name)))
