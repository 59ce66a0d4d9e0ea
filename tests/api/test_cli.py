"""The `lms-scim` commands through Flask's CLI runner, against SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import auth, create_app, runtime
from app.config import Config
from app.store import migrations
from app.store.db import database
from app.store.models import ALL_MODELS, ApiToken, SchemaMigration, utcnow
from scim_schemas import CORE_USER
from tests.helpers import (
    create_schema,
    drop_schema,
    invoke,
    last_line,
    postgres_or_skip,
    run,
    schema_url,
    status_of,
)

SECRET = re.compile(r"lmsscim_[A-Za-z0-9_-]{40,}")


def hash_of(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def assert_only_the_hash_is_stored(secret: str, name: str) -> ApiToken:
    row = ApiToken.get(ApiToken.name == name)
    assert row.token_hash == hash_of(secret)
    for column, value in row.__data__.items():
        assert secret not in str(value), column
    assert secret.startswith(row.prefix)
    assert len(row.prefix) < 20
    return row


# -- db upgrade ------------------------------------------------------------------------------


@pytest.fixture
def fresh_app(config: Config, tmp_path: Any) -> Iterator[Flask]:
    """An app on an empty database (a new SQLite file, or a new PostgreSQL schema)."""
    conn = schema = None
    if config.database_url.startswith("postgres"):
        conn = postgres_or_skip()
        schema = create_schema(conn, "lms_scim_cli")
        url = schema_url(schema)
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    flask_app = create_app(Config.from_env({}, database_url=url, testing=True))
    yield flask_app
    db = database.obj
    if hasattr(db, "close_all"):
        db.close_all()
    db.close()
    if conn is not None and schema is not None:
        drop_schema(conn, schema)
        conn.close()


def test_db_upgrade_creates_the_schema_and_a_second_run_applies_nothing(fresh_app: Flask) -> None:
    db = database.obj
    assert not db.table_exists(ApiToken._meta.table_name)

    pending = migrations.pending(db)
    assert pending[0] == "m0001_initial"

    first = run(fresh_app, "db", "upgrade")
    assert [f"applied {name}" for name in pending] == first.stdout.splitlines()[:-1]
    assert f"({len(pending)} migration(s) applied now)" in first.stdout
    assert migrations.pending(db) == []
    for model in ALL_MODELS:
        assert db.table_exists(model._meta.table_name), model._meta.table_name
    secret = last_line(run(fresh_app, "tokens", "create", "kept"))
    applied = [row.number for row in SchemaMigration.select()]

    second = run(fresh_app, "db", "upgrade")
    assert "(0 migration(s) applied now)" in second.stdout
    assert "applied m" not in second.stdout
    assert [row.number for row in SchemaMigration.select()] == applied
    assert_only_the_hash_is_stored(secret, "kept")
    assert status_of(fresh_app.test_client(), secret) == 200


def test_db_upgrade_on_an_up_to_date_database_applies_nothing(app: Flask) -> None:
    result = run(app, "db", "upgrade")
    assert result.stdout.strip() == "database is up to date (0 migration(s) applied now)"


# -- tokens create ---------------------------------------------------------------------------


def test_tokens_create_prints_the_secret_alone_on_the_last_line(
    app: Flask, client: FlaskClient
) -> None:
    result = run(app, "tokens", "create", "okta-prod")
    secret = last_line(result)
    assert SECRET.fullmatch(secret), secret
    assert secret.startswith(auth.TOKEN_PREFIX)
    # The notice goes to stderr, so `$(lms-scim tokens create x)` captures the secret only.
    assert result.stdout.strip() == secret
    assert "not shown again" in result.stderr
    assert secret not in result.stderr

    row = assert_only_the_hash_is_stored(secret, "okta-prod")
    assert row.read_only is False
    assert row.revoked_at is None
    assert ApiToken.select().count() == 1

    assert status_of(client, secret) == 200
    assert status_of(client, secret[:-1] + ("A" if secret[-1] != "A" else "B")) == 401


def test_each_token_gets_its_own_secret(app: Flask, client: FlaskClient) -> None:
    first = last_line(run(app, "tokens", "create", "one"))
    second = last_line(run(app, "tokens", "create", "two"))
    assert first != second
    assert ApiToken.select().count() == 2
    assert status_of(client, first) == status_of(client, second) == 200


def test_tokens_create_read_only_is_recorded(app: Flask, client: FlaskClient) -> None:
    secret = last_line(run(app, "tokens", "create", "auditor", "--read-only"))
    assert assert_only_the_hash_is_stored(secret, "auditor").read_only is True
    assert status_of(client, secret) == 200


def test_a_read_only_token_may_not_write(app: Flask, client: FlaskClient) -> None:
    secret = last_line(run(app, "tokens", "create", "auditor", "--read-only"))
    response = client.post(
        "/scim/v2/Users",
        json={"schemas": [CORE_USER], "userName": "written@example.com"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 403


def test_tokens_create_requires_a_name(app: Flask) -> None:
    result = invoke(app, "tokens", "create")
    assert result.exit_code != 0
    assert ApiToken.select().count() == 0


# -- tokens bootstrap ------------------------------------------------------------------------


def test_bootstrap_creates_a_first_token_when_there_is_none(
    app: Flask, client: FlaskClient
) -> None:
    result = run(app, "tokens", "bootstrap")
    secret = last_line(result)
    assert SECRET.fullmatch(secret)
    assert result.stdout.strip() == secret
    assert_only_the_hash_is_stored(secret, "first-token")
    assert status_of(client, secret) == 200


def test_bootstrap_does_nothing_when_a_usable_token_exists(app: Flask) -> None:
    existing = last_line(run(app, "tokens", "create", "existing"))
    result = run(app, "tokens", "bootstrap")
    assert result.stdout == ""
    assert "already exists" in result.stderr
    assert existing not in result.output
    assert [t.name for t in ApiToken.select()] == ["existing"]


def test_bootstrap_run_twice_creates_one_token(app: Flask) -> None:
    first = run(app, "tokens", "bootstrap")
    second = run(app, "tokens", "bootstrap")
    assert SECRET.fullmatch(last_line(first))
    assert second.stdout == ""
    assert ApiToken.select().count() == 1


@pytest.mark.parametrize(
    "unusable",
    [
        {"revoked_at": utcnow()},
        {"expires_at": utcnow() - dt.timedelta(minutes=1)},
    ],
    ids=["revoked", "expired"],
)
def test_bootstrap_creates_one_when_only_unusable_tokens_exist(
    app: Flask, client: FlaskClient, unusable: dict[str, Any]
) -> None:
    old = last_line(run(app, "tokens", "create", "old"))
    ApiToken.update(**unusable).where(ApiToken.name == "old").execute()
    runtime.of(app).tokens.clear()
    assert status_of(client, old) == 401

    result = run(app, "tokens", "bootstrap", "--name", "replacement")
    secret = last_line(result)
    assert SECRET.fullmatch(secret)
    assert sorted(t.name for t in ApiToken.select()) == ["old", "replacement"]
    assert status_of(client, secret) == 200


def test_bootstrap_with_a_token_expiring_later_does_nothing(app: Flask) -> None:
    run(app, "tokens", "create", "later")
    ApiToken.update(expires_at=utcnow() + dt.timedelta(days=1)).execute()
    assert run(app, "tokens", "bootstrap").stdout == ""
    assert ApiToken.select().count() == 1


# -- tokens list -----------------------------------------------------------------------------


def test_tokens_list_shows_names_prefixes_and_state_but_never_secrets(app: Flask) -> None:
    active = last_line(run(app, "tokens", "create", "canvas"))
    revoked = last_line(run(app, "tokens", "create", "moodle"))
    ApiToken.update(revoked_at=utcnow()).where(ApiToken.name == "moodle").execute()

    result = run(app, "tokens", "list", "--format", "csv")
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "name,prefix,access,created,expires,lastUsed,state"
    assert len(lines) == 3
    by_name = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert by_name["canvas"][-1] == "active"
    assert by_name["moodle"][-1] == "revoked"
    for secret, name in ((active, "canvas"), (revoked, "moodle")):
        prefix = ApiToken.get(ApiToken.name == name).prefix
        assert by_name[name][1].startswith(prefix)
        assert secret not in result.output
        # Nothing beyond the stored prefix leaks, not even a fragment of the random part.
        assert secret[len(prefix) : len(prefix) + 8] not in result.output
        assert hash_of(secret) not in result.output


def test_tokens_list_with_no_tokens_prints_the_header_only(app: Flask) -> None:
    assert run(app, "tokens", "list").stdout.split() == [
        "name",
        "prefix",
        "access",
        "created",
        "(UTC)",
        "expires",
        "last",
        "used",
        "state",
    ]
    assert run(app, "tokens", "list", "--format", "json").stdout.strip() == "[]"
