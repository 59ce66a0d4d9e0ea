"""`/admin`: read-only status pages for LMS operators, server-rendered.

Operators sign in with a name and password of their own (`lms-scim operators create`), never
with a SCIM token (`app.operator_signin`). The session is server-side, named by a signed cookie
(`app.admin.sessions`). Every POST carries the session's CSRF token. Errors here render HTML;
`/scim/v2` keeps its JSON.

Each request works for one tenant (`app.admin.scope`): a bound operator's own, or for a global
operator the one the URL names (`/admin/t/SLUG/…`; the plain URLs show the default tenant).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException

from app import connections, datetimes, history, operator_signin, ratelimit, runtime
from app.admin import chart, listing, scope, sessions
from app.errors import ScimError
from app.runtime import Runtime
from app.store import browse, outbox, outcomes, status, tenancy
from app.store import tenants as tenant_store
from app.store import tokens as token_store
from app.store.models import Operator, utcnow

log = logging.getLogger(__name__)

bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
)

ACTIVITY_DAYS = 30
EXPIRY_WARNING_DAYS = 14
_OPEN_ENDPOINTS = frozenset({"admin.login", "admin.static"})


# -- sign-in and the session -----------------------------------------------------------------


@bp.before_request
def _guard() -> Any:
    if request.method == "POST":
        sessions.check_csrf()
    if request.endpoint in _OPEN_ENDPOINTS:
        return None
    operator = sessions.current_operator()
    if operator is None:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    g.operator = operator
    scope.enter(operator)  # before any page query: they are all scoped to this tenant
    return None


@bp.url_value_preprocessor
def _pull_tenant(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    scope.pull(values)


@bp.url_defaults
def _keep_tenant(endpoint: str, values: dict[str, Any]) -> None:
    scope.keep_in_links(values, current_app.url_map.is_endpoint_expecting(endpoint, "tenant"))


@bp.teardown_request
def _leave_tenant(_exc: BaseException | None) -> None:
    scope.leave()


def _tenant_page(rule: str) -> Any:
    """A page of one tenant: at `/admin{rule}` for the operator's home tenant, and at
    `/admin/t/SLUG{rule}` for any tenant they may see (`app.admin.scope`)."""

    def register(view: Any) -> Any:
        bp.add_url_rule(rule, view_func=view, methods=["GET"])
        bp.add_url_rule(f"/t/<tenant>{rule}", view_func=view, methods=["GET"])
        return view

    return register


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "admin.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target: str | None) -> str:
    """Only a path under /admin/: never an open redirect to another site, never a way out of
    /admin/ through dot segments (`/admin/../scim`, also percent-encoded), and never a control
    character (a CR or LF would split the Location header) or a backslash (a slash to browsers)."""
    if target and target.isprintable() and "\\" not in target:
        parts = urlsplit(target)
        segments = unquote(parts.path).split("/")
        if (
            not parts.scheme
            and not parts.netloc
            and parts.path.startswith("/admin/")
            and not {".", ".."} & set(segments)
        ):
            return target
    return url_for("admin.dashboard")


def _sign_in() -> Operator:
    """Sign in with the form's name and password, or SignInRefused."""
    settings = runtime.current()
    guards = operator_signin.Guards(
        brake=ratelimit.of(current_app),
        hasher=settings.sign_in_hasher,
        secret_key=settings.secret_key,
    )
    operator = operator_signin.sign_in(
        request.form.get("name", "").strip(),
        request.form.get("password", ""),
        ratelimit.client_address(),
        guards,
    )
    if not sessions.begin(operator):  # password changed or disabled a moment ago
        raise operator_signin.SignInRefused(operator_signin.WRONG, 401, repr(operator.name))
    return operator


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET" and sessions.current_operator() is not None:
        return redirect(_safe_next(request.args.get("next")))
    error, code, headers = None, 200, {}
    if request.method == "POST":
        try:
            _sign_in()
        except operator_signin.SignInRefused as exc:
            error, code = str(exc), exc.status
            if exc.retry_after is not None:
                headers["Retry-After"] = str(exc.retry_after)
            log.warning(
                "admin sign-in refused (%s) for %s from %s", code, exc.who, request.remote_addr
            )
        else:
            return redirect(_safe_next(request.args.get("next")))
    return render_template("admin/login.html", error=error), code, headers


