"""The outbox looked up per tenant: the relay claims one tenant's rows at a time (one turn per
tenant, `app.relay.dispatch`), and asks which tenants have rows due. With `(state, id)` alone
each claim walked past every other tenant's waiting rows; `(tenant_id, state, id)` makes a
claim read only its tenant's.
"""

from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.migrations import _ddl

STATEMENTS = ('CREATE INDEX "outbox_tenant_id_state_id" ON "outbox" ("tenant_id", "state", "id")',)


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    _ddl.execute(db, STATEMENTS)
