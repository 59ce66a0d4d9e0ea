"""The cache generation also moves when a tenant's LMS targets change (issue 19, "the relay is
opt-in"): a process keeps which of a tenant's targets receive its changes
(`app.runtime.Runtime.receivers`) next to the tenant's settings, so that a write on a tenant
without an LMS costs no outbox statement at all; `lms add` or `lms remove` in another process
(the CLI) must reach that cache within TOKEN_CACHE_SECONDS, as a `tenants set` does.

Only the columns that decide whether a target receives anything are watched: which tenant it
belongs to, its URL, and whether it is the tenant's settings' `default`.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations import m0016_cache_generation as generation

WATCHED = ("tenant_id", "url", "from_settings")


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    postgres = isinstance(db, peewee.PostgresqlDatabase)
    make = generation._postgres if postgres else generation._sqlite
    for statement in make("lms_target", WATCHED):
        db.execute_sql(statement)
