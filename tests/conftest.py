"""Fixtures: every API test runs against SQLite and PostgreSQL.

`scim` and `acme` (the default tenant's and a second tenant's SCIM clients) go through Flask's
test client, unless a module parametrises `transport` with "http": its tests then also run over
real HTTP, against a live gunicorn per database (tests/e2e/live.py's `TwoTenants`), started once
for the module and stopped by its process id.

PostgreSQL tests use a schema of their own in the `test` database (so parallel runs do not
collide) and are skipped loudly when the server is unreachable — unless REQUIRE_POSTGRES=1
(set by .ci/run), where an unreachable server fails the run.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import auth, create_app
from app.config import Config
from app.store import migrations, tenancy
from app.store.db import database
from app.store.models import ALL_MODELS, CacheGeneration, LmsTarget, Tenant
from app.store.tenancy import DEFAULT_TENANT
from tests.e2e.live import TwoTenants, servers_in
from tests.helpers import (
    OPERATOR,
    PASSWORD,
    PG_DSN,
    Clock,
    Scim,
    app_with,
    connect_postgres,
    create_schema,
    drop_schema,
    empty_tenant,
    last_line,
    run,
    schema_url,
    sign_in,
)

BENCH_RUN = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench_run() -> ModuleType:
    """bench/run.py as a module; the folders it puts on `sys.path` are taken off again (bench/
    has a `profile.py` that would hide the standard library's)."""
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_run", BENCH_RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def _postgres_schema() -> str | None:
    """Create a private schema for this test session; None if PostgreSQL is unreachable."""
    conn = connect_postgres()
    if conn is None:
        return None
    try:
        return create_schema(conn, "lms_scim_test")
    finally:
        conn.close()


def _drop_schema(schema: str) -> None:
    conn = connect_postgres()
    if conn is not None:
        try:
            drop_schema(conn, schema)
        finally:
            conn.close()


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str | None]]:
    sqlite_path = tmp_path_factory.mktemp("db") / "test.db"
    urls: dict[str, str | None] = {"sqlite": f"sqlite:///{sqlite_path}", "postgres": None}
    schema = _postgres_schema()
    if schema:
        urls["postgres"] = schema_url(schema)
    yield urls
    if schema:
        for db in list(_migrated):
            if isinstance(db, peewee.PostgresqlDatabase):
                db.close_all() if hasattr(db, "close_all") else db.close()
        _drop_schema(schema)


_migrated: set[peewee.Database] = set()


def _clean(db: peewee.Database) -> None:
    """Every table empty, but for the default tenant, its `default` LMS target (target 1) and
    the cache generation counter, which a database always has (m0009, m0014, m0016)."""
    kept = (Tenant, LmsTarget, CacheGeneration)
    tables = [m._meta.table_name for m in ALL_MODELS if m not in kept]
    with db.connection_context(), tenancy.everywhere():
        if isinstance(db, peewee.PostgresqlDatabase):
            quoted = ", ".join(f'"{table}"' for table in tables)
            db.execute_sql(f"TRUNCATE {quoted} CASCADE")
        else:
            with db.atomic():
                for model in reversed(ALL_MODELS):
                    if model not in kept:
                        model.delete().execute()
        with db.atomic():
            LmsTarget.delete().where(LmsTarget.id != 1).execute()
            LmsTarget.update(restricted=False, sync_unenrolled=True, chosen_cohorts=False).execute()
            Tenant.delete().where(Tenant.id != DEFAULT_TENANT).execute()
            Tenant.update(settings=None, disabled_at=None).execute()


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


@pytest.fixture
def transport() -> str:
    """How `scim` and `acme` reach the app: "flask", its test client in this process. A module
    that parametrises this fixture with "http" as well runs its tests over real HTTP too."""
    return "flask"


@pytest.fixture(scope="module")
def live_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], TwoTenants]]:
    """A live gunicorn with two tenants per database, started when a test of the module first
    asks for it and reused by the others; stopped by its process id when the module ends."""
    with servers_in(tmp_path_factory.mktemp("live")) as servers:
        started: dict[str, TwoTenants] = {}

        def site(backend: str) -> TwoTenants:
            if backend not in started:
                started[backend] = TwoTenants.launch(servers, backend)
            return started[backend]

        yield site


@pytest.fixture
def live_tenants(config: Config, live_sites: Callable[[str], TwoTenants]) -> TwoTenants:
    """The live server on the test's kind of database, both tenants emptied of users and groups
    (as a test's own clean database would be)."""
    backend = "postgres" if config.database_url.startswith("postgres") else "sqlite"
    tenants = live_sites(backend)
    empty_tenant(tenants.home)
    empty_tenant(tenants.acme)
    return tenants


@pytest.fixture
def scim(request: pytest.FixtureRequest, transport: str, config: Config) -> Scim:
    """A SCIM client of the default tenant (through `transport`; `config` names the database,
    and is asked for here so that every test using it runs on both)."""
    if transport == "http":
        return request.getfixturevalue("live_tenants").home
    return Scim(request.getfixturevalue("client"), request.getfixturevalue("token"))


@pytest.fixture
def scim_with(app: Flask, token: str) -> Callable[..., Scim]:
    """A client for an app built with some settings changed (same database)."""

    def make(**settings: Any) -> Scim:
        return Scim.of(app_with(app, **settings), token)

    return make


@pytest.fixture
def operator(app: Flask) -> str:
    """An /admin operator account (`OPERATOR`, `PASSWORD`)."""
    run(app, "operators", "create", OPERATOR, "--password", PASSWORD)
    return OPERATOR


@pytest.fixture
def signed_in(client: FlaskClient, operator: str) -> FlaskClient:
    """The test client, signed in to /admin as the operator."""
    response = sign_in(client)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The store's clock, to move forward (`Clock.advance`); back to real time after the test."""
    return Clock(monkeypatch)


@pytest.fixture
def acme_token(app: Flask) -> str:
    """A second tenant, `acme`, beside the default one, and its IdP's token."""
    run(app, "tenants", "create", "acme", "--name", "Acme Corp")
    return last_line(run(app, "tokens", "create", "acme-idp", "--tenant", "acme"))


@pytest.fixture
def acme(request: pytest.FixtureRequest, transport: str, config: Config) -> Scim:
    """A SCIM client of the second tenant, `acme`, on the plain base URL (through `transport`)."""
    if transport == "http":
        return request.getfixturevalue("live_tenants").acme
    return Scim(request.getfixturevalue("client"), request.getfixturevalue("acme_token"))
