"""Access tokens that Entra ID signs itself: what its provisioning sends when the enterprise
app's "Secret Token" is left blank.

Such a token is an RS256 JWT whose `iss` is `https://sts.windows.net/<directory id>/` and whose
`aud` is the app template's id (`ENTRA_AUDIENCE`), signed by one of the keys Microsoft publishes
for the directory (`ENTRA_JWKS_URL`). The directory id in `iss` picks the tenant that configured
it (`ENTRA_TENANT_ID`; the runtime keeps that index while the cache generation stands still), and
that tenant's settings give the audience and the key set. Nothing here queries the database.

The key set is fetched with `requests` (a timeout, a size cap), kept as long as its
`Cache-Control: max-age` says (at most a day; an hour without one), and fetched again when a
token names a `kid` it lacks — at most once a minute per key set, whatever the reason, so tokens
with made-up `kid`s cannot make us hammer Microsoft. A failed fetch keeps the keys we had, is
logged and counted (`lms_scim_entra_jwks_fetch_failures_total`), and at worst turns a request
into 401: never a 500.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests
from jwt.algorithms import RSAAlgorithm

from app.config import TenantSettings
from app.freshness import MAX_ENTRIES
from app.oauth.access_tokens import InvalidToken, decode
from app.observability import ENTRA_JWKS_FAILURES

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
ISSUER_PREFIX = "https://sts.windows.net/"
# Entra writes the directory id in lower case; anything else is not an Entra issuer of ours.
_ISSUER = re.compile(r"https://sts\.windows\.net/([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})/")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)

FETCH_TIMEOUT_SECONDS = 5.0
MAX_KEY_SET_BYTES = 256 * 1024
MAX_CACHE_SECONDS = 24 * 3600
DEFAULT_CACHE_SECONDS = 3600  # a key set served without max-age
REFETCH_SECONDS = 60.0  # the least time between two fetches of one key set
_REQUIRED = ["exp", "iss", "aud"]


def issuer(directory: str) -> str:
    return f"{ISSUER_PREFIX}{directory}/"


def jwks_url(settings: TenantSettings) -> str | None:
    """Where the tenant's directory publishes its keys: `ENTRA_JWKS_URL`, else Microsoft's key
    set for the directory; None when the tenant accepts no Entra-issued tokens."""
    if settings.entra_tenant_id is None:
        return None
    return settings.entra_jwks_url or (
        f"https://login.microsoftonline.com/{settings.entra_tenant_id}/discovery/v2.0/keys"
    )


def directory_of(token: str) -> str | None:
    """The directory id of a JWT whose (unverified) `iss` is an Entra issuer, else None: the
    token is then one of ours, or nobody's, and the other paths decide."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    iss = claims.get("iss")
    match = _ISSUER.fullmatch(iss) if isinstance(iss, str) else None
    return match.group(1) if match else None


def _cache_seconds(cache_control: str | None) -> float:
    """RFC 9111 §5.2.2: `max-age`, capped at a day; `no-store`/`no-cache` keep nothing."""
    text = cache_control or ""
    if re.search(r"no-store|no-cache", text, re.IGNORECASE):
        return 0.0
    match = _MAX_AGE.search(text)
    seconds = int(match.group(1)) if match else DEFAULT_CACHE_SECONDS
    return float(min(seconds, MAX_CACHE_SECONDS))


