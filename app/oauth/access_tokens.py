"""Access tokens: JWTs in the RFC 9068 profile, minted for a client and verified on SCIM
requests without a database query (the signature with a key the process holds, the claims, and
the client's revocation state from the same short cache as static tokens)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from flask import request

from app.errors import Unauthorized
from app.oauth.keys import ALGORITHM, KeyRing
from app.store.oauth_clients import ClientState

READ, WRITE = "scim.read", "scim.write"
SCOPES = (READ, WRITE)
TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 media type, not a secret
LEEWAY_SECONDS = 30
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "client_id", "scope", "tenant_id"]


class InvalidToken(Unauthorized):
    """RFC 6750 §3: a bearer token that is malformed, expired, revoked or not for us."""

    def __init__(self, detail: str = "The access token is invalid or has expired.") -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = 'Bearer realm="lms-scim", error="invalid_token"'

    @classmethod
    def expired(cls) -> InvalidToken:
        """An expired token: the same answer whether it is verified now or was cached."""
        return cls("The access token has expired.")


def issuer(configured_base: str | None) -> str:
    """This deployment's issuer: the origin of `SCIM_BASE_URL` when set (a proxy may rename
    hosts and schemes), else of the request. Access tokens are for its SCIM base URL."""
    from app.scim import SCIM_PREFIX  # the blueprint imports the runtime, which imports us

    if configured_base:
        base = configured_base.rstrip("/")
        return base[: -len(SCIM_PREFIX)] if base.endswith(SCIM_PREFIX) else base
    return request.url_root.rstrip("/")


def audience(iss: str) -> str:
    from app.scim import SCIM_PREFIX

    return iss + SCIM_PREFIX


def looks_like_jwt(token: str) -> bool:
    """A compact JWS (header.payload.signature); static tokens never contain a dot."""
    return token.count(".") == 2


def decode(
    token: str, key: Any, algorithm: str, aud: str, iss: str, required: list[str]
) -> dict[str, Any]:
    """The claims of a token signed with `key` by `algorithm` (that one only), for `aud` from
    `iss`, with `required` present and `exp`/`nbf` within LEEWAY_SECONDS; InvalidToken else."""
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=aud,
            issuer=iss,
            leeway=LEEWAY_SECONDS,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken.expired() from None
    except jwt.PyJWTError:
        raise InvalidToken() from None


@dataclass
class AccessTokens:
    """One per app (`app.runtime`): the key ring and the clients' cached state."""

    ring: KeyRing
    client_state: Callable[[str], ClientState | None]  # cached by the runtime
    configured_base: str | None = None  # SCIM_BASE_URL

    def issuer(self) -> str:
        return issuer(self.configured_base)

    def mint(self, client: ClientState, scope: list[str], iss: str) -> tuple[str, int]:
        """A signed access token for `client` and its lifetime in seconds."""
        signer = self.ring.signer()
        now = int(time.time())
        claims = {
            "iss": iss,
            "aud": audience(iss),
            "sub": client.identifier,
            "client_id": client.identifier,
            "iat": now,
            "exp": now + client.token_lifetime,
            "jti": secrets.token_urlsafe(16),
            "scope": " ".join(scope),
            "tenant_id": client.tenant_id,
        }
        headers = {"typ": TOKEN_TYPE, "kid": signer.kid}
        return jwt.encode(claims, signer.key, ALGORITHM, headers), client.token_lifetime

    def verify(self, token: str, iss: str | None = None) -> tuple[ClientState, dict[str, Any]]:
        """The client a valid access token was issued to, and its claims; InvalidToken for
        anything else (a wrong `typ`, `alg` or `kid`, a bad signature, an expired token, another
        issuer or audience, a revoked client, a tenant that is not the client's)."""
        iss = iss or self.issuer()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken() from None
        if str(header.get("typ", "")).lower() not in (TOKEN_TYPE, f"application/{TOKEN_TYPE}"):
            raise InvalidToken()
        key = self.ring.public_key(str(header.get("kid", "")))
        if key is None or header.get("alg") != ALGORITHM:
            raise InvalidToken()
        claims = decode(token, key, ALGORITHM, audience(iss), iss, _REQUIRED)
        client = self.client_state(str(claims["client_id"]))
        if client is None or client.revoked or claims["tenant_id"] != client.tenant_id:
            raise InvalidToken("The access token's client is revoked or unknown.")
        return client, claims


def granted_scope(client: ClientState, requested: str | None) -> list[str] | None:
    """The scopes a token request gets: the requested ones (RFC 6749 §3.3), or every scope the
    client may have; None when it asks for one it may not have (`invalid_scope`)."""
    allowed = [READ] if client.read_only else [READ, WRITE]
    if requested is None or not requested.strip():
        return allowed
    wanted = list(dict.fromkeys(requested.split()))
    return wanted if all(scope in allowed for scope in wanted) else None
