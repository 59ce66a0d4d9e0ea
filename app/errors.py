"""One error hierarchy, mapped to the RFC 7644 §3.12 error envelope in one place.

Every failure under `/scim/v2` — ours, werkzeug's routing and size errors, marshmallow's
validation errors, peewee's integrity and connection errors, and anything unexpected — leaves
through `register(app)` as `{"schemas": [Error], "status": "<code as string>", "scimType": …,
"detail": …}`. A 500 says nothing about the inside.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from scim_schemas import ERROR

log = logging.getLogger(__name__)

SCIM_MEDIA_TYPE = "application/scim+json"


class ScimError(Exception):
    """A failure with an HTTP status and, for 400/409/413, an RFC 7644 `scimType`."""

    status: int = 400
    scim_type: str | None = None

    def __init__(self, detail: str, *, status: int | None = None, scim_type: str | None = None):
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if scim_type is not None:
            self.scim_type = scim_type
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR], "status": str(self.status)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        body["detail"] = self.detail
        return body


class InvalidFilter(ScimError):
    scim_type = "invalidFilter"


class Uniqueness(ScimError):
    status = 409
    scim_type = "uniqueness"


class Mutability(ScimError):
    scim_type = "mutability"


class InvalidSyntax(ScimError):
    scim_type = "invalidSyntax"


class InvalidPath(ScimError):
    scim_type = "invalidPath"


class NoTarget(ScimError):
    scim_type = "noTarget"


class InvalidValue(ScimError):
    scim_type = "invalidValue"


class UnsupportedMediaType(InvalidSyntax):
    """415: a body that is not JSON (RFC 7644 §3.1 names application/scim+json)."""

    status = 415

    def __init__(self, detail: str = "Send the body as application/scim+json or application/json."):
        super().__init__(detail)


class NotFound(ScimError):
    status = 404


class Unauthorized(ScimError):
    status = 401

    def __init__(self, detail: str = "A valid bearer token is required."):
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = 'Bearer realm="lms-scim"'


class Forbidden(ScimError):
    status = 403


class PreconditionFailed(ScimError):
    status = 412


class PayloadTooLarge(ScimError):
    status = 413


class NotImplementedYet(ScimError):
    status = 501


class Unavailable(ScimError):
    status = 503

    def __init__(
        self, detail: str = "The database is unavailable; retry shortly.", retry_after: int = 5
    ):
        super().__init__(detail)
        self.headers["Retry-After"] = str(retry_after)


class TooManyRequests(ScimError):
    """429 (RFC 6585 §4) with `Retry-After`: a rate limit, or too many invalid tokens."""

    status = 429

    def __init__(self, detail: str, retry_after: int = 60):
        super().__init__(detail)
        self.headers["Retry-After"] = str(max(1, retry_after))


def dumps(value: Any) -> str:
    """The one JSON encoding of SCIM bodies: compact, UTF-8 as is, dates as text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def scim_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the SCIM media type (RFC 7644 §3.1)."""
    payload = dumps(body)
    response = Response(payload, status=status, mimetype=SCIM_MEDIA_TYPE)
    if headers:
        response.headers.update(headers)
    return response


def error_response(error: ScimError) -> Response:
    return scim_response(error.body(), error.status, error.headers)


def _from_http(exc: HTTPException) -> ScimError:
    status = exc.code or 500
    if status == 404:
        return NotFound("No such resource or endpoint.")
    if status == 405:
        error = ScimError(f"Method {request.method} is not allowed here.", status=405)
        if exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                error.headers["Allow"] = ", ".join(allowed)
        return error
    if status == 413:
        return PayloadTooLarge("The request body is larger than this service accepts.")
    if status == 415:
        return UnsupportedMediaType()
    if status >= 500:
        return ScimError("Internal error.", status=status)
    return ScimError(exc.description or exc.name, status=status)


# `/scim/v2/…` and a tenant's own base URL, `/t/SLUG/scim/v2/…` (`app.scim`).
_SCIM_PATH = re.compile(r"/(?:t/[^/]+/)?scim/")


def is_scim_path(path: str) -> bool:
    """Whether `path` is under a SCIM base URL, so its errors (even a routing 404) are SCIM's."""
    return _SCIM_PATH.match(path) is not None


