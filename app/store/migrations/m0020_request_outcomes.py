"""Recent request outcomes per credential (issue 19 §3): hourly counts by status and the latest
failed requests with their SCIM error, for the `/admin` connection pages. Small and bounded:
counts are pruned after a week, failures to the newest few per credential."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import execute, table

STATEMENTS = (
    table(
        "request_tally",
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"credential" TEXT NOT NULL',
        '"hour" {TIMESTAMP} NOT NULL',
        '"status" INTEGER NOT NULL',
        '"n" {BIGINT} NOT NULL',
        '"last_at" {TIMESTAMP} NOT NULL',
        'PRIMARY KEY ("tenant_id", "credential", "hour", "status")',
    ),
    table(
        "request_error",
        '"id" {BIGSERIAL} NOT NULL PRIMARY KEY',
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"credential" TEXT NOT NULL',
        '"at" {TIMESTAMP} NOT NULL',
        '"method" VARCHAR(8) NOT NULL',
        '"path" TEXT NOT NULL',
        '"status" INTEGER NOT NULL',
        '"scim_type" TEXT',
        '"detail" TEXT',
        '"request_id" TEXT',
    ),
    'CREATE INDEX "request_error_tenant_id_credential_id" ON "request_error" '
    '("tenant_id", "credential", "id")',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
