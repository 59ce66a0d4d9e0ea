"""`POST /oauth/token` (RFC 6749 §4.4, the client credentials grant), the key set at
`/.well-known/jwks.json` (RFC 7517) and the server's metadata at
`/.well-known/oauth-authorization-server` (RFC 8414).

Errors are OAuth's, not SCIM's (RFC 6749 §5.2): `{"error", "error_description"}`, 400, or 401
with `WWW-Authenticate` for `invalid_client`; `temporarily_unavailable` with 429 when the
client must wait, 503 when the server cannot sign. Failed client authentications count against
the client's address like bad SCIM tokens (the same brake), and token requests against the
client like SCIM requests against a token.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_plus

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from app import auth, connections, observability, ratelimit, runtime
from app.errors import NotFound
from app.oauth.access_tokens import SCOPES, granted_scope
from app.oauth.keys import SigningUnavailable
from app.store import oauth_clients
from app.store.models import utcnow
from app.store.oauth_clients import ClientState
from app.store.outcomes import OAUTH_PREFIX

bp = Blueprint("oauth", __name__)
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, **headers: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description
        self.status, self.headers = status, headers


@bp.errorhandler(OAuthError)
def _oauth_error(exc: OAuthError) -> Response:
    response = jsonify(error=exc.error, error_description=exc.description)
    response.status_code = exc.status
    response.headers.update(exc.headers)
    return _no_store(response)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _credentials() -> tuple[str, str, bool]:
    """(client_id, client_secret, by HTTP Basic) from exactly one of the two ways."""
    header = request.headers.get("Authorization", "")
    in_form = "client_secret" in request.form
    if header:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or in_form:
            raise OAuthError("invalid_request", "Authenticate the client one way only.")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _invalid_client(basic=True) from None
        identifier, sep, secret = decoded.partition(":")
        if not sep:
            raise _invalid_client(basic=True)
        # RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
        return unquote_plus(identifier), unquote_plus(secret), True
    if not in_form:
        raise _invalid_client(basic=True)
    return request.form.get("client_id", ""), request.form["client_secret"], False


def _invalid_client(basic: bool) -> OAuthError:
    scheme = 'Basic realm="lms-scim"' if basic else 'Bearer realm="lms-scim"'
    return OAuthError(
        "invalid_client", "Client authentication failed.", 401, **{"WWW-Authenticate": scheme}
    )


def _authenticated(limits: ratelimit.RateLimits) -> ClientState:
    identifier, secret, basic = _credentials()
    address = ratelimit.client_address()
    if not limits.allows_credentials(address):
        raise OAuthError(
            "temporarily_unavailable",
            "Too many failed client authentications from this address; retry later.",
            429,
            **{"Retry-After": str(limits.credentials_retry_after(address))},
        )
    client = oauth_clients.by_secret(identifier, auth.hash_token(secret), utcnow())
    if client is None or client.revoked:
        limits.failed_credentials(address)
        # A known client's connection page shows the refusal (a wrong or expired secret is
        # the usual reason an IdP's sync stops); the answer stays the same for every client.
        named = client
        if named is None and identifier.isprintable() and len(identifier) <= 64:
            named = oauth_clients.by_identifier(identifier)
        if named is not None:
            connections.attribute(named.tenant_id, f"{OAUTH_PREFIX}{named.name}")
        raise _invalid_client(basic)
    connections.attribute(client.tenant_id, f"{OAUTH_PREFIX}{client.name}")
    try:
        observability.log_tenant(runtime.current().tenant(client.tenant_id).slug)
    except NotFound:  # deleted since (its clients with it)
        raise _invalid_client(basic) from None
    if not limits.allows_client(client.identifier):
        raise OAuthError(
            "temporarily_unavailable",
            "Too many token requests; retry later.",
            429,
            **{"Retry-After": str(limits.client_retry_after(client.identifier))},
        )
    return client


@bp.post(TOKEN_PATH)
def token() -> Response:
    if request.mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send application/x-www-form-urlencoded.")
    grant_type = request.form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required.")
    client = _authenticated(ratelimit.of(current_app))
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "Only client_credentials is supported.")
    scope = granted_scope(client, request.form.get("scope"))
    if scope is None:
        raise OAuthError("invalid_scope", f"This client may ask for: {_allowed(client)}.")
    try:
        access_token, lifetime = runtime.current().access_tokens.mint(
            client, scope, runtime.current().access_tokens.issuer()
        )
    except SigningUnavailable:  # the operator's to fix: logged once by the key ring
        raise OAuthError(
            "temporarily_unavailable",
            "The server cannot sign access tokens: its signing key cannot be unsealed with "
            "SECRET_KEY. The operator must set the SECRET_KEY (or SECRET_KEY_PREVIOUS) that "
            "sealed it, or run `lms-scim keys rotate`.",
            503,
        ) from None
    body = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": " ".join(scope),
    }
    return _no_store(jsonify(body))


def _allowed(client: ClientState) -> str:
    return " ".join(granted_scope(client, None) or [])


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    response = jsonify(runtime.current().access_tokens.ring.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    iss = runtime.current().access_tokens.issuer()
    body: dict[str, Any] = {
        "issuer": iss,
        "token_endpoint": iss + TOKEN_PATH,
        "jwks_uri": iss + "/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": list(SCOPES),
        "response_types_supported": [],
    }
    return jsonify(body)


def register(app: Flask) -> None:
    app.register_blueprint(bp)
