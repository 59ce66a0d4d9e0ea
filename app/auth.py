"""Bearer API tokens for identity providers (RFC 7644 §2; operators sign in with
`app.operator_signin` instead).

Tokens: issued once, stored as SHA-256 hashes, compared in constant time. They carry the
`lmsscim_` prefix so secret scanners can recognise a leaked one.

Caching and revocation: a verified token is remembered by the app's `TokenCache` while the
cache generation stands still (`app.freshness`), which a process asks the database once per
`TOKEN_CACHE_SECONDS` (default 5 s), so the hot path costs no query. Expiry — including the end
of a rotation's grace — is checked on every request against the cached expiry time, so it is
exact (a JWT's is its `exp` plus the leeway its verification allowed, and it is refused as
an expired JWT is, `invalid_token`). A revocation clears the revoking app's cache at once;
other processes (the gunicorn workers, when the CLI revokes, or a SQL console) refuse the token
within `TOKEN_CACHE_SECONDS`. Set it to 0 for a query per request.

Last use is kept in the cache and written at most once a minute per process, every token's
last use in one transaction (the first use in a process is written at once), so `tokens list` is
accurate to about a minute without a database write per request — nor one per token: a process
serving a thousand tenants' tokens writes as often as one serving a single token (once a minute
per token was a commit on most requests of the first minute, ~3 ms each on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import peewee

from app.errors import Unauthorized
from app.freshness import MAX_ENTRIES, Freshness
from app.oauth.access_tokens import (
    LEEWAY_SECONDS,
    WRITE,
    AccessTokens,
    InvalidToken,
    looks_like_jwt,
)
from app.oauth.entra import EntraTokens, directory_of
from app.store import audit, tenancy, tokens
from app.store.models import utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "lmsscim_"  # noqa: S105 - a public prefix, not a secret
LAST_USED_FLUSH_SECONDS = 60.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, whether it may write, and the tenant it belongs to
    (every SCIM request works for exactly that tenant). `token_id` is a static token's row;
    None for a JWT (an OAuth access token or an Entra-issued one)."""

    token_name: str
    read_only: bool
    token_id: int | None = None
    tenant_id: int = tenancy.DEFAULT_TENANT


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> tuple[str, str, str]:
    """A 256-bit secret (a static token, or an OAuth client's secret), the prefix shown in
    listings, and the hash that is stored."""
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
    secret, prefix, digest = new_secret()
    tokens.create(
        name, prefix, digest, read_only=read_only, expires_at=_after(expires_in), actor=actor
    )
    return secret


