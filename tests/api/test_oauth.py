"""OAuth 2.0 for SCIM clients: `lms-scim clients`, `POST /oauth/token` (RFC 6749 §4.4, errors
as §5.2), RFC 9068 access tokens on SCIM requests, the key set and the metadata, and every
forged or misdirected token refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from app import auth, runtime
from app.oauth.access_tokens import LEEWAY_SECONDS
from app.secretbox import SecretBox, SecretUnreadable
from app.store import tenancy
from app.store.models import AuditEvent, OAuthClientSecret, SigningKey
from tests.helpers import (
    Scim,
    after_cached_expiry,
    app_with,
    assert_error,
    cached_path_clock,
    create_user,
    invoke,
    run,
    user_body,
)

TOKEN_URL = "/oauth/token"
ISSUER = "http://localhost"
AUDIENCE = ISSUER + "/scim/v2"


def _client(app: Flask, name: str = "entra", *extra: str) -> dict[str, str]:
    out = run(app, "clients", "create", name, *extra).stdout.splitlines()
    return dict(line.split("=", 1) for line in out)


def _basic(identifier: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{identifier}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def _token_request(client: FlaskClient, creds: dict[str, str], **form: str) -> Any:
    return client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", **form},
        headers=_basic(creds["client_id"], creds["client_secret"]),
    )


def _access_token(client: FlaskClient, creds: dict[str, str], **form: str) -> str:
    response = _token_request(client, creds, **form)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def _oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    return body


# -- issuing ------------------------------------------------------------------------------------


def test_a_client_gets_a_short_lived_signed_access_token_and_provisions_with_it(
    app: Flask, client: FlaskClient
) -> None:
    creds = _client(app, "entra", "--token-lifetime", "30m")
    assert creds["client_id"].startswith("lmsscim-client-")
    assert creds["token_endpoint"].endswith("/oauth/token")
    response = _token_request(client, creds)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == (
        "Bearer",
        1800,
        "scim.read scim.write",
    )
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert (header["typ"], header["alg"]) == ("at+jwt", "ES256")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == claims["client_id"] == creds["client_id"]
    assert claims["exp"] - claims["iat"] == 1800
    assert claims["jti"]
    assert claims["tenant_id"] == tenancy.DEFAULT_TENANT

    scim = Scim(client, token)
    created = create_user(scim, "ada@example.com")
    assert scim.get(f"/Users/{created['id']}").status_code == 200
    with app.app_context():
        actors = {e.token_name for e in AuditEvent.select() if e.resource_type == "User"}
    assert actors == {"oauth:entra"}
    assert creds["client_secret"] not in json.dumps([str(e.changes) for e in AuditEvent.select()])


def test_client_authentication_by_form_parameters_too(app: Flask, client: FlaskClient) -> None:
    creds = _client(app)
    response = client.post(
        TOKEN_URL,
        data={
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        },
    )
    assert response.status_code == 200
    assert response.get_json()["access_token"].count(".") == 2


@pytest.mark.parametrize(
    ("how", "status", "error"),
    [
        ("no client authentication", 401, "invalid_client"),
        ("wrong secret", 401, "invalid_client"),
        ("unknown client", 401, "invalid_client"),
        ("both ways at once", 400, "invalid_request"),
        ("no grant_type", 400, "invalid_request"),
        ("password grant", 400, "unsupported_grant_type"),
        ("JSON body", 400, "invalid_request"),
        ("unknown scope", 400, "invalid_scope"),
    ],
)
def test_token_request_errors_are_rfc_6749s(
    app: Flask, client: FlaskClient, how: str, status: int, error: str
) -> None:
    creds = _client(app)
    good = _basic(creds["client_id"], creds["client_secret"])
    form = {"grant_type": "client_credentials"}
    requests: dict[str, Any] = {
        "no client authentication": {"data": form},
        "wrong secret": {"data": form, "headers": _basic(creds["client_id"], "lmsscim_nope")},
        "unknown client": {"data": form, "headers": _basic("someone", creds["client_secret"])},
        "both ways at once": {
            "data": {**form, "client_secret": creds["client_secret"]},
            "headers": good,
        },
        "no grant_type": {"data": {}, "headers": good},
        "password grant": {"data": {"grant_type": "password"}, "headers": good},
        "JSON body": {"json": form, "headers": good},
        "unknown scope": {"data": {**form, "scope": "scim.admin"}, "headers": good},
    }
    response = client.post(TOKEN_URL, **requests[how])
    _oauth_error(response, status, error)
    if error == "invalid_client":
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_read_only_client_never_gets_scim_write(app: Flask, client: FlaskClient) -> None:
    creds = _client(app, "auditor", "--read-only")
    _oauth_error(_token_request(client, creds, scope="scim.write"), 400, "invalid_scope")
    body = _token_request(client, creds).get_json()
    assert body["scope"] == "scim.read"
    scim = Scim(client, body["access_token"])
    assert scim.get("/Users").status_code == 200
    assert_error(scim.post("/Users", user_body("x@example.com")), 403)


def test_a_token_without_scim_write_may_read_but_not_write(app: Flask, client: FlaskClient) -> None:
    creds = _client(app)
    scim = Scim(client, _access_token(client, creds, scope="scim.read"))
    assert scim.get("/Users").status_code == 200
    assert_error(scim.post("/Users", user_body("x@example.com")), 403)


def test_failed_client_authentications_brake_the_address(app: Flask, client: FlaskClient) -> None:
    creds = _client(app)
    wrong = {**creds, "client_secret": "lmsscim_wrong"}
    statuses = [_token_request(client, wrong).status_code for _ in range(31)]
    assert statuses[:30] == [401] * 30
    braked = _token_request(client, creds)
    _oauth_error(braked, 429, "temporarily_unavailable")
    assert 1 <= int(braked.headers["Retry-After"]) <= 60  # the rest of BAD_TOKEN_LIMIT's minute


def test_token_requests_are_limited_per_client(app: Flask) -> None:
    limited = app_with(app, rate_limit_per_token="3/hour")
    client = limited.test_client()
    busy, other = _client(limited, "busy"), _client(limited, "other")
    assert [_token_request(client, busy).status_code for _ in range(3)] == [200] * 3
    refused = _token_request(client, busy)
    _oauth_error(refused, 429, "temporarily_unavailable")
    assert "access_token" not in refused.get_json()
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600  # the rest of the client's hour
    assert _token_request(client, other).status_code == 200  # same address, another client


# -- rotation and revocation ---------------------------------------------------------------------


def test_rotation_keeps_both_secrets_during_the_grace_then_only_the_new(
    app: Flask, client: FlaskClient
) -> None:
    old = _client(app)
    out = run(app, "clients", "rotate", "entra", "--grace", "1h").stdout.splitlines()
    new = {**old, **dict(line.split("=", 1) for line in out)}
    assert new["client_secret"] != old["client_secret"]
    assert _token_request(client, old).status_code == 200
    assert _token_request(client, new).status_code == 200
    run(app, "clients", "rotate", "entra", "--grace", "0s")
    _oauth_error(_token_request(client, old), 401, "invalid_client")


def test_a_revoked_clients_tokens_are_refused(app: Flask, client: FlaskClient) -> None:
    creds = _client(app)
    scim = Scim(client, _access_token(client, creds))
    assert scim.get("/Users").status_code == 200
    run(app, "clients", "revoke", "entra")
    refused = scim.get("/Users")
    assert_error(refused, 401)
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    _oauth_error(_token_request(client, creds), 401, "invalid_client")
    listed = json.loads(run(app, "clients", "list", "--format", "json").stdout)
    assert [(c["name"], c["state"]) for c in listed] == [("entra", "revoked")]


def test_client_changes_are_audited_without_their_secrets(app: Flask) -> None:
    created = _client(app)
    out = run(app, "clients", "rotate", "entra", "--grace", "1h").stdout.splitlines()
    rotated = dict(line.split("=", 1) for line in out)
    run(app, "clients", "revoke", "entra")
    with app.app_context(), tenancy.everywhere():
        rows = list(AuditEvent.select().order_by(AuditEvent.id))
        stored = [row.secret_hash for row in OAuthClientSecret.select()]
    audited = [(e.resource_type, e.operation, e.token_name) for e in rows]
    assert audited == [
        ("OAuthClient", "client_create", "cli"),
        ("OAuthClient", "client_rotate", "cli"),
        ("OAuthClient", "client_revoke", "cli"),
    ]
    assert len({e.resource_id for e in rows}) == 1
    assert created["client_id"] in str(rows[0].changes)
    issued = [created["client_secret"], rotated["client_secret"]]
    forbidden = [*issued, *(auth.hash_token(s) for s in issued), *stored]
    assert len(stored) == 2
    trail = json.dumps([e.__data__ for e in rows], default=str)
    listed = "\n".join(
        run(app, "audit", *fmt).stdout for fmt in ([], ["--format", "json"], ["--format", "csv"])
    )
    assert listed.count("client_rotate") == 3
    for value in forbidden:
        assert value not in trail
        assert value not in listed


# -- keys ---------------------------------------------------------------------------------------


def test_key_rotation_keeps_earlier_tokens_valid_and_publishes_both_keys(
    app: Flask, client: FlaskClient
) -> None:
    creds = _client(app)
    before = _access_token(client, creds)
    run(app, "keys", "rotate")
    runtime.of(app).access_tokens.ring.reload()
    after = _access_token(client, creds)
    kids = [jwt.get_unverified_header(t)["kid"] for t in (before, after)]
    assert kids[0] != kids[1]
    published = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert {k["kid"] for k in published} == set(kids)
    assert all(k["kty"] == "EC" and "d" not in k for k in published)
    for token in (before, after):
        assert Scim(client, token).get("/Users").status_code == 200


def test_the_signing_keys_private_half_is_sealed_under_the_secret_key(
    app: Flask, client: FlaskClient
) -> None:
    token = _access_token(client, _client(app))
    kid = jwt.get_unverified_header(token)["kid"]
    with app.app_context():
        (row,) = SigningKey.select()
    assert row.kid == kid
    signer = runtime.of(app).access_tokens.ring.signer()
    pem = signer.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    body = "".join(pem.strip().splitlines()[1:-1])  # the base64 of the key, without armour
    scalar = signer.key.private_numbers().private_value.to_bytes(32, "big")
    assert row.private_key.startswith("v1:")
    assert "PRIVATE KEY" not in row.private_key
    assert body not in row.private_key
    for encoded in (scalar.hex(), base64.urlsafe_b64encode(scalar).rstrip(b"=").decode()):
        assert encoded not in row.private_key
    assert "d" not in json.loads(row.public_jwk)
    # Opened with SECRET_KEY it is the key that signed the token the server issued.
    context = f"signing_key:{kid}"
    opened = SecretBox(runtime.of(app).secret_key).open(row.private_key, context)
    private = serialization.load_pem_private_key(opened.encode(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    claims = jwt.decode(token, private.public_key(), ["ES256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["client_id"].startswith("lmsscim-client-")
    # Another SECRET_KEY cannot open it, and says so without the sealed value.
    with pytest.raises(SecretUnreadable, match=context) as refused:
        SecretBox("another-secret-key-entirely").open(row.private_key, context)
    assert row.private_key not in str(refused.value)


def test_a_secret_key_that_cannot_open_the_signer_stops_signing_only(
    app: Flask, client: FlaskClient, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    creds = _client(app)
    issued = _access_token(client, creds)
    with app.app_context():
        (sealed,) = SigningKey.select()
    moved = app_with(app, secret_key="a key that never sealed anything", secret_key_previous=())
    other = moved.test_client()
    # Verifying and publishing need only the public halves.
    assert Scim(other, issued).get("/Users").status_code == 200
    published = other.get("/.well-known/jwks.json")
    assert published.status_code == 200
    assert [k["kid"] for k in published.get_json()["keys"]] == [sealed.kid]
    assert Scim(other, token).get("/Users").status_code == 200
    caplog.set_level(logging.ERROR, logger="app.oauth.keys")
    # Signing needs the private half: a clear 503, the same for every request, logged once.
    for _ in range(2):
        body = _oauth_error(_token_request(other, creds), 503, "temporarily_unavailable")
        assert "SECRET_KEY" in body["error_description"]
        assert sealed.private_key not in json.dumps(body)
    documented = Scim(other, token).get("/openapi.json").get_json()["paths"][TOKEN_URL]
    assert "503" in documented["post"]["responses"]
    (logged,) = [r for r in caplog.records if r.name == "app.oauth.keys"]
    assert logged.levelno == logging.ERROR
    assert sealed.kid in logged.getMessage()
    assert sealed.private_key not in logged.getMessage()
    # `keys rotate` seals a new signer under this SECRET_KEY; the old key keeps verifying.
    run(moved, "keys", "rotate")
    runtime.of(moved).access_tokens.ring.reload()
    fresh = _access_token(other, creds)
    kids = {k["kid"] for k in other.get("/.well-known/jwks.json").get_json()["keys"]}
    assert kids == {sealed.kid, jwt.get_unverified_header(fresh)["kid"]}
    for bearer in (issued, fresh):
        assert Scim(other, bearer).get("/Users").status_code == 200
    with app.app_context():
        assert SigningKey.get_by_id(sealed.kid).private_key == sealed.private_key


def test_metadata_names_the_endpoint_the_key_set_and_what_is_supported(
    client: FlaskClient,
) -> None:
    body = client.get("/.well-known/oauth-authorization-server").get_json()
    assert body["issuer"] == ISSUER
    assert body["token_endpoint"] == ISSUER + TOKEN_URL
    assert body["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert body["grant_types_supported"] == ["client_credentials"]
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


# -- forged and misdirected tokens --------------------------------------------------------------


def _claims(creds: dict[str, str], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": creds["client_id"],
        "client_id": creds["client_id"],
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
        "scope": "scim.read scim.write",
        "tenant_id": tenancy.DEFAULT_TENANT,
    }
    claims.update(changes)
    return claims


def _forged(app: Flask, creds: dict[str, str], how: str) -> str:
    ring = runtime.of(app).access_tokens.ring
    signer = ring.signer()
    headers = {"typ": "at+jwt", "kid": signer.kid}
    if how == "alg none":
        return jwt.encode(_claims(creds), None, "none", headers)
    if how == "HS256 with the public key as secret":
        public_pem = signer.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = base64.urlsafe_b64encode(json.dumps({**headers, "alg": "HS256"}).encode()).rstrip(
            b"="
        )
        payload = base64.urlsafe_b64encode(json.dumps(_claims(creds)).encode()).rstrip(b"=")
        mac = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
        return b".".join([header, payload, base64.urlsafe_b64encode(mac).rstrip(b"=")]).decode()
    if how == "a foreign key":
        stranger = ec.generate_private_key(ec.SECP256R1())
        return jwt.encode(_claims(creds), stranger, "ES256", {**headers, "kid": "not-ours"})
    if how == "our kid, a foreign key":
        stranger = ec.generate_private_key(ec.SECP256R1())
        return jwt.encode(_claims(creds), stranger, "ES256", headers)
    changes = {
        "another audience": {"aud": "https://elsewhere.example/scim/v2"},
        "another issuer": {"iss": "https://elsewhere.example"},
        "expired": {"exp": int(time.time()) - 120, "iat": int(time.time()) - 900},
        "another tenant": {"tenant_id": 999},
        "no jti": {"jti": None},
    }[how]
    claims = {k: v for k, v in _claims(creds, **changes).items() if v is not None}
    return jwt.encode(claims, signer.key, "ES256", headers)


@pytest.mark.parametrize(
    "how",
    [
        "alg none",
        "HS256 with the public key as secret",
        "a foreign key",
        "our kid, a foreign key",
        "another audience",
        "another issuer",
        "expired",
        "another tenant",
        "no jti",
    ],
)
def test_forged_or_misdirected_tokens_are_refused(
    app: Flask, client: FlaskClient, how: str
) -> None:
    creds = _client(app)
    _access_token(client, creds)  # the ring has a signer
    response = Scim(client, _forged(app, creds, how)).get("/Users")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="lms-scim", error="invalid_token"'
    )


def test_a_token_with_the_wrong_typ_is_refused(app: Flask, client: FlaskClient) -> None:
    creds = _client(app)
    good = _access_token(client, creds)
    signer = runtime.of(app).access_tokens.ring.signer()
    claims = jwt.decode(good, options={"verify_signature": False})
    plain = jwt.encode(claims, signer.key, "ES256", {"typ": "JWT", "kid": signer.kid})
    assert_error(Scim(client, plain).get("/Users"), 401)


# -- expiry of a verified (cached) token --------------------------------------------------------


def _signed(app: Flask, creds: dict[str, str], **changes: Any) -> str:
    signer = runtime.of(app).access_tokens.ring.signer()
    headers = {"typ": "at+jwt", "kid": signer.kid}
    return jwt.encode(_claims(creds, **changes), signer.key, "ES256", headers)


def test_a_cached_token_that_expires_is_refused_as_a_fresh_expired_one(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = _client(app)
    fresh = Scim(client, _signed(app, creds, exp=int(time.time()) - 120)).get("/Users")
    assert_error(fresh, 401)
    token = _access_token(client, creds)
    scim = Scim(client, token)
    cached = after_cached_expiry(scim, token, monkeypatch)
    assert cached.status_code == fresh.status_code
    assert cached.headers["WWW-Authenticate"] == fresh.headers["WWW-Authenticate"]
    assert cached.get_json() == fresh.get_json()


def test_a_cached_token_keeps_the_leeway_of_its_first_verification(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = _client(app)
    now = int(time.time())
    late = Scim(client, _signed(app, creds, iat=now - 600, exp=now - 10))
    assert late.get("/Users").status_code == 200  # expired, within the leeway
    assert late.get("/Users").status_code == 200  # from the cache: the same leeway
    cached_path_clock(monkeypatch, now - 10 + LEEWAY_SECONDS - 1)
    assert late.get("/Users").status_code == 200
    cached_path_clock(monkeypatch, now - 10 + LEEWAY_SECONDS)
    assert_error(late.get("/Users"), 401)


def test_a_token_whose_exp_is_a_fraction_is_served_and_expires_as_pyjwt_reads_it(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = _client(app)
    now = int(time.time())
    scim = Scim(client, _signed(app, creds, exp=now + 600.75))  # RFC 7519 NumericDate
    assert scim.get("/Users").status_code == 200
    cached_path_clock(monkeypatch, now + 600 + LEEWAY_SECONDS - 1)
    assert scim.get("/Users").status_code == 200  # from the cache
    cached_path_clock(monkeypatch, now + 600 + LEEWAY_SECONDS)
    assert_error(scim.get("/Users"), 401)


def test_a_tenants_token_is_refused_at_another_tenants_url(
    app: Flask, client: FlaskClient, acme: Scim
) -> None:
    run(app, "clients", "create", "acme-entra", "--tenant", "acme")
    out = run(app, "clients", "create", "acme-okta", "--tenant", "acme").stdout.splitlines()
    creds = dict(line.split("=", 1) for line in out)
    token = _access_token(client, creds)
    theirs = Scim(client, token, base="/t/acme/scim/v2")
    create_user(theirs, "zed@acme.example")
    assert Scim(client, token).get("/Users").get_json()["totalResults"] == 1
    assert_error(Scim(client, token, base="/t/default/scim/v2").get("/Users"), 401)


def test_client_commands_refuse_what_cannot_work(app: Flask) -> None:
    _client(app)
    taken = invoke(app, "clients", "create", "entra")
    assert taken.exit_code == 1
    assert "exists" in taken.output
    short = invoke(app, "clients", "create", "quick", "--token-lifetime", "1m")
    assert short.exit_code != 0
    assert "between 5m and 24h" in short.output
    assert invoke(app, "clients", "revoke", "nobody").exit_code == 1
    assert "client_secret" not in run(app, "clients", "list").stdout


def test_a_client_secret_is_stored_only_as_its_hash(app: Flask) -> None:
    creds = _client(app)
    with app.app_context():
        from app.store.models import OAuthClientSecret

        with tenancy.everywhere():
            stored = [row.secret_hash for row in OAuthClientSecret.select()]
    assert creds["client_secret"] not in stored
    assert len(stored) == 1


def test_verifying_an_access_token_costs_no_query(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature with a key the process holds; the client's state from the short cache."""
    from playhouse.test_utils import count_queries

    creds = _client(app)
    token = _access_token(client, creds)  # the token request loaded the keys
    current = runtime.of(app)
    current.tokens.clear()
    with app.test_request_context("/scim/v2/Users"):
        with count_queries() as first:
            principal = auth.verify(f"Bearer {token}", current.tokens, current.access_tokens)
        current.tokens.clear()  # not even the verified-token cache: a fresh verification
        with count_queries() as second:
            again = auth.verify(f"Bearer {token}", current.tokens, current.access_tokens)
        with count_queries() as cached:
            assert auth.verify(f"Bearer {token}", current.tokens, current.access_tokens) == again
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        cached_path_clock(monkeypatch, exp + LEEWAY_SECONDS)
        with count_queries() as expired, pytest.raises(auth.InvalidToken):
            auth.verify(f"Bearer {token}", current.tokens, current.access_tokens)
    assert principal == again
    assert principal.token_name == "oauth:entra"
    # The cache generation and the client's state, each at most once per TOKEN_CACHE_SECONDS.
    assert first.count <= 2
    assert second.count == cached.count == expired.count == 0
