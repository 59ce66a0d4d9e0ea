"""Per-process caches and the cache generation (m0016, `app.freshness`): a process asks the
database one question per TOKEN_CACHE_SECONDS however many tenants it serves, and still sees a
change made anywhere — another process, the CLI, a SQL console — within that time."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playhouse.test_utils import count_queries

from app import auth, freshness, runtime
from app.store import generation, tenancy
from app.store import tokens as token_store
from app.store.models import ApiToken, OAuthClient, Tenant, utcnow
from tests.helpers import app_with, last_line, run, status_of

SLUGS = ("acme", "globex", "initech")


def _later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move this process's clock `seconds` on (the freshness check reads it)."""
    now = time.monotonic() + seconds
    monkeypatch.setattr(freshness.time, "monotonic", lambda: now)


@pytest.fixture
def tenant_tokens(app: Flask) -> dict[str, str]:
    made = {}
    for slug in SLUGS:
        run(app, "tenants", "create", slug, "--name", slug.title())
        made[slug] = last_line(run(app, "tokens", "create", f"{slug}-idp", "--tenant", slug))
    return made


def _bumped(action: object) -> int:
    with tenancy.everywhere():
        before = generation.read()
        action()  # type: ignore[operator]
        return generation.read() - before


def test_one_query_confirms_every_tenants_cached_token_and_settings(
    app: Flask, client: FlaskClient, tenant_tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for secret in tenant_tokens.values():  # each tenant's token and settings loaded once
        assert status_of(client, secret) == 200
    current = runtime.of(app)
    _later(monkeypatch, current.config.token_cache_seconds + 1)
    with app.test_request_context("/scim/v2/Users"), count_queries() as checked:
        for secret in tenant_tokens.values():
            principal = auth.verify(f"Bearer {secret}", current.tokens, current.access_tokens)
            assert not current.tenant(principal.tenant_id).disabled
    # Nothing changed: the generation check is the only query, for all three tenants.
    assert checked.count == 1


def test_a_revocation_by_sql_is_seen_after_the_cache_time(
    app: Flask, client: FlaskClient, tenant_tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tenant_tokens["globex"]
    assert status_of(client, secret) == 200
    with tenancy.everywhere():
        ApiToken.update(revoked_at=utcnow()).where(ApiToken.name == "globex-idp").execute()
    assert status_of(client, secret) == 200  # still within the cache time
    _later(monkeypatch, runtime.of(app).config.token_cache_seconds + 1)
    assert status_of(client, secret) == 401
    assert status_of(client, tenant_tokens["acme"]) == 200  # the others reload and stand


def test_a_tenant_disabled_elsewhere_is_refused_after_the_cache_time(
    app: Flask, client: FlaskClient, tenant_tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tenant_tokens["initech"]
    assert status_of(client, secret) == 200
    with tenancy.everywhere():
        Tenant.update(disabled_at=utcnow()).where(Tenant.slug == "initech").execute()
    _later(monkeypatch, runtime.of(app).config.token_cache_seconds + 1)
    assert status_of(client, secret) == 403


def test_every_watched_change_moves_the_generation_and_a_last_use_does_not(
    app: Flask, tenant_tokens: dict[str, str]
) -> None:
    with app.app_context(), tenancy.everywhere():
        token = ApiToken.get(ApiToken.name == "acme-idp")
        assert _bumped(lambda: token_store.touch({token.id: utcnow()})) == 0
        assert _bumped(lambda: run(app, "tokens", "create", "second", "--tenant", "acme")) >= 1
        assert _bumped(lambda: ApiToken.update(read_only=True).execute()) >= 1
        assert _bumped(lambda: run(app, "tenants", "set", "acme", "UNIQUE_EMAILS=false")) >= 1
        assert _bumped(lambda: run(app, "clients", "create", "entra", "--tenant", "acme")) >= 1
        assert _bumped(lambda: OAuthClient.update(revoked_at=utcnow()).execute()) >= 1
        assert _bumped(lambda: ApiToken.delete().where(ApiToken.name == "second").execute()) >= 1


def test_a_cache_time_of_zero_asks_on_every_request(
    app: Flask, tenant_tokens: dict[str, str]
) -> None:
    uncached = app_with(app, token_cache_seconds=0)
    client = uncached.test_client()
    secret = tenant_tokens["acme"]
    assert status_of(client, secret) == 200
    with tenancy.everywhere():
        Tenant.update(disabled_at=utcnow()).where(Tenant.slug == "acme").execute()
    assert status_of(client, secret) == 403
