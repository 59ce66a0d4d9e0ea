"""Which tenant an `/admin` page shows, and who may see it.

An operator is global (`Operator.tenant_id` NULL: every tenant, a switcher and the tenants
overview) or bound to one tenant (that one only). A tenant's pages live at `/admin/t/SLUG/…`;
the plain `/admin/…` pages show the operator's home tenant (their own when bound, the default
tenant when global), so a single-organisation install keeps its URLs. Every request enters the
tenant before any page query (`tenancy.enter`), so the pages' queries are scoped by the models
(`app.store.models.TenantModel`), not by each page remembering to ask.

A bound operator asking for another tenant gets the very 404 an unknown slug gets: the answer
never tells them which other tenants exist.
"""

from __future__ import annotations

from typing import Any

from flask import abort, g

from app import observability
from app.store import tenancy
from app.store import tenants as tenant_store
from app.store.models import Operator, Tenant

# The pages that show one tenant, in the switcher's order of preference: switching tenants on
# one of them lands on the same page of the other tenant (a user's page: the users list).
TENANT_PAGES = (
    "admin.dashboard",
    "admin.users",
    "admin.groups",
    "admin.tokens",
    "admin.connections_page",
    "admin.relay",
)
_SAME_PAGE = {
    "admin.user": "admin.users",
    "admin.group": "admin.groups",
    "admin.connection": "admin.connections_page",
}

_ASKED = "admin_tenant_asked"
_SCOPE = "admin_tenant_scope"


def is_global(operator: Operator) -> bool:
    return operator.tenant_id is None


def visible(operator: Operator, slug: str | None) -> Tenant:
    """The tenant `slug` names (the operator's home tenant when None), if this operator may see
    it; otherwise 404, the same for a tenant that exists and one that does not."""
    if slug is None:
        home = tenancy.DEFAULT_TENANT if is_global(operator) else operator.tenant_id
        tenant = Tenant.get_or_none(Tenant.id == home)
    else:
        tenant = Tenant.get_or_none(Tenant.slug == slug)
        if tenant is not None and not is_global(operator) and tenant.id != operator.tenant_id:
            tenant = None
    if tenant is None:
        abort(404)
    return tenant


def pull(values: dict[str, Any] | None) -> None:
    """Take the tenant out of the URL's values (the views never see it) until `enter`."""
    if values and "tenant" in values:
        setattr(g, _ASKED, values.pop("tenant"))


def enter(operator: Operator) -> Tenant:
    """Work for the tenant this request asked for (or the operator's home tenant) until the
    request ends (`leave`)."""
    slug = g.pop(_ASKED, None)
    tenant = visible(operator, slug)
    g.tenant = tenant
    g.tenant_in_url = slug is not None
    setattr(g, _SCOPE, tenancy.enter(tenant.id))
    observability.log_tenant(tenant.slug)
    return tenant


def leave() -> None:
    if _SCOPE in g:
        tenancy.leave(g.pop(_SCOPE))


def keep_in_links(values: dict[str, Any], expects_tenant: bool) -> None:
    """Links from a page at `/admin/t/SLUG/…` stay in that tenant."""
    if expects_tenant and g.get("tenant_in_url") and "tenant" not in values:
        values["tenant"] = g.tenant.slug


def switch_target(operator: Operator, slug: str, page: str) -> tuple[str, str]:
    """Where the switcher leads: (endpoint, slug) of the same page in tenant `slug`, for a
    global operator only (404 otherwise, and for an unknown slug)."""
    if not is_global(operator):
        abort(404)
    tenant = visible(operator, slug)
    page = _SAME_PAGE.get(page, page)
    return (page if page in TENANT_PAGES else TENANT_PAGES[0]), tenant.slug


def overview(operator: Operator) -> list[tenant_store.Summary]:
    """Every tenant with its counts: for global operators only (404 for a bound one)."""
    if not is_global(operator):
        abort(404)
    return tenant_store.summaries()


def switchable(operator: Operator | None) -> list[Tenant]:
    """The tenants a switcher offers this operator: none for a bound one, and none while
    there is only one tenant (a single-organisation install has nothing to switch)."""
    if operator is None or not is_global(operator):
        return []
    tenants = tenant_store.all_tenants()
    return tenants if len(tenants) > 1 else []