def _is_scim_request() -> bool:
    return is_scim_path(request.path)


def to_scim_error(exc: BaseException) -> ScimError:
    """Translate any exception into the ScimError that describes it to the client."""
    if isinstance(exc, ScimError):
        return exc
    if isinstance(exc, HTTPException):
        return _from_http(exc)
    from marshmallow import ValidationError

    if isinstance(exc, ValidationError):
        return InvalidValue(_describe_validation(exc.messages))
    if is_database_outage(exc):
        # The client may retry; the operator reads the driver's own words (they name a host,
        # a file or a lock, never data: statements are parameterised and outages carry none).
        log.warning(
            "database unavailable: %s",
            outage_cause(exc),
            extra={"fields": {"request_id": g.get("request_id")}},
        )
        g.database_error = type(exc).__name__
        return Unavailable()
    log.exception("unexpected error on %s %s", request.method, request.path)
    return ScimError("Internal error.", status=500)


# SQLite result codes of a database that cannot answer now: locked by another writer past
# busy_timeout, a file that cannot be opened, an I/O error (`sqlite_errorname`, Python 3.11+).
_SQLITE_OUTAGES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")
# PostgreSQL SQLSTATEs of a server that cannot take the request now: connection exceptions
# (class 08), shutting down or starting up (57P01-57P03), too many connections (53300); and
# a transaction the server rolled back to let a concurrent one through (serialization failure
# 40001, deadlock 40P01), which the same request sent again completes.
_POSTGRES_OUTAGES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's exception behind peewee's (peewee keeps it as `orig`, and a failed pool
    connect made while executing is wrapped twice)."""
    while isinstance(getattr(exc, "orig", None), BaseException):
        exc = exc.orig  # type: ignore[attr-defined]
    return exc


def is_database_outage(exc: BaseException) -> bool:
    """Whether `exc` means "the database cannot be reached now" (503 + Retry-After: retrying
    helps), as opposed to a bug or a broken schema (500: retrying never helps).

    Outages: the pool exhausted; psycopg2's connection errors (no SQLSTATE: refused, dropped,
    timed out; or one of `_POSTGRES_OUTAGES`); SQLite busy, locked, unopenable or failing I/O.
    Not outages: a missing table, a cancelled statement, peewee's own misuse errors.
    """
    import sqlite3

    from playhouse.pool import MaxConnectionsExceeded

    if isinstance(exc, MaxConnectionsExceeded):
        return True
    cause = _driver_error(exc)
    if isinstance(cause, sqlite3.OperationalError):
        return getattr(cause, "sqlite_errorname", "").startswith(_SQLITE_OUTAGES)
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2 is a dependency
        return False
    if isinstance(cause, psycopg2.InterfaceError):
        return True  # "connection already closed"
    if isinstance(cause, psycopg2.OperationalError) or type(cause) is psycopg2.DatabaseError:
        code = cause.pgcode
        return code is None or code.startswith(_POSTGRES_OUTAGES)
    return False


def outage_cause(exc: BaseException) -> str:
    """The driver's error type and message on one line, for the log."""
    cause = _driver_error(exc)
    return f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"


def _describe_validation(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        parts = [
            _describe_validation(v, f"{prefix}{k}." if prefix or k else "")
            for k, v in messages.items()
        ]
        return "; ".join(parts)
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        where = prefix.rstrip(".") or "body"
        return f"{where}: {' '.join(messages)}"
    if isinstance(messages, list):
        return "; ".join(_describe_validation(m, prefix) for m in messages)
    return f"{prefix.rstrip('.') or 'body'}: {messages}"


def register(app: Flask) -> None:
    """Render every error under `/scim/` as a SCIM error; leave other paths to Flask."""

    @app.errorhandler(Exception)
    def _handle(exc: Exception) -> Any:
        if not _is_scim_request():
            if isinstance(exc, HTTPException):
                return exc
            log.exception("unexpected error on %s %s", request.method, request.path)
            return Response("Internal error.\n", status=500, mimetype="text/plain")
        return error_response(to_scim_error(exc))
