"""The tenants: organisations that share one deployment, each with its own users, groups,
tokens and audit trail (`app.store.tenancy` scopes every query to one of them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import peewee

from app.errors import InvalidValue, NotFound, Uniqueness
from app.store import audit, tenancy
from app.store.db import database
from app.store.models import ApiToken, Group, Tenant, User
from app.store.names import require_name

# A DNS label: what a tenant's slug may also be used as (a sub-domain, a path segment).
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def check_slug(slug: str) -> None:
    if not _SLUG.fullmatch(slug):
        raise InvalidValue(
            f"A tenant slug is 1-63 lower-case letters, digits and inner hyphens: {slug!r}."
        )


def create(slug: str, name: str, actor: audit.Actor = audit.SYSTEM) -> Tenant:
    """A new tenant; 409 if the slug is taken."""
    check_slug(slug)
    require_name("A tenant name", name)
    try:
        with database.atomic():
            tenant = Tenant.create(slug=slug, name=name)
            with tenancy.use(tenant.id):
                audit.record(
                    actor, "Tenant", str(tenant.id), "tenant_create", {"slug": {"after": slug}}
                )
    except peewee.IntegrityError as exc:
        raise Uniqueness(f"A tenant with slug {slug!r} exists.") from exc
    return tenant


def by_slug(slug: str) -> Tenant:
    tenant = Tenant.get_or_none(Tenant.slug == slug)
    if tenant is None:
        raise NotFound(f"No tenant {slug!r}.")
    return tenant


def all_tenants() -> list[Tenant]:
    return list(Tenant.select().order_by(Tenant.id))


@dataclass(frozen=True)
class Summary:
    """One line of `tenants list`."""

    slug: str
    name: str
    state: str
    users: int
    active_users: int
    groups: int
    tokens: int


def summaries() -> list[Summary]:
    """Every tenant with its counts (grouped queries across tenants, one per table)."""
    with tenancy.everywhere():
        users = _per_tenant(User.select(User.tenant_id, peewee.fn.COUNT(User.id)))
        active = _per_tenant(
            User.select(User.tenant_id, peewee.fn.COUNT(User.id)).where(User.active == True)  # noqa: E712
        )
        groups = _per_tenant(Group.select(Group.tenant_id, peewee.fn.COUNT(Group.id)))
        tokens = _per_tenant(
            ApiToken.select(ApiToken.tenant_id, peewee.fn.COUNT(ApiToken.id)).where(
                ApiToken.revoked_at.is_null()
            )
        )
    return [
        Summary(
            t.slug,
            t.name,
            "disabled" if t.disabled_at else "active",
            users.get(t.id, 0),
            active.get(t.id, 0),
            groups.get(t.id, 0),
            tokens.get(t.id, 0),
        )
        for t in all_tenants()
    ]


def _per_tenant(query: peewee.ModelSelect) -> dict[int, int]:
    model = query.model
    return dict(query.group_by(model.tenant_id).tuples())
