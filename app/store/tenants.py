"""The tenants: organisations that share one deployment, each with its own users, groups,
tokens and audit trail (`app.store.tenancy` scopes every query to one of them)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import peewee

from app.datetimes import as_datetime
from app.errors import InvalidValue, NotFound, Uniqueness
from app.store import audit, lms_targets, tenancy
from app.store.db import database
from app.store.models import (
    ALL_MODELS,
    AdminSession,
    ApiToken,
    AuditEvent,
    Group,
    Operator,
    RowCount,
    Tenant,
    TenantModel,
    User,
    utcnow,
)
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
            lms_targets.create_default(tenant.id)
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
    # The time of the tenant's latest audit event (None: nothing happened yet).
    last_activity: dt.datetime | None = None


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
        latest = dict(
            AuditEvent.select(AuditEvent.tenant_id, peewee.fn.MAX(AuditEvent.at))
            .group_by(AuditEvent.tenant_id)
            .tuples()
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
            as_datetime(latest.get(t.id)),
        )
        for t in all_tenants()
    ]


def _per_tenant(query: peewee.ModelSelect) -> dict[int, int]:
    model = query.model
    return dict(query.group_by(model.tenant_id).tuples())


@dataclass(frozen=True)
class Stored:
    """What a tenant keeps about itself: its slug, its settings (env name → text, as in the
    environment; a secret sealed) and whether it is disabled."""

    slug: str
    settings: dict[str, str]
    disabled: bool


def stored(tenant_id: int) -> Stored:
    """The stored settings and state of a tenant (one query; `Runtime` caches it)."""
    row = (
        Tenant.select(Tenant.slug, Tenant.settings, Tenant.disabled_at)
        .where(Tenant.id == tenant_id)
        .tuples()
        .first()
    )
    if row is None:
        raise NotFound(f"No tenant with id {tenant_id}.")
    slug, settings, disabled_at = row
    return Stored(slug, json.loads(settings) if settings else {}, disabled_at is not None)


def own_values(variable: str) -> dict[int, tuple[str, str]]:
    """tenant id → (slug, text) of every tenant that set `variable` itself (one query over the
    tenants; the runtime keeps the answer while the cache generation stands still)."""
    rows = (
        Tenant.select(Tenant.id, Tenant.slug, Tenant.settings)
        .where(Tenant.settings.is_null(False))
        .tuples()
    )
    found: dict[int, tuple[str, str]] = {}
    for tenant_id, slug, settings in rows:
        value = json.loads(settings).get(variable)
        if value:
            found[tenant_id] = (slug, value)
    return found


def save_settings(
    tenant: Tenant,
    changes: Mapping[str, str | None],
    actor: audit.Actor = audit.SYSTEM,
    *,
    role_names: Iterable[str] | None = None,
) -> None:
    """Set (text) or reset (None) some of a tenant's settings, already checked by the caller
    (`TenantSettings.overlay`). Audited by name with before/after, except `secret` ones, whose
    values never reach the trail (only that they changed). `role_names`: when `LMS_ROLE_IDS`
    changes, the roles of the new map, which must keep those the enrolment rules of the
    targets using it name (`lms_targets.check_roles_kept`; refused, nothing saved)."""
    with database.atomic():
        if role_names is not None:
            with tenancy.use(tenant.id):
                targets = lms_targets.on_tenant_roles()
                names = ", ".join(t.name for t in targets)
                whose = f"LMS_ROLE_IDS (the role map of LMS target(s) {names})"
                lms_targets.check_roles_kept(targets, role_names, whose)
        current = Tenant.get_by_id(tenant.id)
        settings = json.loads(current.settings) if current.settings else {}
        trail: dict[str, object] = {}
        for name, value in changes.items():
            before = settings.pop(name, None)
            if value is not None:
                settings[name] = value
            if before != value:
                trail[name] = _trail(name, before, value)
        Tenant.update(settings=json.dumps(settings, sort_keys=True) if settings else None).where(
            Tenant.id == tenant.id
        ).execute()
        if trail:
            with tenancy.use(tenant.id):
                audit.record(actor, "Tenant", str(tenant.id), "tenant_settings", trail)


SECRET_SETTINGS = frozenset({"LMS_TOKEN"})


def store_resealed(tenant_id: int, name: str, sealed: str, resealed: str) -> None:
    """Replace the secret setting `name`'s `sealed` value by the same secret `resealed` under
    the current SECRET_KEY (`SecretBox.open`): not audited, the value is the same. Nothing is
    written if the settings changed since they were read (a `tenants set`, another process's
    reseal): the row itself is compared."""
    text = Tenant.select(Tenant.settings).where(Tenant.id == tenant_id).scalar()
    settings = json.loads(text) if text else {}
    if settings.get(name) != sealed:
        return
    settings[name] = resealed
    Tenant.update(settings=json.dumps(settings, sort_keys=True)).where(
        (Tenant.id == tenant_id) & (Tenant.settings == text)
    ).execute()


def _trail(name: str, before: str | None, after: str | None) -> dict[str, object]:
    if name in SECRET_SETTINGS:
        return {"before": "set" if before else None, "after": "set" if after else None}
    return {"before": before, "after": after}


def set_disabled(tenant: Tenant, disabled: bool, actor: audit.Actor = audit.SYSTEM) -> bool:
    """Disable (its tokens then get 403) or enable a tenant; False when it already was."""
    with database.atomic():
        query = Tenant.update(disabled_at=utcnow() if disabled else None).where(
            Tenant.id == tenant.id,
            Tenant.disabled_at.is_null() if disabled else Tenant.disabled_at.is_null(False),
        )
        if not query.execute():
            return False
        with tenancy.use(tenant.id):
            operation = "tenant_disable" if disabled else "tenant_enable"
            audit.record(actor, "Tenant", str(tenant.id), operation)
    return True


def row_counts(tenant_id: int) -> dict[str, int]:
    """Rows of each tenant-owned table that belong to the tenant."""
    with tenancy.use(tenant_id):
        return {
            model._meta.table_name: model.select().count()
            for model in ALL_MODELS
            if issubclass(model, TenantModel)
        }


def delete(tenant: Tenant, *, purge: bool, actor: audit.Actor = audit.SYSTEM) -> dict[str, int]:
    """Delete a tenant and, in the same transaction, every row of it in every tenant-owned
    table, and the operators bound to it; the rows removed per table. Refused for the default
    tenant, and, unless `purge`,
    while the tenant has users or groups. The event goes to the default tenant's trail (the
    tenant's own goes with it)."""
    if tenant.id == tenancy.DEFAULT_TENANT:
        raise InvalidValue("The default tenant cannot be deleted.")
    with database.atomic():
        counts = row_counts(tenant.id)
        users, groups = counts[User._meta.table_name], counts[Group._meta.table_name]
        if not purge and (users or groups):
            raise InvalidValue(
                f"Tenant {tenant.slug!r} has {users} users and {groups} groups; "
                "delete them first or use --purge."
            )
        owned = [m for m in ALL_MODELS if issubclass(m, TenantModel) and m is not RowCount]
        with tenancy.use(tenant.id):
            # Children before parents; the counter triggers run as users and groups go, so the
            # tenant's RowCount rows go last.
            for model in (*reversed(owned), RowCount):
                model.delete().execute()
        counts[Operator._meta.table_name] = _delete_bound_operators(tenant.id)
        Tenant.delete().where(Tenant.id == tenant.id).execute()
        with tenancy.use(tenancy.DEFAULT_TENANT):
            audit.record(
                actor, "Tenant", str(tenant.id), "tenant_delete", {"slug": {"before": tenant.slug}}
            )
    return {name: n for name, n in counts.items() if n}


def _delete_bound_operators(tenant_id: int) -> int:
    """The operators bound to a tenant go with it (they could see nothing else), their
    sessions first."""
    bound = Operator.select(Operator.id).where(Operator.tenant_id == tenant_id)
    AdminSession.delete().where(AdminSession.operator.in_(bound)).execute()
    return Operator.delete().where(Operator.tenant_id == tenant_id).execute()
