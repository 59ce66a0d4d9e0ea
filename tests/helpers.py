"""Plain helpers shared by the test modules: no fixtures here (they live in the conftest.py files),
and no test module imports from another test module — what two of them need is here.

- PostgreSQL: the server the tests use, private schemas made and dropped; the store's database
  proxy pointed elsewhere for a while (`bound_database`);
- SCIM through Flask's test client (`Scim`), apps with settings changed (`app_with`), bearer
  tokens tried (`status_of`), SCIM errors checked (`assert_error`), cursors broken
  (`tampered_cursors`);
- request bodies (`user_body`, `group_body`, `members`, `patch_body`) and the requests the tests
  make again and again (`create_user`, `create_group`, `patch_ok`, `empty_tenant`, `deactivate`);
- the store directly (`bulk_users`, `bulk_members`, `stored_members`) and threads (`in_threads`);
- the `lms-scim` commands through Flask's CLI runner (`invoke`, `run`, `last_line`);
- `/admin` sign-in (`OPERATOR`, `PASSWORD`, `csrf`, `sign_in`, `sign_out`), and time moved on
  (`Clock`);
- property tests through the API (`api_examples`);
- synthetic schema attributes (`attribute`, `SCORES`): the schemas have no numbers, for one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import MappingProxyType, SimpleNamespace
from typing import Any

import hypothesis
import jwt
import peewee
import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from app import auth, create_app, runtime
from app.oauth.access_tokens import LEEWAY_SECONDS
from app.store import models
from app.store.db import database
from app.store.models import Membership, User, utcnow
from scim_schemas import CORE_GROUP, CORE_USER, ERROR, PATCH_OP, Attribute

# -- PostgreSQL --------------------------------------------------------------------------------

PG_DSN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def connect_postgres() -> Any | None:
    """An autocommit connection to PG_DSN, or None when the server is unreachable — unless
    REQUIRE_POSTGRES=1 (set by .ci/run), where an unreachable server fails the test."""
    try:
        import psycopg2

        conn = psycopg2.connect(PG_DSN, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable at {PG_DSN}: {exc}")
        return None
    conn.autocommit = True
    return conn


def postgres_or_skip(what: str = "PostgreSQL tests") -> Any:
    """`connect_postgres()`, skipping the test loudly when the server is unreachable."""
    conn = connect_postgres()
    if conn is None:
        pytest.skip(f"PostgreSQL unreachable at {PG_DSN}: {what} SKIPPED")
    return conn


def create_schema(conn: Any, prefix: str) -> str:
    """A new, empty schema `<prefix>_<pid>_<random>` in the `test` database."""
    schema = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    return schema


def drop_schema(conn: Any, schema: str) -> None:
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def schema_url(schema: str) -> str:
    """The DATABASE_URL of a schema: PG_DSN with that schema as the search path."""
    return f"{PG_DSN}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def bound_database(db: peewee.Database) -> Iterator[peewee.Database]:
    """Point the store's database proxy at `db` meanwhile, then back (unit tests that need a
    database of their own, or only its SQL dialect)."""
    previous = database.obj
    database.initialize(db)
    try:
        yield db
    finally:
        database.initialize(previous)


# -- SCIM through Flask's test client ---------------------------------------------------------


class Scim:
    """A test client that speaks SCIM: bearer token, SCIM media type, base path. `client` is
    Flask's test client, or anything with its `open` (tests/e2e/live.py's `HttpClient`, which
    speaks to a live server)."""

    def __init__(self, client: FlaskClient | Any, token: str, base: str = "/scim/v2"):
        self.client = client
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json"}

    @classmethod
    def of(cls, app: Flask, token: str) -> Scim:
        """A client of its own for `app` (another app, or another thread)."""
        return cls(app.test_client(), token)

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["json"] = body
            headers.setdefault("Content-Type", "application/scim+json")
        url = path if path.startswith(("/scim/", "/t/", "/healthz")) else f"{self.base}{path}"
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


def app_with(app: Flask, **settings: Any) -> Flask:
    """Another app on the test's (migrated, clean) database with some settings changed."""
    return create_app(replace(runtime.of(app).config, **settings))


def status_of(
    client: FlaskClient, secret: str, method: str = "GET", path: str = "/Users", **kw: Any
) -> int:
    """The status of one SCIM request made with the bearer token `secret`."""
    headers = {"Authorization": f"Bearer {secret}", **kw.pop("headers", {})}
    return client.open(f"/scim/v2{path}", method=method, headers=headers, **kw).status_code


