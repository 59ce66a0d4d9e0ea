"""Row counts per tenant: `row_count` gains `tenant_id` in its key, and the triggers of m0005
count each row under its own tenant, so an unfiltered list's `totalResults` is the tenant's
count, still a sum of a few rows.

The table is rebuilt (its key changes) and the existing rows recounted per tenant in the
same transaction; the PostgreSQL function groups each statement's transition table by tenant.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations import _ddl

COUNTED_TABLES = ("lms_user", "lms_group")  # as of this release

ROW_COUNT = (
    'DROP TABLE "row_count"',
    _ddl.table(
        "row_count",
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"name" TEXT NOT NULL',
        '"shard" INTEGER NOT NULL',
        '"n" {BIGINT} NOT NULL',
        'PRIMARY KEY ("name", "tenant_id", "shard")',
    ),
)

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION lms_scim_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO row_count AS c (name, tenant_id, shard, n)
      SELECT TG_TABLE_NAME, tenant_id, mod(txid_current(), 16)::int, count(*) FROM new_rows
      GROUP BY tenant_id
      ON CONFLICT (name, tenant_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO row_count AS c (name, tenant_id, shard, n)
      SELECT TG_TABLE_NAME, tenant_id, mod(txid_current(), 16)::int, -count(*) FROM old_rows
      GROUP BY tenant_id
      ON CONFLICT (name, tenant_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSE
    DELETE FROM row_count WHERE name = TG_TABLE_NAME;
  END IF;
  RETURN NULL;
END $$
"""


def _sqlite(table: str) -> list[str]:
    upsert = (
        "INSERT INTO row_count (name, tenant_id, shard, n) VALUES ('{table}', {row}.tenant_id, "
        "0, {delta}) ON CONFLICT (name, tenant_id, shard) DO UPDATE SET n = n + excluded.n;"
    )
    return [
        f"DROP TRIGGER {table}_count_insert",
        f"DROP TRIGGER {table}_count_delete",
        f'CREATE TRIGGER {table}_count_insert AFTER INSERT ON "{table}" '
        f"BEGIN {upsert.format(table=table, row='NEW', delta=1)} END",
        f'CREATE TRIGGER {table}_count_delete AFTER DELETE ON "{table}" '
        f"BEGIN {upsert.format(table=table, row='OLD', delta=-1)} END",
    ]


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _ddl.execute(db, ROW_COUNT)
    if _ddl.dialect(db) == "postgres":
        # The triggers of m0005 call the function by name: replacing it is enough.
        db.execute_sql(_PG_FUNCTION)
    else:
        for name in COUNTED_TABLES:
            for statement in _sqlite(name):
                db.execute_sql(statement)
    for name in COUNTED_TABLES:
        # `name` is one of COUNTED_TABLES, never input.
        existing = f'SELECT {db.param}, tenant_id, 0, count(*) FROM "{name}" GROUP BY tenant_id'  # noqa: S608
        db.execute_sql(f"INSERT INTO row_count (name, tenant_id, shard, n) {existing}", (name,))
