"""Per-type relay actions, held users, dated enrolments and the "sync users with no enrolments"
switch (issue 17 §2, §3).

- `lms_target_action`: which of `create`, `update`, `deactivate` run on a target for users of
  one userType (a type without a row: all three, as before);
- `lms_user_hold`: a user the relay did not create on a target, and why (`users status` says
  it; the user's cohorts and enrolments catch up once an account is linked);
- `lms_target.sync_unenrolled` (default TRUE, today's behaviour): FALSE, users no enrolment rule
  of the target gives are not created there;
- `enrolment_rule.time_start`, `time_end`, `no_end_roles`: Moodle's `timestart`/`timeend` and
  the roles whose enrolments get no end; `lms_enrolment.time_start`, `time_end`: the dates an
  enrolment was last sent with, so a rule's new dates reach the enrolments it already made.

Only new tables and nullable (or defaulted) columns: existing rows keep their meaning.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import execute, table

_TO_TARGET = (
    'FOREIGN KEY ("tenant_id", "target_id") REFERENCES "lms_target" ("tenant_id", "id") '
    "ON DELETE CASCADE"
)

STATEMENTS = (
    table(
        "lms_target_action",
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"target_id" INTEGER NOT NULL',
        '"user_type_key" VARCHAR(64) NOT NULL',
        '"user_type" VARCHAR(64) NOT NULL',
        '"actions" VARCHAR(32) NOT NULL',
        'PRIMARY KEY ("target_id", "user_type_key")',
        _TO_TARGET,
    ),
    table(
        "lms_user_hold",
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"target_id" INTEGER NOT NULL',
        '"user_id" VARCHAR(32) NOT NULL',
        '"reason" TEXT NOT NULL',
        '"at" {TIMESTAMP} NOT NULL',
        'PRIMARY KEY ("tenant_id", "target_id", "user_id")',
        _TO_TARGET,
    ),
    'ALTER TABLE "lms_target" ADD COLUMN "sync_unenrolled" {BOOL} NOT NULL DEFAULT TRUE',
    'ALTER TABLE "enrolment_rule" ADD COLUMN "time_start" {TIMESTAMP}',
    'ALTER TABLE "enrolment_rule" ADD COLUMN "time_end" {TIMESTAMP}',
    'ALTER TABLE "enrolment_rule" ADD COLUMN "no_end_roles" TEXT',
    'ALTER TABLE "lms_enrolment" ADD COLUMN "time_start" {TIMESTAMP}',
    'ALTER TABLE "lms_enrolment" ADD COLUMN "time_end" {TIMESTAMP}',
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
