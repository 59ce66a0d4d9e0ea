"""Tenant ids and slugs, remembered for a minute: a tenant's base URL (`/t/SLUG/scim/v2`) names
it by slug, and every request log line names its tenant by slug, so neither may cost a query
per request. One per app (`app.runtime`), so two apps on two databases never mix their tenants.
"""

from __future__ import annotations

import threading
import time

from app.store import tenancy
from app.store.models import Tenant

CACHE_SECONDS = 60.0
_MAX_ENTRIES = 10_000


class TenantNames:
    """id ↔ slug of the tenants asked about lately; an unknown slug is asked again next time
    (a slug created a moment ago must work at once)."""

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._slugs: dict[int, tuple[float, str]] = {}  # id → (fresh until, slug)
        self._ids: dict[str, tuple[float, int]] = {}  # slug → (fresh until, id)

    def clear(self) -> None:
        with self._lock:
            self._slugs.clear()
            self._ids.clear()

    def slug(self, tenant_id: int) -> str | None:
        """The slug of tenant `tenant_id`, or None if there is no such tenant."""
        with self._lock:
            cached = self._slugs.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with tenancy.everywhere():
            row = Tenant.select(Tenant.slug).where(Tenant.id == tenant_id).first()
        if row is None:
            return None
        self._remember(tenant_id, row.slug)
        return row.slug

    def id_of(self, slug: str) -> int | None:
        """The id of the tenant with this slug, or None if there is none."""
        with self._lock:
            cached = self._ids.get(slug)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with tenancy.everywhere():
            row = Tenant.select(Tenant.id).where(Tenant.slug == slug).first()
        if row is None:
            return None
        self._remember(row.id, slug)
        return row.id

    def _remember(self, tenant_id: int, slug: str) -> None:
        until = time.monotonic() + self.seconds
        with self._lock:
            if len(self._slugs) > _MAX_ENTRIES:
                self._slugs.clear()
                self._ids.clear()
            self._slugs[tenant_id] = (until, slug)
            self._ids[slug] = (until, tenant_id)
