"""Hostile input and abuse: bounded bodies, literal values in SQL, rate limits, the bad-token
brake, database failures as 503, and what operators see (`/readyz`, `/metrics`, request logs).
Every test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient
from playhouse.pool import MaxConnectionsExceeded
from playhouse.test_utils import count_queries

from app import auth, create_app, observability, runtime
from app.config import Config
from app.scim.request_checks import DISCARD_BYTES, nesting_exceeds
from app.store import db
from app.store.models import User
from scim_schemas import CORE_GROUP, PATCH_OP
from tests.helpers import (
    PG_DSN,
    Scim,
    app_with,
    assert_error,
    create_schema,
    create_user,
    drop_schema,
    postgres_or_skip,
    schema_url,
    user_body,
)

MIB = 1024 * 1024


def raw_post(scim: Scim, path: str, raw: bytes) -> Any:
    headers = {**scim.headers, "Content-Type": "application/scim+json"}
    return scim.client.post(f"/scim/v2{path}", data=raw, headers=headers)


# --------------------------------------------------------------------------------------------
# Bodies: nesting depth, unstorable text, list lengths


def test_a_body_nested_deeper_than_the_limit_is_refused_before_parsing(scim: Scim) -> None:
    deep = b'{"schemas": ' + b"[" * 33 + b"]" * 33 + b"}"
    error = assert_error(raw_post(scim, "/Users", deep), 400, "invalidSyntax")
    assert "deeper than 32" in error["detail"]
    huge = b"[" * 500_000 + b"]" * 500_000  # would be a RecursionError in json.loads
    assert_error(raw_post(scim, "/Users", huge), 400, "invalidSyntax")


def _chunked(scim: Scim, path: str, stream: io.BytesIO, **headers: str) -> Any:
    """A POST whose body has no Content-Length, as a server that de-chunks it passes it on
    (gunicorn sets `wsgi.input_terminated`)."""
    return scim.client.post(
        f"/scim/v2{path}",
        input_stream=stream,
        headers={**scim.headers, "Content-Type": "application/scim+json", **headers},
        # The test client measures the stream: its Content-Length is taken away again.
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )


def test_a_body_without_content_length_is_bounded_like_one_with(scim: Scim) -> None:
    """Valid JSON and 3 MiB of spaces (before: cut at 1 MiB, parsed, and the user created)."""
    body = json.dumps(user_body()).encode()
    stream = io.BytesIO(body + b" " * (3 * MIB))
    assert_error(_chunked(scim, "/Users", stream), 413)
    assert User.select().count() == 0
    assert stream.tell() == len(stream.getvalue())  # read to its end, so the client reads the 413
    assert _chunked(scim, "/Users", io.BytesIO(body + b" " * (MIB // 2))).status_code == 201


def test_what_is_left_of_a_body_is_discarded_up_to_a_bound(scim: Scim) -> None:
    """Whatever the answer, the rest of the body is read (the client then reads the answer),
    but no more than DISCARD_BYTES of it."""
    unread = io.BytesIO(b" " * (MIB // 2))
    assert_error(_chunked(Scim(scim.client, "lmsscim_guess"), "/Users", unread), 401)
    assert unread.tell() == len(unread.getvalue())
    endless = io.BytesIO(b" " * (MIB + DISCARD_BYTES + 4 * MIB))
    assert_error(_chunked(scim, "/Users", endless), 413)
    assert MIB + DISCARD_BYTES <= endless.tell() <= MIB + DISCARD_BYTES + 128 * 1024
    sized = scim.client.post(
        "/scim/v2/Users",
        data=b" " * (2 * MIB),
        headers={**scim.headers, "Content-Type": "application/scim+json"},
    )
    assert_error(sized, 413)  # refused on its Content-Length, before anything read it
    assert scim.client.post("/admin/login", data=b"x" * (2 * MIB)).status_code == 413


def test_brackets_inside_strings_do_not_count_as_nesting(scim: Scim) -> None:
    name = '[{"[[[\\' * 40 + '"]}'  # quotes and backslashes escaped in the JSON body
    assert create_user(scim, name, emails=[])["userName"] == name


@pytest.mark.parametrize(
    ("text", "limit", "deeper"),
    [
        (b"[]", 1, False),
        (b"[[]]", 1, True),
        (b'{"a": "[[[[[[", "b": [1, {"c": 2}]}', 3, False),
        (b'["\\"[[[[[\\\\", [[]]]', 3, False),
        (b'["\\"[[[[[\\\\", [[[]]]]', 3, True),
        (b"[" * 40, 32, True),
    ],
)
def test_nesting_exceeds_counts_only_structure(text: bytes, limit: int, deeper: bool) -> None:
    assert nesting_exceeds(text, limit) is deeper


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800", "\\udfff"])
def test_text_no_database_can_store_is_a_400(scim: Scim, escape: str) -> None:
    body = json.dumps(user_body()).replace("Alice", f"Al{escape}ice").encode()
    assert_error(raw_post(scim, "/Users", body), 400, "invalidValue")
    assert User.select().count() == 0


def test_a_valid_surrogate_pair_is_stored(scim: Scim) -> None:
    body = json.dumps(user_body()).replace("Alice", "Al\\ud83d\\ude00ice").encode()
    response = raw_post(scim, "/Users", body)
    assert response.status_code == 201
    assert response.get_json()["name"]["givenName"] == "Al\U0001f600ice"


def test_a_nul_in_an_id_is_a_404(scim: Scim) -> None:
    assert_error(scim.get("/Users/%00"), 404)
    assert_error(scim.delete("/Groups/ab%00cd"), 404)


def test_more_than_max_multi_values_e_mails_are_refused(scim: Scim) -> None:
    emails = [{"value": f"u{i}@example.com"} for i in range(101)]
    error = assert_error(scim.post("/Users", user_body(emails=emails)), 400, "invalidValue")
    assert "at most 100" in error["detail"]
    user = create_user(scim, emails=emails[:100])
    assert len(user["emails"]) == 100
    # Growing past the limit one PATCH at a time is refused too.
    add = {"op": "add", "path": "emails", "value": [{"value": "one-more@example.com"}]}
    patch = {"schemas": [PATCH_OP], "Operations": [add]}
    assert_error(scim.patch(f"/Users/{user['id']}", patch), 400, "invalidValue")


def test_more_than_max_members_per_operation_are_refused(scim: Scim) -> None:
    members = [{"value": uuid.uuid4().hex} for _ in range(1001)]
    group = {"schemas": [CORE_GROUP], "displayName": "big", "members": members}
    error = assert_error(scim.post("/Groups", group), 400, "invalidValue")
    assert "at most 1000" in error["detail"]
    created = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "big"})
    add = {"op": "add", "path": "members", "value": members}
    patch = {"schemas": [PATCH_OP], "Operations": [add]}
    assert_error(scim.patch(f"/Groups/{created.get_json()['id']}", patch), 400, "invalidValue")


def test_count_is_capped_and_floored(scim: Scim, app: Flask) -> None:
    create_user(scim)
    huge = scim.get("/Users?count=1000000000000").get_json()
    assert huge["itemsPerPage"] == 1
    assert scim.get("/Users?count=-5").get_json().get("Resources", []) == []
    assert runtime.of(app).config.max_page_size == 1000


# --------------------------------------------------------------------------------------------
# SQL injection: values are matched literally, names are refused


INJECTED_NAMES = [
    "o'brien@example.com",
    "x' OR '1'='1",
    'robert"); DROP TABLE lms_user; --',
    "100%_sure@example.com",
]


def _filter(scim: Scim, text: str) -> Any:
    return scim.get("/Users", query_string={"filter": text})


def test_filter_values_are_matched_literally(scim: Scim) -> None:
    for name in INJECTED_NAMES:
        create_user(scim, name, emails=[])
    create_user(scim, "plain@example.com", emails=[])
    for name in INJECTED_NAMES:
        quoted = json.dumps(name)
        found = _filter(scim, f"userName eq {quoted}").get_json()
        assert [r["userName"] for r in found["Resources"]] == [name]
    assert _filter(scim, "userName eq \"x' OR '1'='1' --\"").get_json()["totalResults"] == 0
    # LIKE wildcards in co/sw/ew are characters, not patterns.
    assert _filter(scim, 'userName co "%"').get_json()["totalResults"] == 1
    assert _filter(scim, 'userName co "%_"').get_json()["totalResults"] == 1
    assert _filter(scim, 'userName co "_"').get_json()["totalResults"] == 2  # and lms_user
    assert _filter(scim, 'userName sw "%"').get_json()["totalResults"] == 0
    assert User.select().count() == len(INJECTED_NAMES) + 1


@pytest.mark.parametrize(
    "text",
    [
        "userName) OR 1=1 --",
        'userName eq "a" OR 1=1',
        '"userName" eq "a"',
        "userName; DROP TABLE lms_user",
        'lms_user.user_name eq "a"',
        'userName eq "a" --',
    ],
)
def test_attribute_names_in_filters_are_refused(scim: Scim, text: str) -> None:
    assert_error(_filter(scim, text), 400, "invalidFilter")


@pytest.mark.parametrize(
    ("settings", "text"),
    [
        ({"filter_max_length": 30}, 'userName eq "' + "a" * 30 + '"'),
        ({"filter_max_nodes": 5}, " or ".join(f'userName eq "u{i}"' for i in range(4))),
        ({"filter_max_depth": 3}, "((((" + 'userName eq "x"' + "))))"),
    ],
)
def test_filter_limits_come_from_config(
    app: Flask, token: str, settings: dict[str, int], text: str
) -> None:
    limited = Scim.of(app_with(app, **settings), token)
    assert_error(limited.get("/Users", query_string={"filter": text}), 400, "invalidFilter")
    # The same filter is fine under the defaults.
    assert Scim.of(app, token).get("/Users", query_string={"filter": text}).status_code == 200


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("sortBy", "userName; DROP TABLE lms_user"),
        ("sortBy", "user_name"),
        ("sortBy", "userName desc"),
        ("sortBy", "(SELECT 1)"),
        ("attributes", "userName,(SELECT password_hash FROM lms_user)"),
        ("excludedAttributes", "id; DROP TABLE lms_user"),
        ("sortOrder", "descending; DROP TABLE lms_user"),
    ],
)
def test_names_in_sort_and_attributes_are_refused(scim: Scim, parameter: str, value: str) -> None:
    create_user(scim)
    assert_error(scim.get("/Users", query_string={parameter: value}), 400, "invalidValue")
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
    listed = value.split(",") if parameter.endswith("ttributes") else value
    assert_error(scim.post("/Users/.search", {**search, parameter: listed}), 400, "invalidValue")
    assert User.select().count() == 1


# --------------------------------------------------------------------------------------------
# Rate limits and the bad-token brake


def _assert_429(response: Any) -> None:
    assert_error(response, 429)
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_a_token_over_its_rate_gets_429_and_others_do_not(app: Flask, token: str) -> None:
    limited = app_with(app, rate_limit_per_token="3/minute")
    with limited.app_context():
        other = auth.issue("other-idp")
    first, second = Scim.of(limited, token), Scim.of(limited, other)
    for _ in range(3):
        assert first.get("/Users").status_code == 200
    _assert_429(first.get("/Users"))
    assert second.get("/Users").status_code == 200
    assert limited.test_client().get("/healthz").status_code == 200  # outside /scim: no limit


def test_an_address_over_its_rate_gets_429_whatever_the_token(app: Flask, token: str) -> None:
    limited = app_with(app, rate_limit_per_address="3/minute")
    with limited.app_context():
        other = auth.issue("other-idp")
    for secret in (token, other, token):
        assert Scim.of(limited, secret).get("/Users").status_code == 200
    _assert_429(Scim.of(limited, other).get("/Users"))
    away = Scim.of(limited, token).get("/Users", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert away.status_code == 200


def test_repeated_bad_tokens_slow_the_address_down(app: Flask, token: str) -> None:
    braked = app_with(app, bad_token_limit="3/minute")
    client = braked.test_client()
    for _ in range(5):  # no token at all is not a guess
        assert client.get("/scim/v2/Users").status_code == 401
    idp = Scim.of(braked, token)
    assert idp.get("/Users").status_code == 200  # the IdP at work, from the same address
    guesser = Scim.of(braked, f"lmsscim_{uuid.uuid4().hex}")
    for _ in range(3):
        assert_error(guesser.get("/Users"), 401)
    _assert_429(guesser.get("/Users"))
    _assert_429(client.get("/scim/v2/Users"))  # braked, no token is no better than a guess
    # The IdP behind the same NAT goes on working, from the cache…
    assert idp.get("/Users").status_code == 200
    # …and once its token has left the cache (TOKEN_CACHE_SECONDS later, or in another worker).
    runtime.of(braked).tokens.clear()
    assert idp.get("/Users").status_code == 200
    # Other addresses are served as ever.
    elsewhere = Scim.of(braked, token).get("/Users", environ_base={"REMOTE_ADDR": "192.0.2.8"})
    assert elsewhere.status_code == 200


def _token_lookups(counted: count_queries) -> int:
    """SELECTs on the token table among the counted queries."""
    queries = [record.msg[0] for record in counted.get_queries()]
    return sum('"api_token"' in sql and sql.lstrip().startswith("SELECT") for sql in queries)


def test_under_the_brake_a_token_is_looked_up_once_and_only_a_valid_one_served(
    app: Flask, token: str
) -> None:
    """The brake refuses invalid tokens, never valid ones: an uncached token costs the one
    indexed lookup it always costs (not one for the brake and one for the endpoint)."""
    braked = app_with(app, bad_token_limit="1/minute", token_cache_seconds=0)
    guesser = Scim.of(braked, "lmsscim_guess")
    assert_error(guesser.get("/ServiceProviderConfig"), 401)
    with count_queries() as counted:
        _assert_429(guesser.get("/ServiceProviderConfig"))
    assert _token_lookups(counted) == 1
    with count_queries() as counted:
        assert Scim.of(braked, token).get("/ServiceProviderConfig").status_code == 200
    assert _token_lookups(counted) == 1
    with braked.app_context():
        expiring = auth.issue("expiring-idp", expires_in=dt.timedelta(seconds=-1))
        read_only = auth.issue("reader", read_only=True)
    _assert_429(Scim.of(braked, expiring).get("/Users"))  # an expired token is no token
    assert Scim.of(braked, read_only).get("/Users").status_code == 200
    assert_error(Scim.of(braked, read_only).post("/Users", user_body()), 403)


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(app: Flask, token: str) -> None:
    braked = app_with(app, bad_token_limit="2/minute", trusted_proxy_hops=1)
    guesser = Scim.of(braked, "lmsscim_guess")
    for _ in range(2):
        guesser.get("/Users", headers={"X-Forwarded-For": "198.51.100.1"})
    _assert_429(guesser.get("/Users", headers={"X-Forwarded-For": "198.51.100.1"}))
    ok = Scim.of(braked, token).get("/Users", headers={"X-Forwarded-For": "198.51.100.2"})
    assert ok.status_code == 200


def test_instances_share_limits_through_redis(app: Flask, token: str) -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("Redis unreachable at 127.0.0.1:6379")
    settings = {
        "rate_limit_per_token": "3/minute",
        "ratelimit_storage_uri": "redis://127.0.0.1:6379",
    }
    one, two = app_with(app, **settings), app_with(app, **settings)
    # A fresh token: its bucket in the shared storage is its own.
    with one.app_context():
        fresh = auth.issue(f"shared-{uuid.uuid4().hex[:6]}")
    assert Scim.of(one, fresh).get("/Users").status_code == 200
    assert Scim.of(two, fresh).get("/Users").status_code == 200
    assert Scim.of(one, fresh).get("/Users").status_code == 200
    _assert_429(Scim.of(two, fresh).get("/Users"))


def test_an_unreachable_rate_limit_storage_lets_requests_through(app: Flask, token: str) -> None:
    broken = app_with(app, ratelimit_storage_uri="redis://127.0.0.1:1")
    assert Scim.of(broken, token).get("/Users").status_code == 200


# --------------------------------------------------------------------------------------------
# Database failures


def _refused() -> Exception:
    """What psycopg2 raises when PostgreSQL does not accept the connection."""
    psycopg2 = pytest.importorskip("psycopg2")
    return psycopg2.OperationalError(
        'connection to server at "127.0.0.1", port 5432 failed: Connection refused\n'
        "\tIs the server running on that host and accepting TCP/IP connections?\n"
    )


def _sqlite_error(kind: str, folder: Path) -> sqlite3.Error:
    """A real sqlite3 error (its `sqlite_errorname` is set by SQLite itself)."""
    try:
        if kind == "cantopen":
            sqlite3.connect(folder / "no-such-folder" / "x.db").execute("SELECT 1")
        elif kind == "busy":
            holder = sqlite3.connect(folder / "busy.db", isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                sqlite3.connect(folder / "busy.db", timeout=0).execute("BEGIN IMMEDIATE")
            finally:
                holder.close()
        else:
            sqlite3.connect(":memory:").execute("SELECT * FROM missing")
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"no sqlite3 error for {kind}")


def _canceled_statement() -> peewee.OperationalError:
    """A real statement timeout on PostgreSQL (psycopg2's QueryCanceled, SQLSTATE 57014)."""
    try:
        with db.database.atomic():
            db.database.execute_sql("SET LOCAL statement_timeout = 1")
            db.database.execute_sql("SELECT pg_sleep(1)")
    except peewee.OperationalError as exc:
        return exc
    raise AssertionError("pg_sleep(1) outlived a 1 ms statement timeout")


def _wrapped(kind: type[peewee.PeeweeException], driver: BaseException) -> Exception:
    """The exception peewee raises for a driver's (the driver's is its first argument)."""
    return kind(driver, *driver.args)


def _outage(name: str, folder: Path) -> tuple[BaseException, str]:
    """An exception that means "the database cannot be reached now", and the words of its cause
    that the log line must carry."""
    psycopg2 = pytest.importorskip("psycopg2")
    if name == "pool-exhausted":
        return MaxConnectionsExceeded(
            "Max connections exceeded, timed out attempting to connect."
        ), "Max connections exceeded"
    if name == "postgres-refused":
        return _wrapped(peewee.OperationalError, _refused()), "Connection refused"
    if name == "postgres-dropped":
        dropped = psycopg2.InterfaceError("connection already closed")
        return _wrapped(peewee.InterfaceError, dropped), "connection already closed"
    if name == "psycopg2-operational":  # a cursor on a connection the server dropped
        return psycopg2.OperationalError(
            "server closed the connection unexpectedly"
        ), "server closed"
    if name == "psycopg2-interface":
        return psycopg2.InterfaceError("connection already closed"), "connection already closed"
    if name == "sqlite-cantopen":
        return _wrapped(
            peewee.OperationalError, _sqlite_error("cantopen", folder)
        ), "unable to open"
    return _wrapped(peewee.OperationalError, _sqlite_error("busy", folder)), "database is locked"


OUTAGES = [
    "pool-exhausted",
    "postgres-refused",
    "postgres-dropped",
    "psycopg2-operational",
    "psycopg2-interface",
    "sqlite-cantopen",
    "sqlite-busy",
]


@pytest.mark.parametrize("name", OUTAGES)
def test_an_unreachable_database_is_a_503_with_retry_after_and_the_cause_in_the_log(
    scim: Scim,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    name: str,
) -> None:
    failure, cause = _outage(name, tmp_path)
    user = create_user(scim)
    kind = type(failure).__name__
    before = _metric(scim.client, "lms_scim_database_errors_total", kind=kind)

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr("app.store.users._read", fail)  # the GET's one read
    caplog.set_level(logging.WARNING, logger="app.errors")
    response = scim.get(f"/Users/{user['id']}")
    error = assert_error(response, 503)
    assert "retry" in error["detail"]
    assert cause not in error["detail"]  # nothing internal leaks to the client…
    assert response.headers["Retry-After"] == "5"
    assert _metric(scim.client, "lms_scim_database_errors_total", kind=kind) == before + 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == "app.errors"]
    assert cause in line  # …but the operator reads what happened