def assert_error(response: Any, status: int, scim_type: str | None = None) -> dict[str, Any]:
    """A SCIM error response (RFC 7644 §3.12) with this status and scimType (None: none)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/scim+json"
    body = response.get_json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    return body


def tampered_cursors(cursor: str) -> list[str]:
    """Cursors that must all be refused as `invalidCursor`: `cursor` edited in every way a
    client could, and garbage (not the empty cursor, which asks for the first page)."""
    payload, mac = cursor.split(".")
    flipped = "B" if payload[5] != "B" else "C"
    return [
        payload[:5] + flipped + payload[6:] + "." + mac,  # one character of the position
        payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"),  # one of the MAC
        payload + "x." + mac,
        payload + "." + mac + "x",
        payload,  # no MAC
        payload + ".",
        "." + mac,  # no payload
        mac + "." + payload,
        cursor + "." + mac,
        cursor.upper(),
        " " + cursor,
        cursor + "\n",
        cursor.replace(".", "%2E"),
        ".",
        "..",
        "garbage",
        "no.way",
        "é.é",
        "a" * 5000,
        "a" * 5000 + "." + "b" * 43,
    ]


# -- request bodies ----------------------------------------------------------------------------


def user_body(user_name: str = "alice@example.com", **extra: Any) -> dict[str, Any]:
    body = {
        "schemas": [CORE_USER],
        "userName": user_name,
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": True,
    }
    body.update(extra)
    return body


def group_body(name: str = "Physics 101", **extra: Any) -> dict[str, Any]:
    return {"schemas": [CORE_GROUP], "displayName": name, **extra}


def members(*ids: str) -> list[dict[str, str]]:
    return [{"value": i} for i in ids]


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


# -- requests the tests make again and again ---------------------------------------------------


def create_user(scim: Any, user_name: str = "alice@example.com", **extra: Any) -> dict[str, Any]:
    response = scim.post("/Users", user_body(user_name, **extra))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def create_group(
    scim: Any, name: str = "Physics 101", *member_ids: str, **extra: Any
) -> dict[str, Any]:
    """POST /Groups; `member_ids` become `members` (or pass `members=` yourself)."""
    if member_ids:
        extra["members"] = members(*member_ids)
    response = scim.post("/Groups", group_body(name, **extra))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def patch_ok(scim: Any, path: str, *operations: dict[str, Any]) -> Any:
    """PATCH that must succeed (200 with the resource, or 204)."""
    response = scim.patch(path, patch_body(*operations))
    assert response.status_code in (200, 204), response.get_data(as_text=True)
    return response


def empty_tenant(scim: Any) -> None:
    """DELETE every group and user the client's token can list (its tenant's)."""

    def listed(kind: str) -> list[dict[str, Any]] | None:
        return scim.get(f"/{kind}", query_string={"attributes": "id"}).get_json().get("Resources")

    for kind in ("Groups", "Users"):
        while resources := listed(kind):
            for resource in resources:
                deleted = scim.delete(f"/{kind}/{resource['id']}")
                assert deleted.status_code == 204, deleted.get_data(as_text=True)


def deactivate(scim: Any, user_id: str) -> None:
    """`active: false` as Okta sends it, with a request id the audit trail keeps."""
    body = patch_body({"op": "replace", "path": "active", "value": False})
    response = scim.patch(f"/Users/{user_id}", body, headers={"X-Request-Id": "req-deactivate-1"})
    assert response.status_code == 200, response.get_json()


# -- the store directly, and threads -----------------------------------------------------------


def bulk_users(count: int, prefix: str = "bulk") -> list[str]:
    """Users inserted straight into the store (fast set-up for big groups)."""
    now = utcnow()
    rows = [
        {
            "id": f"{prefix}{i:08d}",
            "user_name": f"{prefix}{i}",
            "user_name_key": f"{prefix}{i}",
            "created": now,
            "last_modified": now,
        }
        for i in range(count)
    ]
    with database.atomic():
        for start in range(0, count, 500):
            User.insert_many(rows[start : start + 500]).execute()
    return [row["id"] for row in rows]


def bulk_members(group_id: str, user_ids: list[str]) -> None:
    with database.atomic():
        for start in range(0, len(user_ids), 500):
            rows = [{"group": group_id, "user": u} for u in user_ids[start : start + 500]]
            Membership.insert_many(rows).execute()


def stored_members(group_id: str) -> set[str]:
    """The ids of a group's members, read from the store (not through the API)."""
    rows = Membership.select(Membership.user).where(Membership.group == group_id).tuples()
    return {user_id for (user_id,) in rows}


def in_threads(app: Flask, work: list[Callable[[Scim], None]], token: str) -> list[BaseException]:
    """Run each job in a thread of its own with a client of its own, released together by a
    barrier; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work))

    def run_job(job: Callable[[Scim], None]) -> None:
        try:
            client = Scim.of(app, token)
            barrier.wait()
            job(client)
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)
        finally:
            if not database.is_closed():
                database.close()

    threads = [threading.Thread(target=run_job, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


# -- the lms-scim commands ---------------------------------------------------------------------


def invoke(app: Flask, *args: str) -> Result:
    # The console script's FlaskGroup pushes an app context for every command; the test runner
    # invokes `app.cli` directly, which does not, and `tokens bootstrap` reads `current_app`.
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def feed(app: Flask, text: str, *args: str) -> Result:
    """A command with `text` on its stdin."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args), input=text)


