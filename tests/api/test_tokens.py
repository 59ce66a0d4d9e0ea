"""Token lifecycle: expiry, rotation with a grace period, revocation, read-only access, last use,
and the audit trail of token events — through the CLI and the SCIM API, on both databases."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import auth, freshness
from app.store import tenancy
from app.store import tokens as token_store
from app.store.models import ApiToken, AuditEvent, utcnow
from scim_schemas import CORE_USER, ERROR, PATCH_OP
from tests.helpers import app_with, invoke, last_line, run, status_of


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fake wall clock for token expiry: `clock.advance(hours=25)`."""

    class Clock:
        offset = dt.timedelta()

        def now(self) -> dt.datetime:
            return utcnow() + self.offset

        def advance(self, **delta: float) -> None:
            self.offset += dt.timedelta(**delta)

    fake = Clock()
    monkeypatch.setattr(auth, "utcnow", fake.now)
    return fake


# -- expiry ----------------------------------------------------------------------------------


def test_a_token_with_expires_in_stops_at_its_expiry(
    app: Flask, client: FlaskClient, clock: Any
) -> None:
    secret = last_line(run(app, "tokens", "create", "okta", "--expires-in", "90d"))
    row = ApiToken.get(ApiToken.name == "okta")
    assert row.expires_at - utcnow() == pytest.approx(
        dt.timedelta(days=90), abs=dt.timedelta(seconds=5)
    )
    assert status_of(client, secret) == 200  # now cached

    clock.advance(days=89, hours=23)
    assert status_of(client, secret) == 200
    clock.advance(hours=2)
    # The cache holds the expiry time, so expiry is exact even for a cached token.
    response = client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    assert response.get_json()["schemas"] == [ERROR]
    assert "expired" in response.get_json()["detail"]


@pytest.mark.parametrize("bad", ["90", "3y", "-1d", "d"])
def test_expires_in_must_be_a_duration(app: Flask, bad: str) -> None:
    result = invoke(app, "tokens", "create", "x", "--expires-in", bad)
    assert result.exit_code == 2
    assert "duration" in result.output
    assert ApiToken.select().count() == 0


def test_a_second_usable_token_with_the_same_name_is_refused(app: Flask) -> None:
    run(app, "tokens", "create", "okta")
    result = invoke(app, "tokens", "create", "okta")
    assert result.exit_code == 1
    assert "rotate" in result.output
    assert ApiToken.select().count() == 1


# -- rotation --------------------------------------------------------------------------------


def test_rotate_keeps_the_old_secret_working_through_the_grace_and_not_after(
    app: Flask, client: FlaskClient, clock: Any
) -> None:
    old = last_line(run(app, "tokens", "create", "entra"))
    assert status_of(client, old) == 200

    result = run(app, "tokens", "rotate", "entra", "--grace", "24h")
    new = last_line(result)
    assert new != old
    assert new.startswith(auth.TOKEN_PREFIX)
    assert result.stdout.strip() == new
    assert "works until" in result.stderr

    # During the grace both work: the IdP can be switched without downtime.
    assert status_of(client, old) == status_of(client, new) == 200
    states = {t.prefix: token_store.state(t) for t in ApiToken.select()}
    assert sorted(states.values()) == ["active", "rotating"]
    listing = run(app, "tokens", "list").stdout
    assert "rotating" in listing
    assert "active" in listing

    clock.advance(hours=23, minutes=59)
    assert status_of(client, old) == 200
    clock.advance(minutes=2)
    assert status_of(client, old) == 401
    assert status_of(client, new) == 200


def test_rotate_with_a_short_real_grace(app: Flask, client: FlaskClient) -> None:
    old = last_line(run(app, "tokens", "create", "okta"))
    new = last_line(run(app, "tokens", "rotate", "okta", "--grace", "1s"))
    assert status_of(client, old) == 200
    time.sleep(1.2)
    assert status_of(client, old) == 401
    assert status_of(client, new) == 200


