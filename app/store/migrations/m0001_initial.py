"""The initial tables: users and their multi-valued values, groups, memberships, tokens, audit."""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.models import ALL_MODELS


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    db.create_tables(ALL_MODELS, safe=True)