@bp.post("/logout")
def logout() -> Response:
    sessions.end()
    return redirect(url_for("admin.login"))


# -- pages -----------------------------------------------------------------------------------


@_tenant_page("/")
def dashboard() -> str:
    stats = status.stats(ACTIVITY_DAYS)
    tokens = token_store.all_tokens()
    recent = list(status.events(limit=10, newest_first=True))
    connections.of(current_app).flush()
    return render_template(
        "admin/dashboard.html",
        failing=[c for c in outcomes.connections() if c.failed],
        stats=stats,
        chart=chart.stacked(stats.days, stats.activity),
        warnings=_token_warnings(tokens),
        recent=recent,
        names=_names(recent),
    )


@_tenant_page("/users")
def users() -> str:
    """Every user, a page at a time, by state, user type, group and a search text."""
    args = request.args
    wanted = browse.UserFilter(
        text=args.get("q", ""),
        state=args.get("state", ""),
        user_type=args.get("type", ""),
        group_id=args.get("group", ""),
    )
    paging = listing.Paging.from_request(wanted.key)
    found = browse.users(wanted, paging.request)
    return render_template(
        "admin/users.html",
        wanted=wanted,
        query=wanted.text,
        found=found,
        results=found.items,
        paging=paging,
        next_url=paging.next_url(found),
        user_types=browse.user_types(),
        groups=browse.group_choices(wanted.group_id),
    )


@_tenant_page("/users/<user_id>")
def user(user_id: str) -> str:
    found = status.user_status(browse.checked(user_id), history=50)
    return render_template("admin/user.html", found=found, names=_names(found.history))


@_tenant_page("/groups")
def groups() -> str:
    """Groups a page at a time, with member counts, enrolment rules and relay state."""
    text = request.args.get("q", "")
    paging = listing.Paging.from_request(("groups", text.strip()))
    found = browse.groups(text, paging.request)
    return render_template(
        "admin/groups.html",
        query=text,
        found=found,
        paging=paging,
        next_url=paging.next_url(found),
        lms_url=_relay_on(),
    )


@_tenant_page("/groups/<group_id>")
def group(group_id: str) -> str:
    """One group: its rules and relay state, its members a page at a time, and its history
    (members who joined and left, and the token that did it)."""
    found = browse.group(group_id)
    wanted = browse.UserFilter(group_id=found.id)
    paging = listing.Paging.from_request(("members", found.id))
    members = browse.users(wanted, paging.request)
    history = browse.group_events(found.id)
    return render_template(
        "admin/group.html",
        group=found,
        members=members,
        paging=paging,
        next_url=paging.next_url(members),
        history=history,
        names=_names(history),
        lms_url=_relay_on(),
    )


@_tenant_page("/tokens")
def tokens() -> str:
    rows = token_store.all_tokens()
    now = utcnow()
    return render_template(
        "admin/tokens.html",
        tokens=[(t, token_store.state(t, now)) for t in rows],
        warnings=_token_warnings(rows),
    )


@_tenant_page("/connections")
def connections_page() -> str:
    """Each token and OAuth client: its last request, and the last day's requests and errors."""
    connections.of(current_app).flush()  # this process's counts first
    return render_template("admin/connections.html", rows=outcomes.connections())


@_tenant_page("/connection")
def connection() -> str:
    """One token or client (`?name=`): the last day's requests by status, the last 10 errors
    with their SCIM detail, so an operator sees why an IdP's sync fails."""
    name = request.args.get("name", "")
    connections.of(current_app).flush()
    found = outcomes.connection(browse.checked(name)) if name else None
    if found is None:
        abort(404, f"No token or OAuth client named {name!r} in this tenant.")
    now = utcnow()
    return render_template(
        "admin/connection.html",
        c=found,
        token_states=[(t, token_store.state(t, now)) for t in found.tokens],
    )


def _relay_on() -> bool:
    """Whether the tenant at hand has an LMS (`default`'s LMS_URL or an added target): without
    one, its pages say "no LMS configured" rather than "not yet sent"."""
    return bool(runtime.current().receivers(tenancy.owner()))