def rotate(
    name: str,
    cache: TokenCache,
    *,
    grace: dt.timedelta,
    expires_in: dt.timedelta | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> str:
    """A new secret for `name`; the old one keeps working for `grace`, so an IdP can switch."""
    secret, prefix, digest = new_secret()
    tokens.rotate(
        name,
        prefix,
        digest,
        grace_until=utcnow() + grace,
        expires_at=_after(expires_in),
        actor=actor,
    )
    cache.clear()
    return secret


def revoke(name: str, cache: TokenCache, actor: audit.Actor = audit.SYSTEM) -> int:
    """Refuse the named token(s) now in this app, within the cache time in other processes."""
    count = tokens.revoke(name, actor)
    cache.clear()
    return count


class TokenCache:
    """Tokens one app verified recently, and their last uses not yet written (one per app,
    `app.runtime`). A verified token stays trusted while the cache generation stands still
    (`app.freshness`: asked once per TOKEN_CACHE_SECONDS), so a thousand tenants' tokens cost
    one query per interval, not one each."""

    def __init__(self, freshness: Freshness) -> None:
        self.freshness = freshness
        self._lock = threading.Lock()
        # digest → (cache generation it was verified under; token expiry; principal)
        self._verified: dict[str, tuple[int, dt.datetime | None, Principal]] = {}
        self._used: dict[int, dt.datetime] = {}  # token id → last use not yet written
        self._flushed: float | None = None  # when this process last wrote uses (monotonic)

    def clear(self) -> None:
        with self._lock:
            self._verified.clear()
            self._used.clear()
            self._flushed = None

    def generation(self) -> int | None:
        """The generation to verify under: read it before looking a token up, so that a change
        made during the look-up is seen at the next check."""
        return self.freshness.generation()

    def get(
        self, digest: str, generation: int | None
    ) -> tuple[dt.datetime | None, Principal] | None:
        """The cached (expiry, principal) of a token verified under `generation`, else None."""
        cached = self._verified.get(digest)  # one dict look-up is atomic
        if cached is None or generation is None or cached[0] != generation:
            return None
        return cached[1], cached[2]

    def put(
        self,
        digest: str,
        expires_at: dt.datetime | None,
        principal: Principal,
        generation: int | None,
    ) -> None:
        if generation is None:
            return
        with self._lock:
            if len(self._verified) >= MAX_ENTRIES:
                self._verified.clear()
            self._verified[digest] = (generation, expires_at, principal)

    def note_use(self, token_id: int, now: dt.datetime) -> None:
        """Remember a use; write every remembered one if this process last wrote a minute ago
        (or never)."""
        tick = time.monotonic()
        with self._lock:
            self._used[token_id] = now
            if self._flushed is not None and tick - self._flushed < LAST_USED_FLUSH_SECONDS:
                return
            self._flushed = tick
            due, self._used = self._used, {}
        try:
            tokens.touch(due)
        except peewee.DatabaseError:  # never fail a request over bookkeeping
            log.warning("could not record token use", exc_info=True)


class TokenRefused(Unauthorized):
    """A token we know that no longer works (expired, or revoked): answered like any 401, and
    counted for its name on the `/admin` connection pages (`app.connections`), since an
    expired token is a common reason an IdP's sync stops."""

    def __init__(self, tenant_id: int, name: str) -> None:
        super().__init__("The token has expired or was revoked.")
        self.credential = (tenant_id, name)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized()
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    # Room for a JWT access token (`app.oauth`); a static token is 51 characters.
    if scheme.lower() != "bearer" or not secret or len(secret) > 4096:
        raise Unauthorized()
    return secret


def verify(
    authorization: str | None,
    cache: TokenCache,
    access: AccessTokens | None = None,
    entra: EntraTokens | None = None,
) -> Principal:
    """The principal for an `Authorization: Bearer …` header, or 401: a static token, or, when
    `access` is given, a JWT verified without a query — one Entra ID signed when its `iss` is
    an Entra directory's and `entra` is given, else one of our OAuth access tokens. Any of them
    is remembered by `cache` once verified, so the next request costs a hash and a look-up."""
    secret = _bearer(authorization)
    digest = hash_token(secret)
    now = utcnow()
    generation = cache.generation()
    cached = cache.get(digest, generation)
    if cached is not None:
        expires_at, principal = cached
        if expires_at is not None and expires_at <= now:
            if principal.token_id is None:  # a JWT: answered as a fresh verification would be
                raise InvalidToken.expired()
            raise TokenRefused(principal.tenant_id, principal.token_name)
    elif access is not None and looks_like_jwt(secret):
        directory = directory_of(secret) if entra is not None else None
        if entra is not None and directory is not None:
            principal, expires_at = _entra_token(secret, directory, entra)
        else:
            principal, expires_at = _access_token(secret, access)
        cache.put(digest, expires_at, principal, generation)
    else:
        row = tokens.find_by_hash(digest)
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise Unauthorized()
        if tokens.state(row, now) in ("revoked", "expired"):
            raise TokenRefused(row.tenant_id, row.name)
        principal = Principal(row.name, row.read_only, row.id, row.tenant_id)
        cache.put(digest, row.expires_at, principal, generation)
    if principal.token_id is not None:
        cache.note_use(principal.token_id, now)
    return principal


def _expiry(claims: dict[str, Any]) -> dt.datetime:
    """When a verified JWT stops being accepted: `exp` plus the leeway its verification allowed,
    so the cached token expires when a fresh verification would refuse it (`exp` read as pyjwt
    reads it, `int()`: a NumericDate may be a float)."""
    exp = int(claims["exp"]) + LEEWAY_SECONDS
    return dt.datetime.fromtimestamp(exp, dt.UTC).replace(tzinfo=None)


def _access_token(secret: str, access: AccessTokens) -> tuple[Principal, dt.datetime]:
    """The principal of a verified OAuth access token, and when the token expires."""
    client, claims = access.verify(secret)
    read_only = WRITE not in str(claims["scope"]).split()
    return Principal(f"oauth:{client.name}", read_only, None, client.tenant_id), _expiry(claims)


def _entra_token(secret: str, directory: str, entra: EntraTokens) -> tuple[Principal, dt.datetime]:
    """The principal of a token Entra ID signed for the tenant that configured its directory:
    read and write (Entra's provisioning writes), recorded as `entra:<directory id>`."""
    tenant_id, claims = entra.verify(secret, directory)
    return Principal(f"entra:{directory}", False, None, tenant_id), _expiry(claims)
