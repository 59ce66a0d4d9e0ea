"""Tokens that Entra ID signs itself (its "Secret Token" left blank): RS256 JWTs from
`https://sts.windows.net/<directory>/` for the app template's audience, verified with the
directory's published key set — here a `responses` mock serving keys the tests generate, so
nothing reaches the network. Every refusal, the key-set cache (max-age, kid rotation at most
once a minute, failures that keep the keys), the audit actor, and two tenants' directories kept
apart."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from jwt.algorithms import RSAAlgorithm
from prometheus_client import REGISTRY

from app import auth, runtime
from app.config import ENTRA_DEFAULT_AUDIENCE, Config
from app.oauth import entra
from app.store import tenancy
from app.store.models import AuditEvent
from tests.helpers import (
    Scim,
    after_cached_expiry,
    app_with,
    assert_error,
    create_user,
    invoke,
    run,
)

DIRECTORY = "6b1c7e2a-3f4d-4e5f-9a0b-1c2d3e4f5a6b"
OTHER_DIRECTORY = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
KEYS_URL = f"https://login.microsoftonline.com/{DIRECTORY}/discovery/v2.0/keys"
OTHER_KEYS_URL = f"https://login.microsoftonline.com/{OTHER_DIRECTORY}/discovery/v2.0/keys"
INVALID_TOKEN = 'Bearer realm="lms-scim", error="invalid_token"'


class Signer:
    """An RSA key like one of Microsoft's: its `kid`, its public JWK, tokens it signs."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "x5t": self.kid}

    def token(self, directory: str = DIRECTORY, **changes: Any) -> str:
        now = int(time.time())
        claims = {
            "aud": ENTRA_DEFAULT_AUDIENCE,
            "iss": f"https://sts.windows.net/{directory}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": directory,
            "appid": "00000014-0000-0000-c000-000000000000",
        }
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, "RS256", {"kid": self.kid, "x5t": self.kid})


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("kid-one")


@pytest.fixture(scope="module")
def next_signer() -> Signer:
    return Signer("kid-two")


def _key_set(*signers: Signer) -> dict[str, Any]:
    return {"keys": [s.jwk() for s in signers]}


@pytest.fixture
def keys_endpoint() -> Iterator[responses.RequestsMock]:
    """Microsoft's key-set endpoint, mocked: tests register the answers on it."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class Ticks:
    """The key cache's monotonic clock, moved by hand instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def entra_app(app: Flask) -> Flask:
    """An app whose default tenant accepts tokens of DIRECTORY (ENTRA_TENANT_ID in the
    environment), its key cache on a hand-moved clock."""
    configured = app_with(app, entra_tenant_id=DIRECTORY)
    runtime.of(configured).entra.keys.clock = Ticks()
    return configured


def _ticks(app: Flask) -> Ticks:
    clock = runtime.of(app).entra.keys.clock
    assert isinstance(clock, Ticks)
    return clock


def _serve(
    mock: responses.RequestsMock, *signers: Signer, url: str = KEYS_URL, max_age: int = 86400
) -> None:
    mock.get(
        url,
        json=_key_set(*signers),
        headers={"Cache-Control": f"max-age={max_age}, private"},
    )


def _fetches(mock: responses.RequestsMock, url: str = KEYS_URL) -> int:
    return sum(1 for call in mock.calls if call.request.url == url)


def _failures(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "lms_scim_entra_jwks_fetch_failures_total", {"reason": reason}
    )
    return value or 0.0


# -- accepted -----------------------------------------------------------------------------------


