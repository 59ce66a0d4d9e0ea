"""A cache generation (issue 16): one counter that every change to what the per-process caches
hold (tokens, tenants, OAuth clients and their secrets) moves on, kept by triggers so that a
change made by any process — a worker, the CLI, a SQL console — moves it.

A process then asks one cheap question per TOKEN_CACHE_SECONDS ("has the counter moved?")
instead of reloading each cached token and tenant when its time is up: with a thousand tenants
spread over the workers, those reloads were most of a request's queries. A token's last use
(`last_used_at`, written in batches) is not watched: it changes nothing a cache holds.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations import _ddl

COUNTER = _ddl.table(
    "cache_generation",
    '"id" INTEGER NOT NULL PRIMARY KEY',
    '"value" {BIGINT} NOT NULL',
)

# Each watched table and the columns whose change a cache must see (every column a cache
# reads; `api_token.last_used_at` is the one left out).
WATCHED = {
    "api_token": (
        "tenant_id",
        "name",
        "token_hash",
        "read_only",
        "expires_at",
        "revoked_at",
        "rotated_at",
    ),
    "tenant": ("slug", "name", "settings", "disabled_at"),
    "oauth_client": (
        "tenant_id",
        "name",
        "identifier",
        "read_only",
        "token_lifetime",
        "revoked_at",
    ),
    "oauth_client_secret": ("tenant_id", "client_id", "secret_hash", "expires_at"),
}

_BUMP = 'UPDATE "cache_generation" SET "value" = "value" + 1 WHERE "id" = 1'

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION lms_scim_bump_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  {_BUMP};
  RETURN NULL;
END $$
"""


def _postgres(table: str, columns: tuple[str, ...]) -> list[str]:
    # Once per statement: a statement that changes many rows moves the counter once.
    each = "FOR EACH STATEMENT EXECUTE FUNCTION lms_scim_bump_generation()"
    watched = ", ".join(f'"{column}"' for column in columns)
    return [
        f'CREATE TRIGGER {table}_generation_change AFTER INSERT OR DELETE ON "{table}" {each}',
        f'CREATE TRIGGER {table}_generation_update AFTER UPDATE OF {watched} ON "{table}" {each}',
    ]


def _sqlite(table: str, columns: tuple[str, ...]) -> list[str]:
    watched = ", ".join(f'"{column}"' for column in columns)
    return [
        f'CREATE TRIGGER {table}_generation_insert AFTER INSERT ON "{table}" BEGIN {_BUMP}; END',
        f'CREATE TRIGGER {table}_generation_delete AFTER DELETE ON "{table}" BEGIN {_BUMP}; END',
        f'CREATE TRIGGER {table}_generation_update AFTER UPDATE OF {watched} ON "{table}" '
        f"BEGIN {_BUMP}; END",
    ]


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _ddl.execute(db, [COUNTER, 'INSERT INTO "cache_generation" ("id", "value") VALUES (1, 0)'])
    postgres = isinstance(db, peewee.PostgresqlDatabase)
    if postgres:
        db.execute_sql(_PG_FUNCTION)
    for table, columns in WATCHED.items():
        for statement in _postgres(table, columns) if postgres else _sqlite(table, columns):
            db.execute_sql(statement)
