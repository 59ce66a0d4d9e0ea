"""Opaque, signed, expiring cursors for RFC 9865 cursor pagination.

A cursor is `<payload>.<mac>`, both unpadded base64url (only RFC 3986 unreserved characters, as
RFC 9865 §2 asks). The payload holds the keyset position where the previous page ended (the
last row's sort value and id, `app.store.paging.Position`), the time it expires and a digest
of the query it belongs to; the MAC is HMAC-SHA256 over the payload with a key derived from the
service's `SECRET_KEY`. So a cursor costs the server no memory (nothing is stored per cursor,
RFC 9865 §7's availability advice), cannot be forged or edited (a changed byte is 400
`invalidCursor`), cannot be replayed against another filter or sort order (`invalidCursor`), and
stops working after `CURSOR_TIMEOUT_SECONDS` (`expiredCursor`). Cursors are not secret: the
position is only base64, and it is the client's own data.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

from app.errors import ScimError

_VERSION = 1
_DATETIME = "$dt"  # tags a datetime sort value, which JSON cannot carry as itself


def invalid_cursor(detail: str) -> ScimError:
    return ScimError(detail, status=400, scim_type="invalidCursor")


def derive_key(secret: str | bytes) -> bytes:
    """A key used for cursors only (the admin session cookie signs with the secret itself)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, b"lms-scim cursor v1", hashlib.sha256).digest()


def query_digest(*parts: Any) -> str:
    """A short digest of what defines a query (resource type, filter, sort), so a cursor only
    continues the query that produced it (RFC 9865 §2: the other parameters stay identical)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {_DATETIME: value.isoformat()}
    return value


def _restore(value: Any) -> Any:
    if isinstance(value, dict):
        return dt.datetime.fromisoformat(value[_DATETIME])
    return value


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def encode(
    position: tuple[Any, str], query: str, key: bytes, timeout: int, now: float | None = None
) -> str:
    """The cursor for the page that follows `position` in `query`, valid for `timeout` s."""
    expires = int((time.time() if now is None else now) + timeout)
    value, last_id = position
    body = [_VERSION, expires, query, _plain(value), last_id]
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, payload)}"


def decode(token: str, query: str, key: bytes, now: float | None = None) -> tuple[Any, str]:
    """The position a cursor carries; 400 `invalidCursor` if it was not issued by this service
    for this query, 400 `expiredCursor` if its time is up (RFC 9865 §2.1)."""
    payload, _, mac = token.partition(".")
    if (
        not token.isascii()
        or not payload
        or not mac
        or not hmac.compare_digest(mac, _mac(key, payload))
    ):
        raise invalid_cursor(
            "The cursor is not one this service issued (or it was altered). Send an empty "
            "cursor for the first page, then each response's nextCursor."
        )
    try:
        version, expires, digest, value, last_id = json.loads(_unb64(payload))
        position = (_restore(value), last_id)
    except (ValueError, TypeError, KeyError, binascii.Error):  # pragma: no cover - signed by us
        raise invalid_cursor("The cursor cannot be read.") from None
    if version != _VERSION or digest != query or not isinstance(last_id, str):
        raise invalid_cursor(
            "The cursor belongs to a different query: keep filter, sortBy and sortOrder "
            "identical while paging (RFC 9865 §2)."
        )
    if (time.time() if now is None else now) > expires:
        raise ScimError(
            "The cursor has expired; start again with an empty cursor.",
            status=400,
            scim_type="expiredCursor",
        )
    return position
