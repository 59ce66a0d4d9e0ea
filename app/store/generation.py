"""The cache generation counter (m0016): what `app.freshness` asks the database; and this
process's own count of the changes it made to what the relay cache holds (`local_changes`)."""

from __future__ import annotations

from app.store.models import CacheGeneration


def read() -> int:
    """The counter's value: it moves whenever a token, tenant or OAuth client changes."""
    return CacheGeneration.select(CacheGeneration.value).where(CacheGeneration.id == 1).scalar()


# Changes this process made to a tenant's LMS targets or enrolment rules: the per-process cache
# of what a tenant's writes and reads must do for the relay (`app.runtime.Runtime.receiving`)
# is keyed by it, so this process sees its own `lms add` or first rule at once; other processes
# see them through the cache generation (m0021's triggers).
_local_changes = 0


def local_changes() -> int:
    return _local_changes


def changed_here() -> None:
    global _local_changes
    _local_changes += 1
