"""The cache generation also moves when a tenant's LMS targets change or an enrolment rule is
added (issues 19 and 20, "no work for features that are off"): a process keeps which of a
tenant's targets receive its changes, and whether it has any enrolment rule
(`app.runtime.Runtime.receiving`), next to the tenant's settings, so that a write on a tenant
without an LMS costs no outbox statement and a read of a tenant without rules no enrolment
query; `lms add`, `lms remove` or `enrolments add` in another process (the CLI) must reach
that cache within TOKEN_CACHE_SECONDS, as a `tenants set` does.

Watched: of a target, the columns that decide whether it receives anything (its tenant, its
URL, whether it is the tenant's settings' `default`); of enrolment rules, a new one only. A
tenant goes from "no enrolments" to "some" only through a new rule (enrolments are kept only
after a rule gave them); the other way, a stale "some" costs one query that finds nothing.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations import m0016_cache_generation as generation

WATCHED = ("tenant_id", "url", "from_settings")


_RULE_ADDED = {
    True: (
        'CREATE TRIGGER enrolment_rule_generation_insert AFTER INSERT ON "enrolment_rule" '
        "FOR EACH STATEMENT EXECUTE FUNCTION lms_scim_bump_generation()"
    ),
    False: (
        'CREATE TRIGGER enrolment_rule_generation_insert AFTER INSERT ON "enrolment_rule" '
        f"BEGIN {generation._BUMP}; END"
    ),
}


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    postgres = isinstance(db, peewee.PostgresqlDatabase)
    make = generation._postgres if postgres else generation._sqlite
    for statement in make("lms_target", WATCHED):
        db.execute_sql(statement)
    db.execute_sql(_RULE_ADDED[postgres])
