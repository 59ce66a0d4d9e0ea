"""Which tenant the code at hand works for: one per request (its credential's tenant), per
CLI command (`--tenant`) or per relay delivery, kept in a context variable so that it follows
the request through threads' and generators' contexts and never leaks into the next request.

A single-organisation install never sets it and works in the default tenant, id 1, which the
migration that brought tenants (m0009) created to hold everything a database had.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEFAULT_TENANT = 1

_current: ContextVar[int] = ContextVar("lms_scim_tenant", default=DEFAULT_TENANT)


def current() -> int:
    """The id of the tenant the code at hand works for."""
    return _current.get()


@contextmanager
def use(tenant_id: int) -> Iterator[int]:
    """Work for `tenant_id` inside the block, then for whichever tenant before."""
    token = _current.set(tenant_id)
    try:
        yield tenant_id
    finally:
        _current.reset(token)