def _parse(body: bytes) -> dict[str, Any]:
    """The usable verifying keys of a JWK Set (RFC 7517 §5) by `kid`: RSA signing keys only;
    ValueError when the document holds none."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("no `keys` array")
    keys: dict[str, Any] = {}
    for jwk in entries:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            keys[kid] = RSAAlgorithm.from_jwk(json.dumps(jwk))
        except (jwt.PyJWTError, ValueError, TypeError):
            continue  # one malformed key does not spoil the others
    if not keys:
        raise ValueError("no RSA signing key")
    return keys


@dataclass
class _KeySet:
    """One key set as this process holds it."""

    keys: dict[str, Any] = field(default_factory=dict)
    fresh_until: float = float("-inf")
    tried_at: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


class EntraKeys:
    """The key sets of the Entra directories tenants configured, by URL (one per app,
    `app.runtime`). `clock` (monotonic seconds) and `get` are there for tests."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        get: Callable[..., requests.Response] = requests.get,
    ) -> None:
        self.clock = clock
        self.get = get
        self._lock = threading.Lock()
        self._sets: dict[str, _KeySet] = {}

    def _set(self, url: str) -> _KeySet:
        held = self._sets.get(url)
        if held is None:
            with self._lock:
                if len(self._sets) >= MAX_ENTRIES:
                    self._sets.clear()
                held = self._sets.setdefault(url, _KeySet())
        return held

    def key(self, url: str, kid: str) -> Any | None:
        """The key named `kid` in the key set at `url`, fetching the set when it is stale or
        lacks `kid` (unless it was fetched, or tried, less than a minute ago)."""
        held = self._set(url)
        key = held.keys.get(kid)
        if key is not None and self.clock() < held.fresh_until:
            return key
        if self.clock() - held.tried_at >= REFETCH_SECONDS:
            with held.lock:  # one fetch at a time; the others then find its result
                if self.clock() - held.tried_at >= REFETCH_SECONDS:
                    self._fetch(url, held)
        return held.keys.get(kid)

    def _fetch(self, url: str, held: _KeySet) -> None:
        held.tried_at = self.clock()
        try:
            # No redirects: the configured https URL is the one trusted, not where it points.
            response = self.get(
                url,
                timeout=FETCH_TIMEOUT_SECONDS,
                headers={"Accept": "application/json"},
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return _failed(url, "unreachable", type(exc).__name__)
        if response.status_code != 200:
            return _failed(url, "status", f"HTTP {response.status_code}")
        if len(response.content) > MAX_KEY_SET_BYTES:
            return _failed(url, "invalid", "larger than a key set can be")
        try:
            keys = _parse(response.content)
        except ValueError as exc:
            return _failed(url, "invalid", str(exc))
        held.keys = keys
        held.fresh_until = held.tried_at + _cache_seconds(response.headers.get("Cache-Control"))
        return None


def _failed(url: str, reason: str, detail: str) -> None:
    """A fetch that brought no keys: the ones held stay in use."""
    ENTRA_JWKS_FAILURES.labels(reason).inc()
    log.warning("could not fetch the Entra ID key set %s (%s); keeping the keys held", url, detail)


@dataclass
class EntraTokens:
    """One per app (`app.runtime`): the key sets, and the runtime's cached answers to "which
    tenants configured this directory" and "what are this tenant's settings"."""

    keys: EntraKeys
    tenants_of: Callable[[str], tuple[int, ...]]
    settings: Callable[[int], TenantSettings]

    def verify(self, token: str, directory: str) -> tuple[int, dict[str, Any]]:
        """The tenant a valid Entra-issued token is for, and its claims; InvalidToken for
        anything else: a directory no tenant (or more than one) configured, another `alg`, a
        `kid` not in the directory's key set, a bad signature, another audience or issuer, an
        expired or not yet valid token."""
        tenants = self.tenants_of(directory)
        if len(tenants) != 1:  # two tenants claiming one directory: neither gets its tokens
            raise InvalidToken()
        settings = self.settings(tenants[0])
        url = jwks_url(settings)
        if url is None or settings.entra_tenant_id != directory:
            raise InvalidToken()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken() from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
            raise InvalidToken()
        key = self.keys.key(url, kid)
        if key is None:
            raise InvalidToken()
        claims = decode(
            token, key, ALGORITHM, settings.entra_audience, issuer(directory), _REQUIRED
        )
        return tenants[0], claims
