"""Row counts kept by triggers (`RowCount`): an unfiltered `GET /Users` at a million users spent
three quarters of its time in `COUNT(*)` for `totalResults` (30 of 40 ms on SQLite; on
PostgreSQL the count reads the whole table).

Triggers, not application code, keep the counts, so every way a row arrives or goes — SCIM,
`/Bulk`, bulk seeding, the CLI, a cascade — is counted, in the same transaction. PostgreSQL's
are statement-level with transition tables (one UPSERT per statement, not per row) and spread
over `SHARDS` rows by transaction id; a TRUNCATE clears the table's count.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations import _ddl

SHARDS = 16  # the `mod(…, 16)` in _PG_FUNCTION

# The tables whose rows are counted: `app.store.models.COUNTED_MODELS` as of this release.
COUNTED_TABLES = ("lms_user", "lms_group")

ROW_COUNT = _ddl.table(
    "row_count",
    '"name" TEXT NOT NULL',
    '"shard" INTEGER NOT NULL',
    '"n" {BIGINT} NOT NULL',
    'PRIMARY KEY ("name", "shard")',
)

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION lms_scim_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO row_count AS c (name, shard, n)
      SELECT TG_TABLE_NAME, mod(txid_current(), 16)::int, count(*) FROM new_rows
      ON CONFLICT (name, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO row_count AS c (name, shard, n)
      SELECT TG_TABLE_NAME, mod(txid_current(), 16)::int, -count(*) FROM old_rows
      ON CONFLICT (name, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSE
    DELETE FROM row_count WHERE name = TG_TABLE_NAME;
  END IF;
  RETURN NULL;
END $$
"""


def _postgres(table: str) -> list[str]:
    each = "FOR EACH STATEMENT EXECUTE FUNCTION lms_scim_count_rows()"
    return [
        f'CREATE OR REPLACE TRIGGER {table}_count_insert AFTER INSERT ON "{table}" '
        f"REFERENCING NEW TABLE AS new_rows {each}",
        f'CREATE OR REPLACE TRIGGER {table}_count_delete AFTER DELETE ON "{table}" '
        f"REFERENCING OLD TABLE AS old_rows {each}",
        f'CREATE OR REPLACE TRIGGER {table}_count_truncate AFTER TRUNCATE ON "{table}" {each}',
    ]


def _sqlite(table: str) -> list[str]:
    upsert = (
        "INSERT INTO row_count (name, shard, n) VALUES ('{table}', 0, {delta}) "
        "ON CONFLICT (name, shard) DO UPDATE SET n = n + excluded.n;"
    )
    return [
        f'CREATE TRIGGER IF NOT EXISTS {table}_count_insert AFTER INSERT ON "{table}" '
        f"BEGIN {upsert.format(table=table, delta=1)} END",
        f'CREATE TRIGGER IF NOT EXISTS {table}_count_delete AFTER DELETE ON "{table}" '
        f"BEGIN {upsert.format(table=table, delta=-1)} END",
    ]


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _ddl.execute(db, [ROW_COUNT])
    postgres = isinstance(db, peewee.PostgresqlDatabase)
    if postgres:
        db.execute_sql(_PG_FUNCTION)
    for name in COUNTED_TABLES:
        for statement in _postgres(name) if postgres else _sqlite(name):
            db.execute_sql(statement)
        # The rows already there (the triggers count from now on, in this same transaction).
        # `name` is one of COUNTED_TABLES, never input.
        existing = f'SELECT {db.param}, 0, count(*) FROM "{name}"'  # noqa: S608
        db.execute_sql(f"INSERT INTO row_count (name, shard, n) {existing}", (name,))