def test_rotate_keeps_read_only_and_may_set_a_new_expiry(app: Flask, client: FlaskClient) -> None:
    run(app, "tokens", "create", "auditor", "--read-only")
    new = last_line(run(app, "tokens", "rotate", "auditor", "--expires-in", "30d"))
    row = ApiToken.get(ApiToken.token_hash == auth.hash_token(new))
    assert row.read_only is True
    assert row.rotated_at is None
    assert row.expires_at > utcnow() + dt.timedelta(days=29)
    assert (
        status_of(client, new, "POST", "/Users", json={"schemas": [CORE_USER], "userName": "x"})
        == 403
    )


def test_rotate_an_unknown_or_revoked_token_fails(app: Flask) -> None:
    assert invoke(app, "tokens", "rotate", "nobody").exit_code == 1
    run(app, "tokens", "create", "gone")
    run(app, "tokens", "revoke", "gone")
    result = invoke(app, "tokens", "rotate", "gone")
    assert result.exit_code == 1
    assert "No usable token" in result.output


def test_rotating_twice_never_extends_the_first_grace(app: Flask, clock: Any) -> None:
    run(app, "tokens", "create", "okta")
    run(app, "tokens", "rotate", "okta", "--grace", "1h")
    first_old = ApiToken.select().order_by(ApiToken.id).first()
    run(app, "tokens", "rotate", "okta", "--grace", "48h")
    assert ApiToken.get_by_id(first_old.id).expires_at == first_old.expires_at


# -- revocation ------------------------------------------------------------------------------


def test_revoke_refuses_the_token_at_once_even_when_cached(app: Flask, client: FlaskClient) -> None:
    secret = last_line(run(app, "tokens", "create", "canvas"))
    assert status_of(client, secret) == 200  # cached for TOKEN_CACHE_SECONDS
    result = run(app, "tokens", "revoke", "canvas")
    assert "Revoked 1 token" in result.stdout
    response = client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "revoked" in run(app, "tokens", "list").stdout


def test_revoke_during_rotation_revokes_old_and_new(app: Flask, client: FlaskClient) -> None:
    old = last_line(run(app, "tokens", "create", "okta"))
    new = last_line(run(app, "tokens", "rotate", "okta"))
    assert "Revoked 2 token" in run(app, "tokens", "revoke", "okta").stdout
    assert status_of(client, old) == status_of(client, new) == 401


def test_revoke_an_unknown_name_fails(app: Flask) -> None:
    result = invoke(app, "tokens", "revoke", "nobody")
    assert result.exit_code == 1
    assert "No token named" in result.output


