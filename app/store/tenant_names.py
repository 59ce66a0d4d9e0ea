"""Tenant slugs to ids, remembered for a minute: a tenant's base URL (`/t/SLUG/scim/v2`) names
it by slug, and that must not cost a query per request. (The other way, id to slug for log
lines, comes with the tenant's cached settings, `Runtime.tenant`.) One per app (`app.runtime`),
so two apps on two databases never mix their tenants.
"""

from __future__ import annotations

import threading
import time

from app.store import tenancy
from app.store.models import Tenant

CACHE_SECONDS = 60.0
_MAX_ENTRIES = 10_000


class TenantNames:
    """slug → id of the tenants asked about lately; an unknown slug is asked again next time
    (a slug created a moment ago must work at once)."""

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._ids: dict[str, tuple[float, int]] = {}  # slug → (fresh until, id)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()

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
        until = time.monotonic() + self.seconds
        with self._lock:
            if len(self._ids) > _MAX_ENTRIES:
                self._ids.clear()
            self._ids[slug] = (until, row.id)
        return row.id