@pytest.mark.parametrize(
    "name", ["sqlite-no-such-table", "peewee-unbound", "postgres-query-canceled"]
)
def test_a_database_error_that_is_no_outage_is_a_500_not_a_503(
    scim: Scim, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """503 tells the IdP to retry; a bug or a broken schema would be retried for ever."""
    if name == "sqlite-no-such-table":
        failure: BaseException = _wrapped(peewee.OperationalError, _sqlite_error("missing", Path()))
    elif name == "peewee-unbound":
        failure = peewee.InterfaceError("Query must be bound to a database in order to execute.")
    else:
        if not db.is_postgres():
            pytest.skip("a statement timeout is PostgreSQL's")
        failure = _canceled_statement()
    user = create_user(scim)

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr("app.store.users._read", fail)  # the GET's one read
    caplog.set_level(logging.WARNING, logger="app.errors")
    error = assert_error(scim.get(f"/Users/{user['id']}"), 500)
    assert error["detail"] == "Internal error."
    (record,) = [r for r in caplog.records if r.name == "app.errors"]
    assert record.exc_info is not None  # the whole traceback, for the bug report


def _serialization_failure(user_id: str) -> peewee.OperationalError:
    """A real SQLSTATE 40001: a REPEATABLE READ transaction updates a row that another session
    changed after its snapshot."""
    psycopg2 = pytest.importorskip("psycopg2")
    schema = db.database.execute_sql("SELECT current_schema()").fetchone()[0]
    other = psycopg2.connect(PG_DSN, options=f"-csearch_path={schema}")
    other.autocommit = True
    bump = "UPDATE lms_user SET version = version + 1 WHERE id = %s"
    try:
        with db.database.atomic():
            db.database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            db.database.execute_sql("SELECT version FROM lms_user WHERE id = %s", (user_id,))
            with other.cursor() as cursor:
                cursor.execute(bump, (user_id,))
            db.database.execute_sql(bump, (user_id,))
    except peewee.OperationalError as exc:
        return exc
    finally:
        other.close()
    raise AssertionError("the second update went through")


def test_a_transaction_the_server_rolled_back_for_a_concurrent_one_is_a_503(
    scim: Scim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serialization failure or deadlock: the same request sent again completes, so the IdP
    is told to retry (503 with Retry-After), not that the service is broken (500)."""
    if not db.is_postgres():
        pytest.skip("serialization failures are PostgreSQL's")
    user = create_user(scim)
    failure = _serialization_failure(user["id"])

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr("app.store.users._read", fail)  # the GET's one read
    response = scim.get(f"/Users/{user['id']}")
    assert_error(response, 503)
    assert response.headers["Retry-After"]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_database_that_cannot_be_reached_is_a_503_and_the_log_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    """Real failures, not imitations: a PostgreSQL port nobody listens on, a SQLite file that
    cannot be opened (its path is a folder). The token lookup is the first query that fails."""
    if backend == "postgres":
        postgres_or_skip().close()
        url, cause = "postgresql://postgres@127.0.0.1:1/test", "Connection refused"
    else:
        (tmp_path / "a-folder.db").mkdir()
        url, cause = f"sqlite:///{tmp_path / 'a-folder.db'}", "unable to open database file"
    app = create_app(Config.from_env({}, database_url=url, testing=True, db_connect_timeout=2))
    caplog.set_level(logging.WARNING, logger="app.errors")
    response = Scim.of(app, "lmsscim_whatever").get("/Users")
    assert_error(response, 503)
    assert any(cause in r.getMessage() for r in caplog.records if r.name == "app.errors")
    assert app.test_client().get("/readyz").status_code == 503


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_database_never_migrated_is_a_500_not_a_503(tmp_path: Path, backend: str) -> None:
    """A missing table is no outage: retrying will not create it (before, SQLite said 503)."""
    if backend == "postgres":
        conn = postgres_or_skip()
        schema = create_schema(conn, "lms_scim_unmigrated")
        url = schema_url(schema)
    else:
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    try:
        app = create_app(Config.from_env({}, database_url=url, testing=True))
        assert_error(Scim.of(app, "lmsscim_whatever").get("/Users"), 500)
    finally:
        if backend == "postgres":
            db.database.obj.close_all()
            drop_schema(conn, schema)
            conn.close()


def test_a_database_outage_under_the_brake_is_a_503_not_a_pass(
    app: Flask, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    braked = app_with(app, bad_token_limit="1/minute", token_cache_seconds=0)
    assert_error(Scim.of(braked, "lmsscim_guess").get("/Users"), 401)

    def down(_digest: str) -> None:
        raise _wrapped(peewee.OperationalError, _refused())

    monkeypatch.setattr("app.store.tokens.find_by_hash", down)
    assert_error(Scim.of(braked, token).get("/Users"), 503)


def test_readyz_reports_the_database(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.get("/readyz").status_code == 200

    def down() -> None:
        raise _wrapped(peewee.OperationalError, _refused())

    monkeypatch.setattr(db, "ping", down)
    caplog.set_level(logging.WARNING, logger="app.observability")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert any("Connection refused" in r.getMessage() for r in caplog.records)
    assert client.get("/healthz").status_code == 200  # the process is alive all the same


def test_the_pool_is_sized_from_the_configuration() -> None:
    url = "postgresql://nobody@127.0.0.1:9/nothing"  # never connected to
    default = db.make_database(Config(database_url=url))
    assert default._max_connections == Config().web_threads + 2  # type: ignore[attr-defined]
    sized = db.make_database(Config(database_url=url, db_pool_size=11, db_pool_timeout=2.5))
    assert sized._max_connections == 11  # type: ignore[attr-defined]
    assert sized._wait_timeout == 2.5  # type: ignore[attr-defined]
    assert sized.connect_params["connect_timeout"] == Config().db_connect_timeout


# --------------------------------------------------------------------------------------------
# What operators see


def _metric(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_requests_by_route_template_and_provisioning_writes(
    scim: Scim, app: Flask
) -> None:
    client = scim.client
    route = app.url_map.bind("localhost").match("/scim/v2/Users/x", return_rule=True)[0].rule
    reads = _metric(client, "lms_scim_http_requests_total", route=route, status="200")
    creates = _metric(
        client, "lms_scim_provisioning_operations_total", resource="User", operation="create"
    )
    user = create_user(scim)
    scim.get(f"/Users/{user['id']}")
    scim.get("/Users/no-such-id")
    assert _metric(client, "lms_scim_http_requests_total", route=route, status="200") == reads + 1
    after = _metric(
        client, "lms_scim_provisioning_operations_total", resource="User", operation="create"
    )
    assert after == creates + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "no-such-id" not in text  # ids never become label values
    assert "lms_scim_http_request_duration_seconds_bucket" in text


def test_metrics_are_for_loopback_or_the_metrics_token(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 403
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"}).status_code == 403
    guarded = app_with(app, metrics_token="metrics-secret-for-tests").test_client()
    assert guarded.get("/metrics").status_code == 403
    assert guarded.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 403
    remote = {"REMOTE_ADDR": "203.0.113.5"}
    allowed = guarded.get(
        "/metrics",
        headers={"Authorization": "Bearer metrics-secret-for-tests"},
        environ_base=remote,
    )
    assert allowed.status_code == 200


def test_junk_methods_and_paths_cannot_grow_the_metrics(app: Flask) -> None:
    """Label values come from a fixed set: a method the service does not serve counts as
    `other`, every unknown path as `<unmatched>`, so junk requests add no series."""
    client = app.test_client()
    before = _metric(client, "lms_scim_http_requests_total", method="other")
    for number in range(20):
        client.open(f"/junk-{number}", method=f"JUNK{number}")
        client.open(f"/scim/v2/Junk-{number}", method="BREW")
        client.get(f"/nothing/here/{number}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "JUNK" not in text
    assert "BREW" not in text
    assert "junk-" not in text.lower()
    assert "/nothing/here" not in text
    assert _metric(client, "lms_scim_http_requests_total", method="other") == before + 40
    assert _metric(client, "lms_scim_http_requests_total", method="GET", route="<unmatched>") >= 20
    methods = {match for match in re.findall(r'method="([^"]*)"', text)}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_x_forwarded_for_without_trusted_proxy_hops_is_warned_about_once(
    app: Flask, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a proxy with TRUSTED_PROXY_HOPS=0 every client has the proxy's address, so one
    guesser brakes everyone's: the operator is told, once per process (one app per worker)."""
    caplog.set_level(logging.WARNING, logger="app.ratelimit")
    relayed = {"X-Forwarded-For": "198.51.100.7"}
    idp = Scim.of(app, token)
    for _ in range(3):
        assert idp.get("/Users", headers=relayed).status_code == 200
    assert app.test_client().get("/healthz", headers=relayed).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.name == "app.ratelimit"]
    assert len(warnings) == 1, warnings
    assert "TRUSTED_PROXY_HOPS" in warnings[0]
    caplog.clear()
    trusting = app_with(app, trusted_proxy_hops=1)
    assert Scim.of(trusting, token).get("/Users", headers=relayed).status_code == 200
    quiet = app_with(app)
    assert Scim.of(quiet, token).get("/Users").status_code == 200  # no proxy, nothing to say
    assert [r for r in caplog.records if r.name == "app.ratelimit"] == []


def test_each_request_is_one_structured_log_line(
    scim: Scim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lms_scim.request")
    response = scim.get("/Users?filter=userName%20eq%20%22x%22", headers={"X-Request-Id": "r-1"})
    assert response.headers["X-Request-Id"] == "r-1"
    (record,) = [r for r in caplog.records if r.name == "lms_scim.request"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["request_id"] == "r-1"
    assert fields["route"] == "/scim/v2/Users"
    assert fields["status"] == 200
    assert fields["token"] == "test-idp"
    assert fields["duration_ms"] >= 0
    line = json.loads(observability.JsonFormatter().format(record))
    assert line["request_id"] == "r-1"
    assert "filter" not in json.dumps(line)  # no query strings: they carry personal data


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer lmsscim_abcDEF-123_x", "Authorization: Bearer [redacted]"),
        ("token lmsscim_abcDEF-123_x leaked", "token lmsscim_[redacted] leaked"),
        ('{"password": "hunter2", "userName": "a"}', '{"password": [redacted], "userName": "a"}'),
        ("password=hunter2 next", "password=[redacted] next"),
        ("('$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 1)", "('$argon2[redacted]', 1)"),
        ("Basic dXNlcjpwYXNz", "Basic [redacted]"),
    ],
)
def test_redact_blanks_secrets(text: str, kept: str) -> None:
    assert observability.redact(text) == kept


def test_the_openapi_document_is_served_with_the_token(scim: Scim, client: FlaskClient) -> None:
    assert_error(client.get("/scim/v2/openapi.json"), 401)
    response = scim.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    schemas = document["components"]["schemas"]
    assert "userName" in schemas["UserRequest"]["required"]
    assert "password" in schemas["UserRequest"]["properties"]
    assert "password" not in schemas["User"]["properties"]  # returned: never
    assert "id" not in schemas["UserRequest"]["properties"]  # readOnly
    assert "id" in schemas["User"]["required"]  # returned: always
    assert set(document["paths"]) >= {"/Users", "/Users/{id}", "/Groups/{id}", "/Schemas"}


def test_a_connection_that_cannot_go_back_to_the_pool_is_dropped(app: Flask) -> None:
    if not db.is_postgres():
        pytest.skip("the pool is PostgreSQL's")
    pool = db.database.obj
    transaction = pool.atomic()
    transaction.__enter__()  # a request that left its transaction open
    pool.execute_sql("SELECT 1")
    db.release()  # closing would raise "transaction is open": the connection is dropped
    assert pool.is_closed()
    assert pool.execute_sql("SELECT 2").fetchone() == (2,)  # a fresh one, not the dropped one
    db.release()
