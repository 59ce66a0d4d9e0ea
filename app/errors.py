"""One error hierarchy, mapped to the RFC 7644 §3.12 error envelope in one place.

Every failure under `/scim/v2` — ours, werkzeug's routing and size errors, marshmallow's
validation errors, peewee's integrity and connection errors, and anything unexpected — leaves
through `register(app)` as `{"schemas": [Error], "status": "<code as string>", "scimType": …,
"detail": …}`. A 500 says nothing about the inside.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
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


def _is_scim_request() -> bool:
    return request.path.startswith("/scim/")


def to_scim_error(exc: BaseException) -> ScimError:
    """Translate any exception into the ScimError that describes it to the client."""
    if isinstance(exc, ScimError):
        return exc
    if isinstance(exc, HTTPException):
        return _from_http(exc)
    from marshmallow import ValidationError

    if isinstance(exc, ValidationError):
        return InvalidValue(_describe_validation(exc.messages))
    if isinstance(exc, database_outage_errors()):
        # Connection refused or dropped, pool exhausted, SQLite busy: the client may retry.
        # The message can hold SQL, so only the exception's type is logged.
        log.warning("database unavailable: %s", type(exc).__name__)
        g.database_error = type(exc).__name__
        return Unavailable()
    log.exception("unexpected error on %s %s", request.method, request.path)
    return ScimError("Internal error.", status=500)


@functools.cache
def database_outage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the database cannot answer now", as they reach a request.

    peewee wraps driver errors raised while executing (psycopg2's OperationalError becomes
    `peewee.OperationalError`), but a cursor opened on a connection the server dropped raises
    psycopg2's own `InterfaceError`, and an exhausted pool raises `MaxConnectionsExceeded`.
    """
    import peewee
    from playhouse.pool import MaxConnectionsExceeded

    kinds: list[type[BaseException]] = [
        peewee.OperationalError,
        peewee.InterfaceError,
        MaxConnectionsExceeded,
    ]
    with contextlib.suppress(ImportError):
        import psycopg2

        kinds += [psycopg2.OperationalError, psycopg2.InterfaceError]
    return tuple(kinds)


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
