"""OAuth 2.0 for SCIM clients (issue 18): clients of a tenant with their hashed secrets, and
the keys that sign access tokens (one issuer per deployment, so not a tenant's)."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import execute, table

STATEMENTS = (
    table(
        "oauth_client",
        '"id" {SERIAL} NOT NULL PRIMARY KEY',
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"name" TEXT NOT NULL',
        '"identifier" VARCHAR(64) NOT NULL',
        '"read_only" {BOOL} NOT NULL',
        '"token_lifetime" INTEGER NOT NULL',
        '"created" {TIMESTAMP} NOT NULL',
        '"revoked_at" {TIMESTAMP}',
    ),
    'CREATE UNIQUE INDEX "oauth_client_identifier" ON "oauth_client" ("identifier")',
    'CREATE INDEX "oauth_client_tenant_id_name" ON "oauth_client" ("tenant_id", "name")',
    table(
        "oauth_client_secret",
        '"id" {SERIAL} NOT NULL PRIMARY KEY',
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"client_id" INTEGER NOT NULL',
        '"secret_hash" VARCHAR(64) NOT NULL',
        '"prefix" TEXT NOT NULL',
        '"created" {TIMESTAMP} NOT NULL',
        '"expires_at" {TIMESTAMP}',
        'FOREIGN KEY ("client_id") REFERENCES "oauth_client" ("id") ON DELETE CASCADE',
    ),
    'CREATE INDEX "oauth_client_secret_client_id" ON "oauth_client_secret" ("client_id")',
    'CREATE UNIQUE INDEX "oauth_client_secret_secret_hash" ON "oauth_client_secret" '
    '("secret_hash")',
    table(
        "signing_key",
        '"kid" VARCHAR(64) NOT NULL PRIMARY KEY',
        '"algorithm" VARCHAR(16) NOT NULL',
        '"public_jwk" TEXT NOT NULL',
        '"private_key" TEXT NOT NULL',
        '"created" {TIMESTAMP} NOT NULL',
        '"retired_at" {TIMESTAMP}',
        '"verify_until" {TIMESTAMP}',
    ),
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