@_tenant_page("/relay")
def relay() -> str:
    """The LMS relay: backlog, failures (dead letters with their reasons), last delivery."""
    return render_template(
        "admin/relay.html",
        relay=outbox.relay_status(limit=100),
        lms_url=runtime.tenant_settings().lms_url,
        relay_on=_relay_on(),
    )


@bp.get("/tenants")
def tenants() -> str:
    """Every tenant with its counts, for global operators (a bound one gets 404)."""
    summaries = scope.overview(g.operator)
    everyone = tenant_store.all_tenants()
    lines = outbox.relay_overview([t.id for t in everyone])
    relay = {t.slug: line for t, line in zip(everyone, lines, strict=True)}
    current = runtime.current()
    relay_on = {t.slug: bool(current.receivers(t.id)) for t in everyone}
    rows = [(s, relay[s.slug], relay_on[s.slug]) for s in summaries]
    # Without an LMS anywhere, nothing waits: the column is the relay's state ("relay off").
    waiting = any(on or line.backlog for _, line, on in rows)
    return render_template("admin/tenants.html", rows=rows, waiting=waiting)


@bp.get("/switch")
def switch() -> Response:
    """The tenant switcher (a plain GET form): the same page of the tenant chosen."""
    endpoint, slug = scope.switch_target(
        g.operator, request.args.get("tenant", ""), request.args.get("page", "")
    )
    return redirect(url_for(endpoint, tenant=slug))


@bp.route("/<path:_rest>")
def not_found(_rest: str) -> Any:
    abort(404)


def _names(events: list[status.Event]) -> dict[str, str]:
    """userName by id for the members that `events` name (one query)."""
    ids = {uid for event in events for uid in history.member_names(event.changes)}
    return browse.user_names(sorted(ids))


def _token_warnings(rows: list[Any]) -> list[str]:
    """Plain-language warnings: tokens about to stop working, and usable ones never used."""
    now = utcnow()
    warnings = []
    for token in rows:
        if token_store.expires_soon(token, EXPIRY_WARNING_DAYS, now):
            left = token.expires_at - now
            when = f"in {left.days} days" if left.days else "within a day"
            action = "ends its grace period" if token.rotated_at else "expires"
            warnings.append(f"Token “{token.name}” ({token.prefix}…) {action} {when}.")
    return warnings


# -- errors ----------------------------------------------------------------------------------


@bp.errorhandler(Exception)
def _error(exc: Exception) -> tuple[str, int]:
    """Every failure on /admin is a page, never SCIM JSON (see `app.errors.register`)."""
    if isinstance(exc, HTTPException):
        code, detail = exc.code or 500, exc.description
    elif isinstance(exc, ScimError):
        code, detail = exc.status, exc.detail
    else:
        log.exception("unexpected error on %s %s", request.method, request.path)
        code, detail = 500, "Something went wrong on our side. It has been logged."
    if code >= 500 and not isinstance(exc, ScimError | HTTPException):
        detail = "Something went wrong on our side. It has been logged."
    titles = {400: "Bad request", 401: "Sign-in required", 404: "Not found", 405: "Not allowed"}
    return render_template(
        "admin/error.html", code=code, title=titles.get(code, "Error"), detail=detail
    ), code


# -- wiring ----------------------------------------------------------------------------------


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "csrf_token": sessions.csrf_token,
        "operator": g.get("operator"),
        "tenant": g.get("tenant"),
        "switchable": scope.switchable(g.get("operator")),
        "is_global": g.get("operator") is not None and scope.is_global(g.operator),
        "now": utcnow(),
        "display_name": status.display_name,
    }


def register(app: Flask, runtime: Runtime) -> None:
    app.config.update(SECRET_KEY=runtime.secret_key)
    sessions.configure(app, runtime.config)
    app.register_blueprint(bp)


bp.add_app_template_global(history.describe, "describe")


@bp.app_template_filter("when")
def _when(moment: dt.datetime | None) -> str:
    return datetimes.minute(moment, missing="—")


@bp.app_template_filter("ago")
def _ago(moment: dt.datetime | None) -> str:
    """“3 minutes ago”, “in 5 days”: relative to now, in UTC."""
    if moment is None:
        return "never"
    delta = utcnow() - moment
    future = delta.total_seconds() < 0
    seconds = abs(int(delta.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "in a moment" if future else "just now"