def test_another_process_revoking_is_seen_within_the_cache_time(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = last_line(run(app, "tokens", "create", "okta"))
    assert status_of(client, secret) == 200
    # Another process (the CLI on another host) revokes: this process's cache does not know.
    ApiToken.update(revoked_at=utcnow()).execute()
    assert status_of(client, secret) == 200
    monkeypatch.setattr(freshness.time, "monotonic", lambda: time.perf_counter() + 10_000)
    assert status_of(client, secret) == 401


def test_a_cache_time_of_zero_checks_every_request(app: Flask) -> None:
    uncached = app_with(app, token_cache_seconds=0)
    client = uncached.test_client()
    secret = last_line(run(uncached, "tokens", "create", "okta"))
    assert status_of(client, secret) == 200
    ApiToken.update(revoked_at=utcnow()).execute()
    assert status_of(client, secret) == 401


# -- read-only -------------------------------------------------------------------------------


def test_read_only_tokens_may_read_and_search_but_not_write(
    app: Flask, client: FlaskClient, scim: Any
) -> None:
    created = scim.post("/Users", {"schemas": [CORE_USER], "userName": "alice"}).get_json()
    secret = last_line(run(app, "tokens", "create", "reporting", "--read-only"))
    user = f"/Users/{created['id']}"
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName eq "alice"',
    }
    assert status_of(client, secret, "GET", user) == 200
    assert status_of(client, secret, "GET", "/ServiceProviderConfig") == 200
    assert status_of(client, secret, "POST", "/Users/.search", json=search) == 200
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    writes = [
        ("POST", "/Users", {"schemas": [CORE_USER], "userName": "bob"}),
        ("PUT", user, {"schemas": [CORE_USER], "userName": "alice"}),
        ("PATCH", user, patch),
        ("DELETE", user, None),
        (
            "POST",
            "/Groups",
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"},
        ),
    ]
    for method, path, body in writes:
        response = client.open(
            f"/scim/v2{path}",
            method=method,
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 403, (method, path)
        assert response.mimetype == "application/scim+json"
        assert response.get_json()["schemas"] == [ERROR]
        assert response.get_json()["status"] == "403"
    assert scim.get(user).get_json()["active"] is True


# -- last used -------------------------------------------------------------------------------


def test_last_use_is_recorded_without_a_write_per_request(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = last_line(run(app, "tokens", "create", "okta"))
    assert ApiToken.get(ApiToken.name == "okta").last_used_at is None
    writes: list[dict[int, dt.datetime]] = []
    real_touch = token_store.touch
    monkeypatch.setattr(
        token_store, "touch", lambda used: (writes.append(dict(used)), real_touch(used))
    )

    for _ in range(5):
        assert status_of(client, secret) == 200
    assert len(writes) == 1  # the first use is written at once, the rest wait
    first = ApiToken.get(ApiToken.name == "okta").last_used_at
    assert first is not None
    assert utcnow() - first < dt.timedelta(seconds=30)
    assert first.strftime("%Y-%m-%d %H:%M") in run(app, "tokens", "list").stdout

    later = time.monotonic() + auth.LAST_USED_FLUSH_SECONDS + 1
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert status_of(client, secret) == 200
    assert len(writes) == 2


def test_many_tenants_tokens_cost_one_write_a_minute_not_one_each(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process serving many tenants (a token each) writes their last uses together, once a
    minute, as for one token: a write per token was a commit on most requests of a process's
    first minute (issue 16's bench of 1,000 tenants)."""
    secrets = []
    for slug in ("t1", "t2", "t3"):
        run(app, "tenants", "create", slug, "--name", slug.upper())
        secrets.append(last_line(run(app, "tokens", "create", "idp", "--tenant", slug)))
    writes: list[dict[int, dt.datetime]] = []
    real_touch = token_store.touch
    monkeypatch.setattr(
        token_store, "touch", lambda used: (writes.append(dict(used)), real_touch(used))
    )
    for secret in secrets * 2:
        assert status_of(client, secret) == 200
    assert [len(w) for w in writes] == [1]  # the process's first use, at once

    later = time.monotonic() + auth.LAST_USED_FLUSH_SECONDS + 1
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert status_of(client, secrets[0]) == 200
    assert [len(w) for w in writes] == [1, 3]  # everyone's since, in one write
    with tenancy.everywhere():
        assert all(t.last_used_at for t in ApiToken.select().where(ApiToken.name == "idp"))


# -- listing and audit -----------------------------------------------------------------------


def test_list_shows_expiry_last_use_state_and_access_never_the_secret(
    app: Flask, client: FlaskClient
) -> None:
    secret = last_line(run(app, "tokens", "create", "okta", "--expires-in", "30d", "--read-only"))
    status_of(client, secret)
    line = run(app, "tokens", "list", "--format", "csv").stdout.strip().splitlines()[1]
    name, prefix, access, _created, expires, last_used, state = line.split(",")
    assert (name, access, state) == ("okta", "read-only", "active")
    assert secret.startswith(prefix.rstrip("…"))
    assert expires == f"{ApiToken.get().expires_at:%Y-%m-%dT%H:%M:%S}Z"
    assert last_used != ""
    assert secret not in line
    assert auth.hash_token(secret) not in line


def test_token_events_go_to_the_audit_trail(app: Flask) -> None:
    secret = last_line(run(app, "tokens", "create", "okta"))
    new = last_line(run(app, "tokens", "rotate", "okta", "--grace", "1h"))
    run(app, "tokens", "revoke", "okta")
    events = list(
        AuditEvent.select().where(AuditEvent.resource_type == "Token").order_by(AuditEvent.id)
    )
    assert [e.operation for e in events] == [
        "token_create",
        "token_rotate",
        "token_revoke",
        "token_revoke",
    ]
    assert {e.token_name for e in events} == {"cli"}
    for event in events:
        assert secret not in (event.changes or "")
        assert new not in (event.changes or "")
        assert auth.hash_token(secret) not in (event.changes or "")
    audit_json = run(app, "audit", "--format", "json").stdout
    assert "token_rotate" in audit_json
