"""The LMS relay's tables: enrolment rules and kept enrolments, the transactional outbox, and the
links between our users and groups and the LMS's accounts, cohorts and enrolments, and
`lms_group.keeps_enrolments`. m0001 creates
tables from the live models, so a fresh database already has them: `safe=True` skips what
exists (tables and their indexes)."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from app.store.models import LMS_MODELS

TABLE = "lms_group"
COLUMN = "keeps_enrolments"


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    if COLUMN not in {column.name for column in db.get_columns(TABLE)}:
        migrate(migrator.add_column(TABLE, COLUMN, peewee.BooleanField(default=False)))
    db.create_tables(LMS_MODELS, safe=True)
