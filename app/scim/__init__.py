"""The `/scim/v2` blueprint: every route requires a bearer token (RFC 7644 §2).

The same views also answer under a tenant's own base URL, `/t/SLUG/scim/v2` (the blueprint is
registered twice). The token decides the tenant either way; a tenant URL only adds a check: a
token of another tenant gets 401 there, as a bad token would, and a slug naming no tenant 404.
Links in responses follow the base URL the request came in on (`app.scim.responses.base_url`).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Flask, Response, g, request

from app import auth, connections, observability, runtime
from app.errors import Forbidden, NotFound, Unauthorized
from app.store import tenancy

SCIM_PREFIX = "/scim/v2"
TENANT_PREFIX = "/t/<tenant_slug>/scim/v2"

bp = Blueprint("scim", __name__, url_prefix=SCIM_PREFIX)

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@bp.before_request
def _authenticate() -> None:
    # Under the bad-token brake the token was verified already (`app.ratelimit`).
    current = runtime.current()
    if "principal" not in g:
        try:
            g.principal = auth.verify(
                request.headers.get("Authorization"),
                current.tokens,
                current.access_tokens,
                current.entra,
            )
        except auth.TokenRefused as exc:
            connections.attribute(*exc.credential)
            raise
    if "url_tenant" in g:
        _check_url_tenant(g.url_tenant, g.principal)
    # From here on the request works for the token's tenant: every query is scoped to it.
    g.tenant_scope = tenancy.enter(g.principal.tenant_id)
    try:
        state = current.tenant(g.principal.tenant_id)
    except NotFound:  # deleted since its token was verified (another process's cache)
        raise Unauthorized() from None
    # Looked up once: the request's log lines and metrics name the tenant by its slug.
    g.tenant_state = state
    observability.log_tenant(state.slug)
    if state.disabled:
        raise Forbidden(
            "This token's tenant is disabled; an operator can enable it (lms-scim tenants enable)."
        )
    # A read-only token may query, including POST /.search (RFC 7644 §3.4.3), but not write.
    searching = request.method == "POST" and request.path.rstrip("/").endswith("/.search")
    if g.principal.read_only and request.method not in _READS and not searching:
        raise Forbidden("This token is read-only; it may not create, change or delete.")


@bp.url_value_preprocessor
def _tenant_from_url(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Under `/t/SLUG/scim/v2` the slug is the base URL's, not an argument of the views."""
    if values and "tenant_slug" in values:
        g.url_tenant = values.pop("tenant_slug")


def _check_url_tenant(slug: str, principal: auth.Principal) -> None:
    """The token was checked first (no token, no answer about slugs): a slug naming no tenant
    is 404, and another tenant's URL answers its token exactly as a bad token is answered."""
    tenant_id = runtime.current().tenant_names.id_of(slug)
    if tenant_id is None:
        raise NotFound(f"No tenant {slug!r} at this address.")
    if tenant_id != principal.tenant_id:
        raise Unauthorized()


def _leave_tenant(_exc: BaseException | None) -> None:
    if "tenant_scope" in g:
        tenancy.leave(g.pop("tenant_scope"))


def _request_id() -> None:
    supplied = request.headers.get("X-Request-Id", "")
    g.request_id = supplied[:64] if supplied.isprintable() and supplied else uuid.uuid4().hex


def _echo_request_id(response: Response) -> Response:
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
    return response


def mount() -> str:
    """The path of the base URL this request came in on: `/scim/v2` or `/t/SLUG/scim/v2`."""
    slug = g.get("url_tenant")
    return SCIM_PREFIX if slug is None else f"/t/{slug}{SCIM_PREFIX}"


def register(app: Flask) -> None:
    from app.scim import bulk, discovery, groups, me, search, users  # noqa: F401 - routes attach to bp

    app.before_request(_request_id)
    app.after_request(_echo_request_id)
    connections.register(app)
    app.teardown_request(_leave_tenant)
    app.register_blueprint(bp)
    app.register_blueprint(bp, name="tenant_scim", url_prefix=TENANT_PREFIX)
