"""Which tenant the code at hand works for: one per request (its credential's tenant), per
CLI command (`--tenant`) or per relay delivery, kept in a context variable so that it follows
the code through calls and never leaks into the next request (each request sets it afresh).

Every query of a tenant-owned table is scoped by it (`app.store.models.TenantModel`), and every
new row belongs to it. A single-organisation install never sets it and works in the default
tenant, id 1, which the migration that brought tenants (m0009) created to hold everything a
database had. Code that must see every tenant (finding a bearer token's tenant, the relay's
queue, a global operator's overview) says so with `everywhere()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

DEFAULT_TENANT = 1

# `None`: every tenant (only inside `everywhere()`).
_current: ContextVar[int | None] = ContextVar("lms_scim_tenant", default=DEFAULT_TENANT)


def current() -> int | None:
    """The id of the tenant the code at hand works for; None inside `everywhere()`."""
    return _current.get()


def owner() -> int:
    """The tenant a new row belongs to; writing outside any one tenant is a bug."""
    tenant = _current.get()
    if tenant is None:
        raise RuntimeError("a tenant-owned row written inside everywhere(): name its tenant")
    return tenant


@contextmanager
def use(tenant_id: int) -> Iterator[int]:
    """Work for `tenant_id` inside the block, then for whichever tenant before."""
    token = _current.set(tenant_id)
    try:
        yield tenant_id
    finally:
        _current.reset(token)


@contextmanager
def everywhere() -> Iterator[None]:
    """Queries inside the block see the rows of every tenant."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def enter(tenant_id: int) -> Token[int | None]:
    """Work for `tenant_id` until `leave(token)` (a request: set when it is authenticated,
    undone when it ends)."""
    return _current.set(tenant_id)


def leave(token: Token[int | None]) -> None:
    _current.reset(token)
