"""The LMS relay's tables: enrolment rules and kept enrolments, the transactional outbox, and the
links between our users and groups and the LMS's accounts, cohorts and enrolments; and
`lms_group.keeps_enrolments`, as release m0004 created them.

`keeps_enrolments` is NOT NULL, so it is added with a default that fills the existing rows.
PostgreSQL then drops the default (the model's default is peewee's, as for every column).
SQLite keeps `DEFAULT 0`: dropping it means rebuilding `lms_group`, and inside this
migration's transaction, with foreign keys on, the rebuild's DROP TABLE would cascade into
every membership — which is what `playhouse.migrate`'s `add_not_null`, used here before, did.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations._ddl import dialect, execute, table

KEEPS_ENROLMENTS = {
    "sqlite": ('ALTER TABLE "lms_group" ADD COLUMN "keeps_enrolments" INTEGER NOT NULL DEFAULT 0',),
    "postgres": (
        'ALTER TABLE "lms_group" ADD COLUMN "keeps_enrolments" BOOLEAN NOT NULL DEFAULT false',
        'ALTER TABLE "lms_group" ALTER COLUMN "keeps_enrolments" DROP DEFAULT',
    ),
}

STATEMENTS = (
    table(
        "enrolment_rule",
        '"id" {SERIAL} NOT NULL PRIMARY KEY',
        '"group_id" VARCHAR(32) NOT NULL',
        '"course_id" VARCHAR(64) NOT NULL',
        '"role" VARCHAR(16) NOT NULL',
        '"keep_on_leave" {BOOL} NOT NULL',
        '"created" {TIMESTAMP} NOT NULL',
        'FOREIGN KEY ("group_id") REFERENCES "lms_group" ("id") ON DELETE CASCADE',
    ),
    'CREATE INDEX "enrolment_rule_group_id" ON "enrolment_rule" ("group_id")',
    'CREATE UNIQUE INDEX "enrolment_rule_group_id_course_id" '
    'ON "enrolment_rule" ("group_id", "course_id")',
    table(
        "kept_enrolment",
        '"user_id" VARCHAR(32) NOT NULL',
        '"course_id" VARCHAR(64) NOT NULL',
        '"role" VARCHAR(16) NOT NULL',
        'PRIMARY KEY ("user_id", "course_id", "role")',
        'FOREIGN KEY ("user_id") REFERENCES "lms_user" ("id") ON DELETE CASCADE',
    ),
    'CREATE INDEX "kept_enrolment_user_id" ON "kept_enrolment" ("user_id")',
    table(
        "outbox",
        '"id" {BIGSERIAL} NOT NULL PRIMARY KEY',
        '"kind" VARCHAR(8) NOT NULL',
        '"user_id" VARCHAR(32)',
        '"group_id" VARCHAR(32)',
        '"created" {TIMESTAMP} NOT NULL',
        '"state" VARCHAR(8) NOT NULL',
        '"attempts" INTEGER NOT NULL',
        '"next_attempt_at" {TIMESTAMP}',
        '"lease_until" {TIMESTAMP}',
        '"last_error" TEXT',
    ),
    'CREATE INDEX "outbox_state_id" ON "outbox" ("state", "id")',
    'CREATE INDEX "outbox_user_id_id" ON "outbox" ("user_id", "id")',
    'CREATE INDEX "outbox_group_id_id" ON "outbox" ("group_id", "id")',
    table(
        "lms_user_link",
        '"user_id" VARCHAR(32) NOT NULL PRIMARY KEY',
        '"lms_id" {BIGINT} NOT NULL',
        '"matched" {BOOL} NOT NULL',
        '"synced_at" {TIMESTAMP} NOT NULL',
    ),
    table(
        "lms_cohort_link",
        '"group_id" VARCHAR(32) NOT NULL PRIMARY KEY',
        '"lms_id" {BIGINT} NOT NULL',
        '"synced_at" {TIMESTAMP} NOT NULL',
    ),
    table(
        "lms_enrolment",
        '"user_id" VARCHAR(32) NOT NULL',
        '"course_id" VARCHAR(64) NOT NULL',
        '"role" VARCHAR(16) NOT NULL',
        'PRIMARY KEY ("user_id", "course_id", "role")',
    ),
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, KEEPS_ENROLMENTS[dialect(db)])
    execute(db, STATEMENTS)
