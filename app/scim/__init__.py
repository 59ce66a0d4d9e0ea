"""The `/scim/v2` blueprint: every route requires a bearer token (RFC 7644 §2)."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, g, request

from app import auth, runtime
from app.errors import Forbidden, NotFound, Unauthorized
from app.store import tenancy

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@bp.before_request
def _authenticate() -> None:
    # Under the bad-token brake the token was verified already (`app.ratelimit`).
    current = runtime.current()
    if "principal" not in g:
        g.principal = auth.verify(request.headers.get("Authorization"), current.tokens)
    # From here on the request works for the token's tenant: every query is scoped to it.
    g.tenant_scope = tenancy.enter(g.principal.tenant_id)
    try:
        state = current.tenant(g.principal.tenant_id)
    except NotFound:  # deleted since its token was verified (another process's cache)
        raise Unauthorized() from None
    if state.disabled:
        raise Forbidden(
            "This token's tenant is disabled; an operator can enable it (lms-scim tenants enable)."
        )
    # A read-only token may query, including POST /.search (RFC 7644 §3.4.3), but not write.
    searching = request.method == "POST" and request.path.rstrip("/").endswith("/.search")
    if g.principal.read_only and request.method not in _READS and not searching:
        raise Forbidden("This token is read-only; it may not create, change or delete.")


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


def register(app) -> None:
    from app.scim import bulk, discovery, groups, me, search, users  # noqa: F401 - routes attach to bp

    app.before_request(_request_id)
    app.after_request(_echo_request_id)
    app.teardown_request(_leave_tenant)
    app.register_blueprint(bp)
