"""PostgreSQL statements the service sends again and again are prepared on the server once per
connection (`app.store.db.CheckedPool`): the same rows and errors as sending the SQL, a
statement PostgreSQL cannot prepare is sent as it is (inside a transaction too), a connection
keeps a bounded number, and `DB_SERVER_PREPARED=false` prepares none. And a transaction's
BEGIN goes with its first statement."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import peewee
import pytest
from flask import Flask
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS

from app import runtime
from app.store import db
from app.store.db import CheckedPool, make_database, numbered
from tests.helpers import Scim, create_user


def test_placeholders_are_numbered_and_escaped_percents_unescaped() -> None:
    sql = 'SELECT "a" FROM "t" WHERE "b" = %s AND "c" LIKE \'x%%\' AND "d" IN (%s, %s)'
    expected = 'SELECT "a" FROM "t" WHERE "b" = $1 AND "c" LIKE \'x%\' AND "d" IN ($2, $3)'
    assert numbered(sql) == expected


@pytest.fixture
def pool(app: Flask) -> Iterator[CheckedPool]:
    """A pool of its own on the test's PostgreSQL schema (the app's is shared by URL)."""
    if not db.is_postgres():
        pytest.skip("server-side prepared statements are PostgreSQL's")
    made = make_database(runtime.of(app).config)
    assert isinstance(made, CheckedPool)
    yield made
    made.close_all()


def _prepared(pool: CheckedPool) -> set[str]:
    """The statements this session has prepared (as PostgreSQL lists them)."""
    rows = peewee.PostgresqlDatabase.execute_sql(
        pool, "SELECT statement FROM pg_prepared_statements"
    )
    return {statement for (statement,) in rows.fetchall()}


SQL = 'SELECT "user_name" FROM "lms_user" WHERE "user_name" = %s'


def test_a_statement_sent_twice_is_prepared_and_answers_the_same(
    pool: CheckedPool, scim: Scim
) -> None:
    create_user(scim, "ann@example.com")
    with pool.connection_context():
        first = pool.execute_sql(SQL, ["ann@example.com"]).fetchall()
        assert _prepared(pool) == set()  # the first time may be a one-off
        second = pool.execute_sql(SQL, ["ann@example.com"]).fetchall()
        third = pool.execute_sql(SQL, ["nobody@example.com"]).fetchall()
        (statement,) = _prepared(pool)
    assert first == second == [("ann@example.com",)]
    assert third == []
    assert numbered(SQL) in statement


def test_errors_are_the_same_through_a_prepared_statement(pool: CheckedPool, scim: Scim) -> None:
    ann = create_user(scim, "ann@example.com")["id"]
    insert = (
        'INSERT INTO "user_value" ("tenant_id", "user_id", "attr", "position", "value") '
        "VALUES (%s, %s, %s, %s, %s)"
    )
    with pool.connection_context():
        for position in (0, 1):
            pool.execute_sql(insert, [1, ann, "phoneNumbers", position, "+1"])
        assert any("user_value" in s for s in _prepared(pool))
        with pytest.raises(peewee.IntegrityError):
            pool.execute_sql(insert, [1, "no-such-user", "phoneNumbers", 0, "+1"])


def test_a_statement_that_cannot_be_prepared_is_sent_as_it_is(pool: CheckedPool) -> None:
    """`$1 IS NULL` has no type PostgreSQL can infer: PREPARE fails, the statement runs
    unprepared, and a transaction it runs in goes on."""
    untyped = "SELECT %s IS NULL"
    with pool.connection_context():
        with pool.atomic():
            answers = [pool.execute_sql(untyped, [None]).fetchone() for _ in range(3)]
            assert pool.execute_sql("SELECT %s::int + 1", [1]).fetchone() == (2,)
        assert answers == [(True,)] * 3
        assert not any("IS NULL" in s for s in _prepared(pool))


def test_a_connection_keeps_a_bounded_number(
    pool: CheckedPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PREPARED_PER_CONNECTION", 3)
    with pool.connection_context():
        for n in range(6):
            for _ in range(2):
                assert pool.execute_sql(f"SELECT %s::int + {n}", [1]).fetchone() == (1 + n,)
        kept = _prepared(pool)
    assert len(kept) == 3
    assert all(any(f"+ {n}" in s for s in kept) for n in (3, 4, 5))  # the most recent


def test_switched_off_nothing_is_prepared(app: Flask, pool: CheckedPool) -> None:
    off = make_database(replace(runtime.of(app).config, db_server_prepared=False))
    try:
        with off.connection_context():
            for _ in range(3):
                off.execute_sql(SQL, ["x"])
            assert _prepared(off) == set()
    finally:
        off.close_all()


def test_requests_answer_the_same_with_prepared_statements(app: Flask, scim: Scim) -> None:
    """The app's own pool prepares what it sends again: a user read many times, changed and
    read again, answers as it was written."""
    if not db.is_postgres():
        pytest.skip("server-side prepared statements are PostgreSQL's")
    ann = create_user(scim, "ann@example.com")["id"]
    for n in range(8):
        body: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": f"T{n}"}],
        }
        assert scim.patch(f"/Users/{ann}", body).status_code == 200
        assert scim.get(f"/Users/{ann}").get_json()["title"] == f"T{n}"
        found = scim.get('/Users?filter=userName eq "ann@example.com"').get_json()
        assert found["Resources"][0]["title"] == f"T{n}"
    assert db.database.obj._statements  # something was prepared


def _status(pool: CheckedPool) -> int:
    return pool.connection().get_transaction_status()


def test_a_transaction_begins_with_its_first_statement(pool: CheckedPool, scim: Scim) -> None:
    """BEGIN travels with the transaction's first statement (one round trip, not two); what
    the transaction wrote is undone by a rollback and kept by a commit, as before."""
    ann = create_user(scim, "ann@example.com")["id"]
    title = 'UPDATE "lms_user" SET "title" = %s WHERE "id" = %s'
    read = 'SELECT "title" FROM "lms_user" WHERE "id" = %s'
    with pool.connection_context():
        with pool.atomic() as transaction:
            assert _status(pool) == TRANSACTION_STATUS_IDLE  # nothing sent yet
            pool.execute_sql(title, ["Undone", ann])
            assert _status(pool) == TRANSACTION_STATUS_INTRANS
            transaction.rollback()
        assert pool.execute_sql(read, [ann]).fetchone() == (None,)
        with pool.atomic():
            pool.execute_sql(title, ["Kept", ann])
        assert _status(pool) == TRANSACTION_STATUS_IDLE
        assert pool.execute_sql(read, [ann]).fetchone() == ("Kept",)
        with pool.atomic():  # a transaction that sends nothing: no BEGIN, no COMMIT
            pass
        assert _status(pool) == TRANSACTION_STATUS_IDLE


def test_a_failed_first_statement_rolls_back_and_the_connection_goes_on(
    pool: CheckedPool, scim: Scim
) -> None:
    ann = create_user(scim, "ann@example.com")["id"]
    insert = 'INSERT INTO "membership" ("tenant_id", "group_id", "user_id") VALUES (%s, %s, %s)'
    with pool.connection_context():
        with pytest.raises(peewee.IntegrityError), pool.atomic():
            pool.execute_sql(insert, [1, "no-such-group", ann])
        assert pool.execute_sql("SELECT %s::int", [7]).fetchone() == (7,)


def test_a_begin_never_outlives_its_connection(pool: CheckedPool) -> None:
    """A BEGIN still waiting when the connection goes back to the pool is dropped, so the
    thread's next statement runs in autocommit as it should."""
    with pool.connection_context():
        pool.begin()
    with pool.connection_context():
        assert pool.execute_sql("SELECT %s::int", [1]).fetchone() == (1,)
        assert _status(pool) == TRANSACTION_STATUS_IDLE


def test_a_statement_after_an_error_in_the_transaction_fails_as_peewee_says(
    pool: CheckedPool,
) -> None:
    """In a transaction that an error aborted, a statement is not prepared (its savepoint
    could not be made either): it fails with peewee's error, and a rollback recovers."""
    with pool.connection_context():
        pool.execute_sql("SELECT %s::int + 100", [1])  # seen once: next time it is prepared
        with pool.atomic():
            with pytest.raises(peewee.DataError):
                pool.execute_sql("SELECT %s::int", ["not a number"])
            with pytest.raises(peewee.InternalError):  # "current transaction is aborted"
                pool.execute_sql("SELECT %s::int + 100", [1])
            pool.rollback()
        assert pool.execute_sql("SELECT %s::int + 100", [1]).fetchone() == (101,)
