"""Fixtures: every API test runs against SQLite and PostgreSQL.

PostgreSQL tests use a schema of their own in the `test` database (so parallel runs do not
collide) and are skipped loudly when the server is unreachable — unless REQUIRE_POSTGRES=1
(set by .ci/run), where an unreachable server fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import auth, create_app
from app.config import Config
from app.store import migrations
from app.store.db import database
from app.store.models import ALL_MODELS

PG_DSN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_schema() -> str | None:
    """Create a private schema for this test session; None if PostgreSQL is unreachable."""
    try:
        import psycopg2

        conn = psycopg2.connect(PG_DSN, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable at {PG_DSN}: {exc}")
        return None
    schema = f"lms_scim_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    conn.close()
    return schema


def _drop_schema(schema: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_DSN, connect_timeout=3)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str | None]]:
    sqlite_path = tmp_path_factory.mktemp("db") / "test.db"
    urls: dict[str, str | None] = {"sqlite": f"sqlite:///{sqlite_path}", "postgres": None}
    schema = _postgres_schema()
    if schema:
        urls["postgres"] = f"{PG_DSN}?options=-csearch_path%3D{schema}"
    yield urls
    if schema:
        for db in list(_migrated):
            if isinstance(db, peewee.PostgresqlDatabase):
                db.close_all() if hasattr(db, "close_all") else db.close()
        _drop_schema(schema)


_migrated: set[peewee.Database] = set()


def _clean(db: peewee.Database) -> None:
    tables = [m._meta.table_name for m in ALL_MODELS]
    with db.connection_context():
        if isinstance(db, peewee.PostgresqlDatabase):
            quoted = ", ".join(f'"{table}"' for table in tables)
            db.execute_sql(f"TRUNCATE {quoted} CASCADE")
        else:
            with db.atomic():
                for model in reversed(ALL_MODELS):
                    model.delete().execute()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def config(request: pytest.FixtureRequest, database_urls: dict[str, str | None]) -> Config:
    url = database_urls[request.param]
    if url is None:
        pytest.skip(f"PostgreSQL unreachable at {PG_DSN}: PostgreSQL tests SKIPPED")
    return Config.from_env({}, database_url=url, testing=True)


@pytest.fixture
def app(config: Config) -> Flask:
    flask_app = create_app(config)
    db = database.obj
    if db not in _migrated:
        migrations.upgrade(db)
        _migrated.add(db)
    _clean(db)
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def token(app: Flask) -> str:
    with app.app_context():
        return auth.issue("test-idp")


class Scim:
    """A test client that speaks SCIM: bearer token, SCIM media type, base path."""

    def __init__(self, client: FlaskClient, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json"}

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["json"] = body
            headers.setdefault("Content-Type", "application/scim+json")
        url = path if path.startswith(("/scim/", "/healthz")) else f"/scim/v2{path}"
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)


@pytest.fixture
def scim(client: FlaskClient, token: str) -> Scim:
    return Scim(client, token)
