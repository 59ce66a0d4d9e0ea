"""Bearer tokens and operator sign-in.

Tokens: issued once, stored as SHA-256 hashes, compared in constant time. They carry the
`lmsscim_` prefix so secret scanners can recognise a leaked one.

Caching and revocation: a verified token is remembered in-process for `TOKEN_CACHE_SECONDS`
(default 5 s), so the hot path costs no query. Expiry — including the end of a rotation's grace —
is checked on every request against the cached expiry time, so it is exact. A revocation clears
the revoking process's cache at once; other processes (the gunicorn workers, when the CLI
revokes) refuse the token within `TOKEN_CACHE_SECONDS`. Set it to 0 for a query per request.

Last use is kept in an in-process map and written at most once a minute per token (the first use
in a process is written at once), so `tokens list` is accurate to about a minute without a
database write per request.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import peewee

from app import passwords
from app.errors import Unauthorized
from app.store import audit, operators, tokens
from app.store.models import Operator, utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "lmsscim_"  # noqa: S105 - a public prefix, not a secret
CACHE_SECONDS = 5.0
LAST_USED_FLUSH_SECONDS = 60.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and whether it may write."""

    token_name: str
    read_only: bool
    token_id: int | None = None


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _new_secret() -> tuple[str, str, str]:
    """A secret, the prefix shown in listings, and the hash that is stored."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[: len(TOKEN_PREFIX) + 6], hash_token(secret)


def _after(delta: dt.timedelta | None) -> dt.datetime | None:
    return utcnow() + delta if delta is not None else None


def issue(
    name: str,
    *,
    read_only: bool = False,
    expires_in: dt.timedelta | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> str:
    """Create a token and return its secret; only the hash is kept."""
    secret, prefix, digest = _new_secret()
    tokens.create(
        name, prefix, digest, read_only=read_only, expires_at=_after(expires_in), actor=actor
    )
    return secret


def rotate(
    name: str,
    *,
    grace: dt.timedelta,
    expires_in: dt.timedelta | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> str:
    """A new secret for `name`; the old one keeps working for `grace`, so an IdP can switch."""
    secret, prefix, digest = _new_secret()
    tokens.rotate(
        name,
        prefix,
        digest,
        grace_until=utcnow() + grace,
        expires_at=_after(expires_in),
        actor=actor,
    )
    clear_cache()
    return secret


def revoke(name: str, actor: audit.Actor = audit.SYSTEM) -> int:
    """Refuse the named token(s) now in this process, within the cache time in others."""
    count = tokens.revoke(name, actor)
    clear_cache()
    return count


# digest → (trusted until, monotonic; token expiry; principal)
_cache: dict[str, tuple[float, dt.datetime | None, Principal]] = {}
_cache_lock = threading.Lock()
_used: dict[int, dt.datetime] = {}  # token id → last use not yet written
_flushed: dict[int, float] = {}  # token id → when its last use was last written (monotonic)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _used.clear()
        _flushed.clear()


def _note_use(token_id: int, now: dt.datetime) -> None:
    """Remember a use; write it if this token's last write is a minute old (or never happened)."""
    due: dict[int, dt.datetime] = {}
    tick = time.monotonic()
    with _cache_lock:
        _used[token_id] = now
        last = _flushed.get(token_id)
        if last is None or tick - last >= LAST_USED_FLUSH_SECONDS:
            _flushed[token_id] = tick
            due[token_id] = _used.pop(token_id)
    if due:
        try:
            tokens.touch(due)
        except peewee.DatabaseError:  # never fail a request over bookkeeping
            log.warning("could not record token use", exc_info=True)


@dataclass
class Settings:
    """Set by `create_app` from `TOKEN_CACHE_SECONDS`."""

    cache_seconds: float = CACHE_SECONDS


settings = Settings()


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized()
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 256:
        raise Unauthorized()
    return secret


def verify(authorization: str | None) -> Principal:
    """The principal for an `Authorization: Bearer …` header, or 401."""
    digest = hash_token(_bearer(authorization))
    now = utcnow()
    tick = time.monotonic()
    with _cache_lock:
        cached = _cache.get(digest)
    if cached and cached[0] > tick:
        _, expires_at, principal = cached
        if expires_at is not None and expires_at <= now:
            raise Unauthorized("The token has expired or was revoked.")
    else:
        row = tokens.find_by_hash(digest)
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise Unauthorized()
        if tokens.state(row, now) in ("revoked", "expired"):
            raise Unauthorized("The token has expired or was revoked.")
        principal = Principal(row.name, row.read_only, row.id)
        seconds = settings.cache_seconds
        if seconds > 0:
            with _cache_lock:
                if len(_cache) > 10_000:
                    _cache.clear()
                _cache[digest] = (tick + seconds, row.expires_at, principal)
    if principal.token_id is not None:
        _note_use(principal.token_id, now)
    return principal


def recently_verified(authorization: str | None) -> bool:
    """Whether this process verified this bearer token within the cache time, from memory
    alone: no database, and nothing a guesser could learn from (a guess is never cached)."""
    try:
        digest = hash_token(_bearer(authorization))
    except Unauthorized:
        return False
    with _cache_lock:
        cached = _cache.get(digest)
    return cached is not None and cached[0] > time.monotonic()


# -- operators -----------------------------------------------------------------------------


@functools.cache
def _dummy_hash() -> str:
    """A real hash to check unknown names against, so they cost the same time as known ones."""
    return passwords.hash_password(secrets.token_urlsafe(16))


def create_operator(name: str, password: str) -> Operator:
    return operators.create(name, passwords.hash_password(password))


def set_operator_password(name: str, password: str) -> None:
    operators.set_password(name, passwords.hash_password(password))


class SignInRefused(Exception):
    """Wrong name or password, or too many recent failures (the message says which)."""


def sign_in(name: str, password: str) -> Operator:
    """The operator for these credentials. Failures back off exponentially per operator
    (`operators.BACKOFF`), on top of argon2id's own cost, so guessing is slow everywhere."""
    operator = operators.find(name)
    if operator is None:
        passwords.verify_password(_dummy_hash(), password)
        raise SignInRefused("Wrong name or password.")
    if operator.locked_until is not None and operator.locked_until > utcnow():
        raise SignInRefused("Too many failed attempts; try again in a few minutes.")
    if not passwords.verify_password(operator.password_hash, password):
        operators.record_failure(operator.id)
        raise SignInRefused("Wrong name or password.")
    operators.record_success(operator.id)
    return operator
