"""Tenants: the `tenant` table, and every tenant-owned row carries its tenant.

An existing database gets the `default` tenant (id 1) holding everything it has: each
tenant-owned table gains `tenant_id INTEGER NOT NULL DEFAULT 1`, so no row is rewritten and a
release that does not know tenants keeps writing into the default one during a deploy.
`operator.tenant_id` is NULL for an operator who sees every tenant.

Uniqueness becomes per tenant — a userName, an e-mail address or (under UNIQUE_GROUP_NAMES) a
group name taken in one tenant is free in another — by unique indexes that lead with
`tenant_id`; the look-up indexes of names and external ids lead with it too, so a tenant's
query reads only its own part of each index. `lms_user` and `lms_group` get a unique
`(tenant_id, id)`: what a later migration's composite foreign keys point at.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import dialect, execute, table

DEFAULT_TENANT = 1

TENANT = (
    table(
        "tenant",
        '"id" {SERIAL} NOT NULL PRIMARY KEY',
        '"slug" VARCHAR(63) NOT NULL',
        '"name" TEXT NOT NULL',
        '"settings" TEXT',
        '"disabled_at" {TIMESTAMP}',
        '"created" {TIMESTAMP} NOT NULL',
    ),
    'CREATE UNIQUE INDEX "tenant_slug" ON "tenant" ("slug")',
)

# The tables whose rows belong to a tenant, as of this release.
OWNED = (
    "lms_user",
    "user_value",
    "user_address",
    "lms_group",
    "membership",
    "api_token",
    "audit_event",
    "enrolment_rule",
    "kept_enrolment",
    "outbox",
    "lms_user_link",
    "lms_cohort_link",
    "lms_enrolment",
)

INDEXES = (
    'DROP INDEX "lms_user_user_name_key"',
    'CREATE UNIQUE INDEX "lms_user_tenant_id_user_name_key" ON "lms_user" '
    '("tenant_id", "user_name_key")',
    'CREATE UNIQUE INDEX "lms_user_tenant_id_id" ON "lms_user" ("tenant_id", "id")',
    'DROP INDEX "lms_user_external_id"',
    'CREATE INDEX "lms_user_tenant_id_external_id" ON "lms_user" ("tenant_id", "external_id")',
    'DROP INDEX "user_value_unique_key"',
    'CREATE UNIQUE INDEX "user_value_tenant_id_unique_key" ON "user_value" '
    '("tenant_id", "unique_key")',
    'DROP INDEX "user_value_attr_value_key"',
    'CREATE INDEX "user_value_tenant_id_attr_value_key" ON "user_value" '
    '("tenant_id", "attr", "value_key")',
    'DROP INDEX "lms_group_unique_name_key"',
    'CREATE UNIQUE INDEX "lms_group_tenant_id_unique_name_key" ON "lms_group" '
    '("tenant_id", "unique_name_key")',
    'DROP INDEX "lms_group_display_name_key"',
    'CREATE INDEX "lms_group_tenant_id_display_name_key" ON "lms_group" '
    '("tenant_id", "display_name_key")',
    'DROP INDEX "lms_group_external_id"',
    'CREATE INDEX "lms_group_tenant_id_external_id" ON "lms_group" ("tenant_id", "external_id")',
    'CREATE UNIQUE INDEX "lms_group_tenant_id_id" ON "lms_group" ("tenant_id", "id")',
    'DROP INDEX "api_token_name"',
    'CREATE INDEX "api_token_tenant_id_name" ON "api_token" ("tenant_id", "name")',
    'CREATE INDEX "audit_event_tenant_id_at" ON "audit_event" ("tenant_id", "at")',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, TENANT)
    now = "CURRENT_TIMESTAMP"
    db.execute_sql(
        f'INSERT INTO "tenant" (id, slug, name, created) VALUES ({DEFAULT_TENANT}, '  # noqa: S608
        f"'default', 'Default', {now})"
    )
    if dialect(db) == "postgres":
        # The explicit id 1 did not move the sequence: the next tenant must get 2.
        db.execute_sql("SELECT setval(pg_get_serial_sequence('tenant', 'id'), 1)")
    for name in OWNED:
        db.execute_sql(
            f'ALTER TABLE "{name}" ADD COLUMN "tenant_id" INTEGER NOT NULL DEFAULT {DEFAULT_TENANT}'
        )
    db.execute_sql('ALTER TABLE "operator" ADD COLUMN "tenant_id" INTEGER')
    execute(db, INDEXES)
