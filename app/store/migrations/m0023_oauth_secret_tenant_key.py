"""An OAuth client's secrets belong to the client's tenant, and the database says so (issue 16).

`oauth_client` gets a unique `(tenant_id, id)`, and `oauth_client_secret` the composite key
(tenant_id, client_id) → oauth_client (tenant_id, id) ON DELETE CASCADE, as m0011 gave
memberships, e-mail values and addresses. Until now a secret named its client by `client_id`
alone, so the database would store a secret of one tenant for another tenant's client; no code
path wrote one (a secret is only written beside its client, and the token endpoint takes the
tenant from the client row), but a query that forgot the tenant could have joined across.
The single-column key stays beside the composite one: peewee's join and backref use it.

PostgreSQL adds the index and the constraint in place, under the name PostgreSQL gives an
unnamed key in a CREATE TABLE (what the models create); adding it validates the existing rows
once. SQLite cannot add a foreign key to a table, so it rebuilds `oauth_client_secret` (new
table, copy, drop, rename), as m0011 did; nothing references the table, so dropping it cascades
nowhere. Dropping a SQLite table drops its indexes and triggers too — among them m0016's, which
move the cache generation when a secret changes — so the rebuild reads them from
`sqlite_master` first and creates them again, as they were, after the rename (the order
SQLite's own documentation gives for changing a table, "Making Other Kinds Of Table Schema
Changes"). `oauth_client` only gains an index: its rows, triggers and the key its secrets
point at stay untouched.

Secrets whose tenant already differs from their client's (a release's bug, or SQL by hand) stop
the upgrade with a message, before anything changes: which tenant is right is for a person to
decide.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import dialect, execute, table

_INDEX = 'CREATE UNIQUE INDEX "oauth_client_tenant_id_id" ON "oauth_client" ("tenant_id", "id")'
_KEY_NAME = "oauth_client_secret_tenant_id_client_id_fkey"
_KEY = (
    'FOREIGN KEY ("tenant_id", "client_id") REFERENCES "oauth_client" ("tenant_id", "id") '
    "ON DELETE CASCADE"
)

# SQLite: `oauth_client_secret` as m0015 made it, plus the composite key.
_TABLE = "oauth_client_secret"
_SQLITE_TABLE = (
    '"id" INTEGER NOT NULL PRIMARY KEY',
    '"tenant_id" INTEGER NOT NULL DEFAULT 1',
    '"client_id" INTEGER NOT NULL',
    '"secret_hash" VARCHAR(64) NOT NULL',
    '"prefix" TEXT NOT NULL',
    '"created" DATETIME NOT NULL',
    '"expires_at" DATETIME',
    'FOREIGN KEY ("client_id") REFERENCES "oauth_client" ("id") ON DELETE CASCADE',
    _KEY,
)


def _indexes_and_triggers(db: peewee.Database) -> list[str]:
    """SQLite: the statements that made the secrets' explicit indexes and triggers (an index
    SQLite makes for a constraint has no SQL, and comes back with the table)."""
    return [
        sql
        for (sql,) in db.execute_sql(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (_TABLE,),
        )
    ]


def _rebuild() -> list[str]:
    """SQLite: the secrets' table again with the composite key, and its rows."""
    columns = [d.split('"')[1] for d in _SQLITE_TABLE if d.startswith('"')]
    listed = ", ".join(f'"{column}"' for column in columns)
    return [
        table(f"{_TABLE}__new", *_SQLITE_TABLE),
        f'INSERT INTO "{_TABLE}__new" ({listed}) SELECT {listed} FROM "{_TABLE}"',  # noqa: S608
        f'DROP TABLE "{_TABLE}"',
        f'ALTER TABLE "{_TABLE}__new" RENAME TO "{_TABLE}"',
    ]


def _check_no_secret_of_another_tenant(db: peewee.Database) -> None:
    (crossing,) = db.execute_sql(
        'SELECT count(*) FROM "oauth_client_secret" s JOIN "oauth_client" c '
        'ON c."id" = s."client_id" WHERE c."tenant_id" <> s."tenant_id"'
    ).fetchone()
    if crossing:
        raise RuntimeError(
            f"m0023: {crossing} oauth_client_secret row(s) belong to another tenant than their "
            "oauth_client; delete them (or give them the client's tenant), then upgrade again"
        )


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _check_no_secret_of_another_tenant(db)
    if dialect(db) == "postgres":
        execute(db, [_INDEX, f'ALTER TABLE "{_TABLE}" ADD CONSTRAINT "{_KEY_NAME}" {_KEY}'])
    else:
        kept = _indexes_and_triggers(db)
        # The index first: the new table's key needs it to check each copied row.
        execute(db, [_INDEX, *_rebuild()])
        for statement in kept:  # as stored, not through `execute`'s type names
            db.execute_sql(statement)
