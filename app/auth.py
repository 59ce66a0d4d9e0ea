"""Bearer tokens: issued once, stored as SHA-256 hashes, compared in constant time.

Tokens carry the `lmsscim_` prefix so secret scanners can recognise a leaked one. A verified
token is remembered in-process for a few seconds, so the hot path costs no query; revocation
takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from app.errors import Unauthorized
from app.store import tokens
from app.store.models import utcnow

TOKEN_PREFIX = "lmsscim_"  # noqa: S105 - a public prefix, not a secret
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and whether it may write."""

    token_name: str
    read_only: bool


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue(name: str, *, read_only: bool = False) -> str:
    """Create a token and return its secret; only the hash is kept."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tokens.create(name, secret[: len(TOKEN_PREFIX) + 6], hash_token(secret), read_only=read_only)
    return secret


_cache: dict[str, tuple[float, Principal]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def verify(authorization: str | None) -> Principal:
    """The principal for an `Authorization: Bearer …` header, or 401."""
    if not authorization:
        raise Unauthorized()
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 256:
        raise Unauthorized()
    digest = hash_token(secret)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(digest)
    if cached and cached[0] > now:
        return cached[1]
    row = tokens.find_by_hash(digest)
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthorized()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        raise Unauthorized("The token has expired or was revoked.")
    principal = Principal(row.name, row.read_only)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (now + CACHE_SECONDS, principal)
    return principal
