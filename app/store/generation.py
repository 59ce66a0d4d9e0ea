"""The cache generation counter (m0016): what `app.freshness` asks the database."""

from __future__ import annotations

from app.store.models import CacheGeneration


def read() -> int:
    """The counter's value: it moves whenever a token, tenant or OAuth client changes."""
    return CacheGeneration.select(CacheGeneration.value).where(CacheGeneration.id == 1).scalar()
