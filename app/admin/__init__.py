"""`/admin`: read-only status pages for LMS operators, server-rendered.

Operators sign in with a name and password of their own (`lms-scim operators create`), never
with a SCIM token. The session lives in Flask's signed cookie, scoped to `/admin`, HttpOnly,
SameSite=Lax and Secure unless the service listens on loopback (`Config.cookie_secure`). Every
POST carries the session's CSRF token. Errors here render HTML; `/scim/v2` keeps its JSON.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from app import datetimes, operator_signin, runtime
from app.admin import chart
from app.errors import ScimError
from app.runtime import Runtime
from app.store import operators, outbox, status
from app.store import tokens as token_store
from app.store.models import utcnow

log = logging.getLogger(__name__)

bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
)

SESSION_HOURS = 8
ACTIVITY_DAYS = 30
EXPIRY_WARNING_DAYS = 14
_OPEN_ENDPOINTS = frozenset({"admin.login", "admin.static"})


# -- session and CSRF ----------------------------------------------------------------------


def csrf_token() -> str:
    """This session's CSRF token (created on first use), for hidden form fields."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, "The form has expired; reload the page and try again.")


@bp.before_request
def _guard() -> Any:
    if request.method == "POST":
        _check_csrf()
    if request.endpoint in _OPEN_ENDPOINTS:
        return None
    name = session.get("operator")
    operator = operators.find(name) if name else None
    if operator is None:
        session.pop("operator", None)
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    g.operator = operator
    return None


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
    """Only a path under /admin: never an open redirect to another site."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/admin"):
            return target
    return url_for("admin.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    code = 200
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        try:
            operator = operator_signin.sign_in(
                name, request.form.get("password", ""), runtime.current().hasher
            )
        except operator_signin.SignInRefused as exc:
            error, code = str(exc), 401
            log.warning("admin sign-in refused for %r from %s", name, request.remote_addr)
        else:
            session.clear()  # a fresh session (and CSRF token) after signing in
            session.permanent = True
            session["operator"] = operator.name
            return redirect(_safe_next(request.args.get("next")))
    elif session.get("operator"):
        return redirect(_safe_next(request.args.get("next")))
    return render_template("admin/login.html", error=error), code


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("admin.login"))


# -- pages -----------------------------------------------------------------------------------


@bp.get("/")
def dashboard() -> str:
    stats = status.stats(ACTIVITY_DAYS)
    tokens = token_store.all_tokens()
    return render_template(
        "admin/dashboard.html",
        stats=stats,
        chart=chart.stacked(stats.days, stats.activity),
        warnings=_token_warnings(tokens),
        recent=list(status.events(limit=10, newest_first=True)),
    )


@bp.get("/users")
def users() -> str:
    query = request.args.get("q", "")
    return render_template(
        "admin/users.html", query=query, results=status.search_users(query, limit=100)
    )


@bp.get("/users/<user_id>")
def user(user_id: str) -> str:
    return render_template("admin/user.html", found=status.user_status(user_id, history=50))


@bp.get("/tokens")
def tokens() -> str:
    rows = token_store.all_tokens()
    now = utcnow()
    return render_template(
        "admin/tokens.html",
        tokens=[(t, token_store.state(t, now)) for t in rows],
        warnings=_token_warnings(rows),
    )


@bp.get("/relay")
def relay() -> str:
    """The LMS relay: backlog, failures (dead letters with their reasons), last delivery."""
    return render_template("admin/relay.html", relay=outbox.relay_status(limit=100))


@bp.route("/<path:_rest>")
def not_found(_rest: str) -> Any:
    abort(404)


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
        "csrf_token": csrf_token,
        "operator": g.get("operator"),
        "now": utcnow(),
        "display_name": status.display_name,
    }


def register(app: Flask, runtime: Runtime) -> None:
    config = runtime.config
    app.config.update(
        SECRET_KEY=runtime.secret_key,
        SESSION_COOKIE_NAME="lms_scim_admin",
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.cookie_secure(),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
    )
    app.register_blueprint(bp)


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