def run(app: Flask, *args: str) -> Result:
    """`invoke`, failing the test unless the command exits with 0."""
    result = invoke(app, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def last_line(result: Result) -> str:
    lines = result.stdout.strip().splitlines()
    assert lines, f"nothing on stdout: {result.output!r}"
    return lines[-1]


# -- /admin ------------------------------------------------------------------------------------

OPERATOR = "olivia"
PASSWORD = "a long operator password"


def csrf(client: FlaskClient, path: str = "/admin/login") -> str:
    """The CSRF token of the form on an /admin page."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match[1]


def sign_in(client: FlaskClient, name: str = OPERATOR, password: str = PASSWORD) -> Any:
    token = csrf(client)
    return client.post("/admin/login", data={"csrf": token, "name": name, "password": password})


def sign_out(client: FlaskClient) -> Any:
    return client.post("/admin/logout", data={"csrf": csrf(client, "/admin/")})


class Clock:
    """Moves the store's clock forward: `app.store.models.utcnow`, which every stored timestamp
    and every expiry check reads, answers `offset` later than the real time (the cookie's own
    signature keeps the real time, as a browser's cookie would)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = dt.timedelta()
        clock = self

        class Shifted(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
                return dt.datetime.now(tz) + clock.offset

        monkeypatch.setattr(models, "dt", SimpleNamespace(datetime=Shifted, UTC=dt.UTC))

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


# -- property tests through the API -----------------------------------------------------------


def api_examples(count: int) -> hypothesis.settings:
    """Hypothesis settings for a property checked through the API inside one test: `count`
    reproducible examples, no deadline, on the test's own (function-scoped) app."""
    return hypothesis.settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        suppress_health_check=[
            hypothesis.HealthCheck.function_scoped_fixture,
            hypothesis.HealthCheck.too_slow,
        ],
    )


# -- synthetic schema attributes ---------------------------------------------------------------


def attribute(
    name: str,
    kind: str = "string",
    *,
    parent: str | None = None,
    schema: str = CORE_USER,
    subs: tuple[Attribute, ...] = (),
    **settings: Any,
) -> Attribute:
    """An attribute definition the schema files do not have (RFC 7643 §2.2 defaults)."""
    defaults: dict[str, Any] = {
        "multi_valued": False,
        "required": False,
        "case_exact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    }
    return Attribute(
        name=name,
        type=kind,
        schema=schema,
        parent=parent,
        sub_attributes=MappingProxyType({sub.name.casefold(): sub for sub in subs}),
        **{**defaults, **settings},
    )


# A multi-valued complex attribute with a sub-attribute of every SCIM type (the User schema has
# no numbers): filters and values of each type are tested on it.
SCORES = attribute(
    "scores",
    "complex",
    multi_valued=True,
    subs=(
        attribute("count", "integer", parent="scores"),
        attribute("ratio", "decimal", parent="scores"),
        attribute("flag", "boolean", parent="scores"),
        attribute("blob", "binary", parent="scores", case_exact=True),
        attribute("at", "dateTime", parent="scores"),
        attribute("label", "string", parent="scores"),
    ),
)


COMMAND_HINT = re.compile(r'<(code|span class="mono")>(.*?)</(?:code|span)>', re.DOTALL)


def command_hints(page: str) -> list[str]:
    """The `lms-scim` commands an /admin page shows (in `<code>` or a `.mono` span), each checked
    to be written as it runs from a fresh clone (`.venv/bin/lms-scim …`, as in the README)."""
    hints = [hint for _, hint in COMMAND_HINT.findall(page) if "lms-scim" in hint]
    bare = [hint for hint in hints if not hint.startswith(".venv/bin/lms-scim ")]
    assert not bare, bare
    return hints


def cached_path_clock(monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    """Move only the clock a cached token's expiry is checked against (`app.auth.utcnow`) to
    the epoch second `moment`: a fresh verification (pyjwt's clock) still sees the real time."""
    at = dt.datetime.fromtimestamp(moment, dt.UTC).replace(tzinfo=None)
    monkeypatch.setattr(auth, "utcnow", lambda: at)


def after_cached_expiry(scim: Scim, token: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """GET /Users with `token` once it was verified (so cached by its hash) and the cached
    path's clock is past its `exp` plus the leeway; a second verification would accept it."""
    assert scim.get("/Users").status_code == 200
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    cached_path_clock(monkeypatch, exp + LEEWAY_SECONDS + 1)
    return scim.get("/Users")
