"""Which groups an LMS target receives as cohorts (issue 17 §1: a Totara Connect client "can
receive chosen audiences").

- `lms_target.chosen_cohorts` (default FALSE, today's behaviour): every group becomes a cohort
  there; TRUE, only the groups in `lms_target_cohort`. Kept apart from the rows, as
  `restricted` is from `lms_target_audience` (m0014), so that a target whose chosen groups are
  all deleted receives no cohort, never every one;
- `lms_target_cohort`: those groups; a group that goes takes its rows with it.

Only a new table and a defaulted column: existing targets keep receiving every group. Nothing
a process caches reads them (the relay asks when it delivers), so no cache-generation trigger.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import execute, table

STATEMENTS = (
    'ALTER TABLE "lms_target" ADD COLUMN "chosen_cohorts" {BOOL} NOT NULL DEFAULT FALSE',
    table(
        "lms_target_cohort",
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"target_id" INTEGER NOT NULL',
        '"group_id" VARCHAR(32) NOT NULL',
        'PRIMARY KEY ("target_id", "group_id")',
        'FOREIGN KEY ("group_id") REFERENCES "lms_group" ("id") ON DELETE CASCADE',
        'FOREIGN KEY ("tenant_id", "target_id") REFERENCES "lms_target" ("tenant_id", "id") '
        "ON DELETE CASCADE",
        'FOREIGN KEY ("tenant_id", "group_id") REFERENCES "lms_group" ("tenant_id", "id") '
        "ON DELETE CASCADE",
    ),
    'CREATE INDEX "lms_target_cohort_group_id" ON "lms_target_cohort" ("group_id")',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
