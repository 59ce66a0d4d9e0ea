"""The `/admin` session: Flask's signed cookie carries a CSRF token and the secret of a server-side
session (`operator_signin`, `app.store.admin_sessions`), so signing out, a password change and
`operators disable` end it for good, and it dies after `ADMIN_SESSION_HOURS` from sign-in or
`ADMIN_IDLE_MINUTES` without a request, whatever the cookie says.

The cookie is scoped to `/admin`, HttpOnly, SameSite=Lax, and Secure whenever the request came over
HTTPS — directly, or as a trusted proxy says (`TRUSTED_PROXY_HOPS`: werkzeug's ProxyFix sets the
scheme) — and on plain http too unless the service listens on loopback (`Config.cookie_secure`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets

from flask import Flask, abort, request, session
from flask.sessions import SecureCookieSessionInterface

from app import operator_signin, runtime
from app.config import Config
from app.store.admin_sessions import Lifetimes
from app.store.models import Operator

COOKIE = "lms_scim_admin"
_SID = "sid"


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, Secure also when this request arrived over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or request.is_secure)


def configure(app: Flask, config: Config) -> None:
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.cookie_secure(),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=config.admin_session_hours),
    )
    app.session_interface = CookieSessions()


def lifetimes() -> Lifetimes:
    config = runtime.current().config
    return Lifetimes(
        absolute=dt.timedelta(hours=config.admin_session_hours),
        idle=dt.timedelta(minutes=config.admin_idle_minutes),
    )


def csrf_token() -> str:
    """This session's CSRF token (created on first use), for hidden form fields."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, "The form has expired; reload the page and try again.")


def begin(operator: Operator) -> bool:
    """Sign `operator` in: a fresh cookie (and CSRF token) naming a new server-side session.
    False if their password changed or they were disabled since it was checked."""
    secret = operator_signin.start_session(operator, lifetimes())
    if secret is None:
        return False
    session.clear()
    session.permanent = True
    session[_SID] = secret
    return True


def current_operator() -> Operator | None:
    """The operator whose live session this cookie names, or None (and the cookie forgets it)."""
    secret = session.get(_SID)
    operator = operator_signin.resume_session(secret, lifetimes()) if secret else None
    if operator is None:
        session.pop(_SID, None)
    return operator


def end() -> None:
    """Sign out: the server-side session ends, so the cookie is worthless even if kept."""
    secret = session.get(_SID)
    if secret:
        operator_signin.end_session(secret)
    session.clear()
