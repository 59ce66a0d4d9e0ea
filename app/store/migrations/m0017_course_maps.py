"""Courses and categories made from groups (issue 17 §4): `lms_course_map` holds a group's
course on an LMS target (the templates, and the course's LMS id once known) and
`lms_category_link` the LMS category of each category path the relay found or made, per target.
Both go with their target (the composite key to lms_target cascades); a map outlives its group
(no key to it), as the course does."""

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
        "lms_course_map",
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"target_id" INTEGER NOT NULL DEFAULT 1',
        '"group_id" VARCHAR(32) NOT NULL',
        '"shortname" TEXT NOT NULL',
        '"fullname" TEXT NOT NULL',
        '"category" TEXT',
        '"template_course" {BIGINT}',
        '"casing" VARCHAR(8) NOT NULL',
        '"follow_renames" {BOOL} NOT NULL',
        '"lms_id" {BIGINT}',
        '"applied_shortname" TEXT',
        '"applied_fullname" TEXT',
        '"applied_category" TEXT',
        '"created" {TIMESTAMP} NOT NULL',
        '"synced_at" {TIMESTAMP}',
        'PRIMARY KEY ("tenant_id", "target_id", "group_id")',
        _TO_TARGET,
    ),
    table(
        "lms_category_link",
        '"tenant_id" INTEGER NOT NULL DEFAULT 1',
        '"target_id" INTEGER NOT NULL DEFAULT 1',
        '"path" VARCHAR(512) NOT NULL',
        '"lms_id" {BIGINT} NOT NULL',
        'PRIMARY KEY ("tenant_id", "target_id", "path")',
        _TO_TARGET,
    ),
)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    execute(db, STATEMENTS)
