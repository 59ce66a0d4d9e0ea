"""Server-side `/admin` sessions (`admin_session`) and `operator.disabled_at`, as release m0008
created them (issue 15 §3: sessions that end on sign-out, a password change, a disabled
operator, and after their idle and absolute lifetimes).

`operator.failed_attempts` and `locked_until` stay: no longer used (the sign-in back-off moved to
the rate limiter), but the release before reads them while a deploy replaces it.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import execute, table

STATEMENTS = (
    'ALTER TABLE "operator" ADD COLUMN "disabled_at" {TIMESTAMP}',
    table(
        "admin_session",
        '"id" VARCHAR(64) NOT NULL PRIMARY KEY',
        '"operator_id" INTEGER NOT NULL',
        '"created" {TIMESTAMP} NOT NULL',
        '"last_seen" {TIMESTAMP} NOT NULL',
        '"ended" {TIMESTAMP}',
        'FOREIGN KEY ("operator_id") REFERENCES "operator" ("id") ON DELETE CASCADE',
    ),
    'CREATE INDEX "admin_session_operator_id" ON "admin_session" ("operator_id")',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
