"""`api_token.rotated_at` (a rotated token works on through its grace period) and the `operator`
table (people who sign in to `/admin`), as release m0003 created them."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import execute, table

STATEMENTS = (
    'ALTER TABLE "api_token" ADD COLUMN "rotated_at" {TIMESTAMP}',
    table(
        "operator",
        '"id" {SERIAL} NOT NULL PRIMARY KEY',
        '"name" TEXT NOT NULL',
        '"password_hash" TEXT NOT NULL',
        '"created" {TIMESTAMP} NOT NULL',
        '"last_sign_in_at" {TIMESTAMP}',
        '"failed_attempts" INTEGER NOT NULL',
        '"locked_until" {TIMESTAMP}',
    ),
    'CREATE UNIQUE INDEX "operator_name" ON "operator" ("name")',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