def test_an_entra_signed_token_reads_and_writes_recorded_as_its_directory(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    _serve(keys_endpoint, signer)
    scim = Scim(entra_app.test_client(), signer.token())
    assert scim.get("/Users").status_code == 200
    alice = create_user(scim, "alice@example.com")
    assert scim.patch(
        f"/Users/{alice['id']}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
    ).status_code in (200, 204)
    with entra_app.app_context(), tenancy.use(tenancy.DEFAULT_TENANT):
        actors = {e.token_name for e in AuditEvent.select() if e.resource_type == "User"}
    assert actors == {f"entra:{DIRECTORY}"}
    out = run(entra_app, "users", "status", "alice@example.com").stdout
    assert f"by token entra:{DIRECTORY}" in out
    body = json.loads(
        run(entra_app, "users", "status", "alice@example.com", "--format", "json").stdout
    )
    assert body["stateChangedBy"] == f"entra:{DIRECTORY}"
    assert _fetches(keys_endpoint) == 1


def test_a_directory_id_is_written_in_any_case_and_checked() -> None:
    assert Config.from_env({"ENTRA_TENANT_ID": DIRECTORY.upper()}).entra_tenant_id == DIRECTORY
    with pytest.raises(ValueError, match="not a directory id"):
        Config.from_env({"ENTRA_TENANT_ID": "contoso.onmicrosoft.com"})
    with pytest.raises(ValueError, match="https"):
        Config.from_env({"ENTRA_JWKS_URL": "http://keys.example/keys"})
    assert Config.from_env({}).entra_audience == "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"


def test_verifying_costs_no_query_once_the_directory_index_is_held(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    from playhouse.test_utils import count_queries

    _serve(keys_endpoint, signer)
    current = runtime.of(entra_app)
    header = f"Bearer {signer.token()}"
    with entra_app.test_request_context("/scim/v2/Users"):
        first = auth.verify(header, current.tokens, current.access_tokens, current.entra)
        current.tokens.clear()  # not even the verified-token cache: a fresh verification
        with count_queries() as again:
            second = auth.verify(header, current.tokens, current.access_tokens, current.entra)
    assert first == second
    assert first.token_name == f"entra:{DIRECTORY}"
    assert first.read_only is False
    assert again.count == 0
    assert _fetches(keys_endpoint) == 1


# -- refused ------------------------------------------------------------------------------------


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> bytes:
    def part(value: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    return part(header) + b"." + part(claims)


def _forged(signer: Signer, how: str) -> str:
    claims = jwt.decode(signer.token(), options={"verify_signature": False})
    if how == "alg none":
        return _unsigned({"alg": "none", "kid": signer.kid}, claims).decode() + "."
    if how == "HS256 with the public key as secret":
        public_pem = signer.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": signer.kid}, claims)
        mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
        return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    if how == "a kid not in the key set":
        return Signer("kid-unknown").token()
    if how == "a known kid, a foreign key":
        stranger = Signer(signer.kid)
        return stranger.token()
    if how == "RS512":
        return jwt.encode(claims, signer.key, "RS512", {"kid": signer.kid})
    now = int(time.time())
    changes = {
        "another audience": {"aud": "https://graph.microsoft.com"},
        "another directory": {"iss": f"https://sts.windows.net/{OTHER_DIRECTORY}/"},
        "a v2.0 issuer": {"iss": f"https://login.microsoftonline.com/{DIRECTORY}/v2.0"},
        "expired": {"exp": now - 120, "iat": now - 3700, "nbf": now - 3700},
        "not yet valid": {"nbf": now + 600},
        "no exp": {"exp": None},
    }[how]
    return signer.token(**changes)


@pytest.mark.parametrize(
    "how",
    [
        "alg none",
        "HS256 with the public key as secret",
        "RS512",
        "a kid not in the key set",
        "a known kid, a foreign key",
        "another audience",
        "another directory",
        "a v2.0 issuer",
        "expired",
        "not yet valid",
        "no exp",
    ],
)
def test_forged_or_misdirected_entra_tokens_are_refused(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer, how: str
) -> None:
    _serve(keys_endpoint, signer)
    response = Scim(entra_app.test_client(), _forged(signer, how)).get("/Users")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == INVALID_TOKEN


def test_a_cached_entra_token_that_expires_is_refused_as_a_fresh_expired_one(
    entra_app: Flask,
    keys_endpoint: responses.RequestsMock,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _serve(keys_endpoint, signer)
    client = entra_app.test_client()
    fresh = Scim(client, _forged(signer, "expired")).get("/Users")
    assert_error(fresh, 401)
    token = signer.token()
    scim = Scim(client, token)
    cached = after_cached_expiry(scim, token, monkeypatch)
    assert cached.status_code == fresh.status_code
    assert cached.headers["WWW-Authenticate"] == fresh.headers["WWW-Authenticate"] == INVALID_TOKEN
    assert cached.get_json() == fresh.get_json()


def test_a_cached_entra_token_keeps_the_leeway_of_its_first_verification(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    _serve(keys_endpoint, signer)
    now = int(time.time())
    late = Scim(entra_app.test_client(), signer.token(exp=now - 10, iat=now - 600, nbf=now - 600))
    assert late.get("/Users").status_code == 200  # expired, within the leeway
    assert late.get("/Users").status_code == 200  # from the cache: the same leeway


def test_without_a_configured_directory_entra_tokens_are_refused(
    app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    _serve(keys_endpoint, signer)
    response = Scim(app.test_client(), signer.token()).get("/Users")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == INVALID_TOKEN
    assert _fetches(keys_endpoint) == 0


# -- the key set --------------------------------------------------------------------------------


def test_a_rotated_key_is_fetched_at_most_once_a_minute(
    entra_app: Flask,
    keys_endpoint: responses.RequestsMock,
    signer: Signer,
    next_signer: Signer,
) -> None:
    client = entra_app.test_client()
    _serve(keys_endpoint, signer)
    assert Scim(client, signer.token()).get("/Users").status_code == 200
    # Microsoft publishes the next key; a token signed with it arrives at once.
    keys_endpoint.replace(responses.GET, KEYS_URL, json=_key_set(signer, next_signer), headers={})
    fresh = Scim(client, next_signer.token())
    assert_error(fresh.get("/Users"), 401)  # fetched less than a minute ago: not again
    assert _fetches(keys_endpoint) == 1
    _ticks(entra_app).advance(30)
    assert_error(Scim(client, next_signer.token(jti="b")).get("/Users"), 401)
    assert _fetches(keys_endpoint) == 1
    _ticks(entra_app).advance(31)
    assert Scim(client, next_signer.token(jti="c")).get("/Users").status_code == 200
    assert _fetches(keys_endpoint) == 2
    # Made-up kids cost no fetch for another minute.
    for n in range(5):
        assert_error(Scim(client, Signer(f"junk-{n}").token()).get("/Users"), 401)
    assert _fetches(keys_endpoint) == 2
    # The old key still verifies: both are in the set.
    assert Scim(client, signer.token(jti="d")).get("/Users").status_code == 200


def test_the_key_set_is_kept_as_long_as_max_age_says_and_at_most_a_day(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    client = entra_app.test_client()
    _serve(keys_endpoint, signer, max_age=600)
    ticks = _ticks(entra_app)
    assert Scim(client, signer.token(jti="1")).get("/Users").status_code == 200
    ticks.advance(590)
    assert Scim(client, signer.token(jti="2")).get("/Users").status_code == 200
    assert _fetches(keys_endpoint) == 1
    ticks.advance(20)
    keys_endpoint.replace(
        responses.GET, KEYS_URL, json=_key_set(signer), headers={"Cache-Control": "max-age=864000"}
    )
    assert Scim(client, signer.token(jti="3")).get("/Users").status_code == 200
    assert _fetches(keys_endpoint) == 2
    ticks.advance(86_000)
    assert Scim(client, signer.token(jti="4")).get("/Users").status_code == 200
    assert _fetches(keys_endpoint) == 2
    ticks.advance(500)  # ten days asked, one day kept
    assert Scim(client, signer.token(jti="5")).get("/Users").status_code == 200
    assert _fetches(keys_endpoint) == 3


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ({"status": 503}, "status"),
        ({"body": requests.ConnectionError("no route to host")}, "unreachable"),
        ({"body": "<html>maintenance</html>"}, "invalid"),
        ({"json": {"keys": [{"kty": "EC", "kid": "x"}]}}, "invalid"),
        ({"status": 302, "headers": {"Location": "http://keys.example/k"}}, "status"),
    ],
)
def test_a_failed_fetch_keeps_the_keys_is_counted_and_never_a_500(
    entra_app: Flask,
    keys_endpoint: responses.RequestsMock,
    signer: Signer,
    failure: dict[str, Any],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = entra_app.test_client()
    _serve(keys_endpoint, signer, max_age=60)
    assert Scim(client, signer.token(jti="1")).get("/Users").status_code == 200
    keys_endpoint.replace(responses.GET, KEYS_URL, **failure)
    before = _failures(reason)
    _ticks(entra_app).advance(120)  # stale: fetched again, and the fetch fails
    assert Scim(client, signer.token(jti="2")).get("/Users").status_code == 200
    assert _fetches(keys_endpoint) == 2
    assert _failures(reason) == before + 1
    assert "could not fetch the Entra ID key set" in caplog.text
    # A kid that only a fetch could bring: 401, and no second fetch within the minute.
    assert_error(Scim(client, Signer("kid-new").token()).get("/Users"), 401)
    assert _fetches(keys_endpoint) == 2


def test_no_keys_at_all_is_401_not_500(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    keys_endpoint.get(KEYS_URL, body=requests.Timeout("read timed out"))
    before = _failures("unreachable")
    response = Scim(entra_app.test_client(), signer.token()).get("/Users")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == INVALID_TOKEN
    assert _failures("unreachable") == before + 1


def test_the_failure_counter_is_on_metrics(entra_app: Flask) -> None:
    text = entra_app.test_client().get("/metrics").get_data(as_text=True)
    assert "lms_scim_entra_jwks_fetch_failures" in text


# -- tenants ------------------------------------------------------------------------------------


def test_two_tenants_with_their_own_directories_are_kept_apart(
    entra_app: Flask,
    keys_endpoint: responses.RequestsMock,
    signer: Signer,
    next_signer: Signer,
) -> None:
    run(entra_app, "tenants", "create", "acme", "--name", "Acme Corp")
    run(entra_app, "tenants", "set", "acme", f"ENTRA_TENANT_ID={OTHER_DIRECTORY.upper()}")
    _serve(keys_endpoint, signer)
    _serve(keys_endpoint, next_signer, url=OTHER_KEYS_URL)
    client = entra_app.test_client()
    ours = Scim(client, signer.token())
    theirs = Scim(client, next_signer.token(OTHER_DIRECTORY))
    create_user(ours, "alice@example.com")
    create_user(theirs, "zed@acme.example")
    assert [u["userName"] for u in ours.get("/Users").get_json()["Resources"]] == [
        "alice@example.com"
    ]
    assert [u["userName"] for u in theirs.get("/Users").get_json()["Resources"]] == [
        "zed@acme.example"
    ]
    assert (
        Scim(client, next_signer.token(OTHER_DIRECTORY), base="/t/acme/scim/v2")
        .get("/Users")
        .status_code
        == 200
    )
    assert_error(
        Scim(client, next_signer.token(OTHER_DIRECTORY), base="/t/default/scim/v2").get("/Users"),
        401,
    )
    # One directory's key cannot sign for the other.
    assert_error(Scim(client, signer.token(OTHER_DIRECTORY)).get("/Users"), 401)
    status = run(entra_app, "users", "status", "--tenant", "acme", "zed@acme.example").stdout
    assert f"by token entra:{OTHER_DIRECTORY}" in status


def test_a_tenant_does_not_inherit_the_environments_directory(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    run(entra_app, "tenants", "create", "acme", "--name", "Acme Corp")
    shown = json.loads(run(entra_app, "tenants", "show", "acme", "--format", "json").stdout)
    assert shown["settings"]["ENTRA_TENANT_ID"] == {"value": None, "source": "default"}
    _serve(keys_endpoint, signer)
    client = entra_app.test_client()
    assert_error(Scim(client, signer.token(), base="/t/acme/scim/v2").get("/Users"), 401)


def test_tenants_set_refuses_a_bad_or_taken_directory(entra_app: Flask) -> None:
    run(entra_app, "tenants", "create", "acme", "--name", "Acme Corp")
    bad = invoke(entra_app, "tenants", "set", "acme", "ENTRA_TENANT_ID=contoso")
    assert bad.exit_code == 1
    assert "ENTRA_TENANT_ID" in bad.output
    assert "not a directory id" in bad.output
    taken = invoke(entra_app, "tenants", "set", "acme", f"ENTRA_TENANT_ID={DIRECTORY}")
    assert taken.exit_code == 1
    assert "already tenant 'default'" in taken.output
    plain = invoke(entra_app, "tenants", "set", "acme", "ENTRA_JWKS_URL=http://keys.example/k")
    assert plain.exit_code == 1
    assert "https" in plain.output
    run(entra_app, "tenants", "set", "acme", f"ENTRA_TENANT_ID={OTHER_DIRECTORY}")
    run(entra_app, "tenants", "create", "beta", "--name", "Beta")
    again = invoke(entra_app, "tenants", "set", "beta", f"ENTRA_TENANT_ID={OTHER_DIRECTORY}")
    assert again.exit_code == 1
    assert "already tenant 'acme'" in again.output


def test_a_directory_two_tenants_claim_is_refused_to_both(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    """Set behind the CLI's back (SQL, a race): neither tenant gets the directory's tokens."""
    from app.store import tenants as tenant_store

    run(entra_app, "tenants", "create", "acme", "--name", "Acme Corp")
    with entra_app.app_context():
        tenant_store.save_settings(tenant_store.by_slug("acme"), {"ENTRA_TENANT_ID": DIRECTORY})
    runtime.of(entra_app).entra_directories.clear()
    _serve(keys_endpoint, signer)
    assert_error(Scim(entra_app.test_client(), signer.token()).get("/Users"), 401)


def test_a_tenants_own_audience_and_key_set_url(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer
) -> None:
    run(entra_app, "tenants", "create", "acme", "--name", "Acme Corp")
    url = "https://keys.acme.example/jwks"
    run(
        entra_app,
        "tenants",
        "set",
        "acme",
        f"ENTRA_TENANT_ID={OTHER_DIRECTORY}",
        "ENTRA_AUDIENCE=api://acme-scim",
        f"ENTRA_JWKS_URL={url}",
    )
    _serve(keys_endpoint, signer, url=url)
    client = entra_app.test_client()
    assert_error(Scim(client, signer.token(OTHER_DIRECTORY)).get("/Users"), 401)  # template aud
    token = signer.token(OTHER_DIRECTORY, aud="api://acme-scim")
    assert Scim(client, token).get("/Users").status_code == 200
    assert _fetches(keys_endpoint, url) == 1


# -- discovery ----------------------------------------------------------------------------------


def test_service_provider_config_lists_the_entra_scheme_when_configured(
    entra_app: Flask, app: Flask, keys_endpoint: responses.RequestsMock, signer: Signer, token: str
) -> None:
    _serve(keys_endpoint, signer)
    body = Scim(entra_app.test_client(), signer.token()).get("/ServiceProviderConfig").get_json()
    schemes = body["authenticationSchemes"]
    assert [s["type"] for s in schemes] == ["oauthbearertoken"] * 3
    assert [s["primary"] for s in schemes] == [True, False, False]
    assert schemes[1]["documentationUri"] == "http://localhost/oauth/token"
    assert f"https://sts.windows.net/{DIRECTORY}/" in schemes[2]["description"]
    plain = Scim(app.test_client(), token).get("/ServiceProviderConfig").get_json()
    assert len(plain["authenticationSchemes"]) == 2


def test_entra_module_reads_max_age() -> None:
    assert entra._cache_seconds("private, max-age=300") == 300
    assert entra._cache_seconds(None) == entra.DEFAULT_CACHE_SECONDS
    assert entra._cache_seconds("max-age=999999") == entra.MAX_CACHE_SECONDS
    assert entra._cache_seconds("no-store") == 0


def test_openapi_describes_the_token_endpoint_and_every_bearer_form(scim: Scim) -> None:
    document = scim.get("/openapi.json").get_json()
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"bearer", "oauth2", "entra"}
    assert {next(iter(s)) for s in document["security"]} == set(schemes)
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    flow = schemes["oauth2"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "http://localhost/oauth/token"
    assert set(flow["scopes"]) == {"scim.read", "scim.write"}
    assert "client_secret_basic" in schemes["oauth2"]["description"]
    assert schemes["entra"]["bearerFormat"] == "JWT"
    assert "sts.windows.net" in schemes["entra"]["description"]


def test_a_tenant_that_drops_its_directory_refuses_its_tokens(
    entra_app: Flask, keys_endpoint: responses.RequestsMock, next_signer: Signer
) -> None:
    run(entra_app, "tenants", "create", "acme", "--name", "Acme Corp")
    run(entra_app, "tenants", "set", "acme", f"ENTRA_TENANT_ID={OTHER_DIRECTORY}")
    _serve(keys_endpoint, next_signer, url=OTHER_KEYS_URL)
    theirs = Scim(entra_app.test_client(), next_signer.token(OTHER_DIRECTORY))
    assert theirs.get("/Users").status_code == 200
    run(entra_app, "tenants", "set", "acme", "ENTRA_TENANT_ID=")
    assert_error(theirs.get("/Users"), 401)
