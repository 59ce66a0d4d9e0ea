"""`/admin` sessions that end, and sign-in that gives nothing away (issue 15 §3), through Flask's
test client on SQLite and PostgreSQL: sign-out, a password change, `operators disable` and
`delete` end sessions; idle and absolute lifetimes; sign-in limited per address and per name, the
same for every name; its own argon2 budget; what a refusal logs. What is about the bytes on the
wire (CR/LF in `next`, the cookie's `Secure` flag behind a proxy and under the Procfile) is in
tests/e2e/test_admin_http.py."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import operator_signin, passwords
from app.store.models import AuditEvent, Operator
from tests.helpers import (
    OPERATOR,
    PASSWORD,
    Clock,
    Scim,
    app_with,
    csrf,
    invoke,
    run,
    sign_in,
    sign_out,
    user_body,
)

COOKIE = "lms_scim_admin"


def signed_in_client(app: Flask, name: str = OPERATOR, address: str = "127.0.0.1") -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    response = sign_in(client, name=name)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def is_signed_in(client: FlaskClient) -> bool:
    response = client.get("/admin/")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def alert(response: Any) -> str:
    match = re.search(r'role="alert">([^<]*)<', response.get_data(as_text=True))
    return match[1] if match else ""


# -- sessions end ----------------------------------------------------------------------------


def test_a_cookie_replayed_after_sign_out_is_refused(signed_in: FlaskClient) -> None:
    cookie = signed_in.get_cookie(COOKIE, path="/admin")
    assert cookie is not None
    assert sign_out(signed_in).status_code == 302
    assert not is_signed_in(signed_in)
    signed_in.set_cookie(COOKIE, cookie.value, path="/admin")
    assert not is_signed_in(signed_in)
    thief = signed_in.application.test_client()
    thief.set_cookie(COOKIE, cookie.value, path="/admin")
    assert not is_signed_in(thief)


def test_a_password_change_ends_every_session_of_that_operator(app: Flask, operator: str) -> None:
    run(app, "operators", "create", "otto", "--password", PASSWORD)
    laptop, phone = signed_in_client(app), signed_in_client(app)
    otto = signed_in_client(app, "otto")
    run(app, "operators", "password", OPERATOR, "--password", "a brand new password")
    assert not is_signed_in(laptop)
    assert not is_signed_in(phone)
    assert is_signed_in(otto)
    assert sign_in(app.test_client(), password="a brand new password").status_code == 302


def test_a_session_ends_after_30_idle_minutes(app: Flask, operator: str, clock: Clock) -> None:
    client = signed_in_client(app)
    clock.advance(minutes=29)
    assert is_signed_in(client)
    clock.advance(minutes=29)  # 58 minutes after sign-in, 29 after the last request
    assert is_signed_in(client)
    clock.advance(minutes=31)
    assert not is_signed_in(client)
    assert not is_signed_in(client)  # and it stays ended


def test_a_session_ends_8_hours_after_sign_in_however_active(
    app: Flask, operator: str, clock: Clock
) -> None:
    client = signed_in_client(app)
    for _ in range(23):  # 7 h 40 min of a request every 20 minutes
        clock.advance(minutes=20)
        assert is_signed_in(client)
    clock.advance(minutes=21)
    assert not is_signed_in(client)
    assert is_signed_in(signed_in_client(app))  # signing in again starts a new one


def test_session_lifetimes_follow_the_configuration(
    app: Flask, operator: str, clock: Clock
) -> None:
    short = app_with(app, admin_session_hours=1, admin_idle_minutes=5)
    client = signed_in_client(short)
    clock.advance(minutes=4)
    assert is_signed_in(client)
    clock.advance(minutes=6)
    assert not is_signed_in(client)
    client = signed_in_client(short)
    for _ in range(14):
        clock.advance(minutes=4)
        assert is_signed_in(client)
    clock.advance(minutes=4.5)  # 60.5 minutes after sign-in, 4.5 after the last request
    assert not is_signed_in(client)


# -- operators disable / enable / delete ----------------------------------------------------


def test_operators_disable_ends_sessions_and_refuses_sign_in_like_a_wrong_password(
    app: Flask, operator: str
) -> None:
    client = signed_in_client(app)
    assert "Disabled operator 'olivia'" in run(app, "operators", "disable", OPERATOR).stdout
    assert not is_signed_in(client)
    refused = sign_in(app.test_client())
    assert (refused.status_code, alert(refused)) == (401, "Wrong name or password.")
    listed = run(app, "operators", "list").stdout
    assert re.search(r"olivia\s.*disabled", listed), listed

    run(app, "operators", "enable", OPERATOR)
    assert is_signed_in(signed_in_client(app))
    assert not is_signed_in(client)  # the old session stays ended
    operations = [e.operation for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert operations[-2:] == ["operator_disable", "operator_enable"]
    for command in ("disable", "enable", "delete --yes"):
        unknown = invoke(app, "operators", *command.split(), "nobody")
        assert unknown.exit_code == 1
        assert "No operator named 'nobody'" in unknown.output


def test_operators_delete_signs_out_and_keeps_the_audit_trail(app: Flask, operator: str) -> None:
    client = signed_in_client(app)
    created = AuditEvent.get(AuditEvent.operation == "operator_create")
    with app.app_context():
        refused = app.test_cli_runner().invoke(args=["operators", "delete", OPERATOR], input="n\n")
    assert refused.exit_code == 1
    assert Operator.select().count() == 1
    assert "Deleted operator 'olivia'" in run(app, "operators", "delete", OPERATOR, "--yes").stdout
    assert Operator.select().count() == 0
    assert not is_signed_in(client)
    trail = list(AuditEvent.select().where(AuditEvent.resource_id == created.resource_id))
    assert [e.operation for e in trail] == ["operator_create", "operator_delete"]
    assert "olivia" in (trail[-1].changes or "")
    # The name can be taken again, by a new account.
    run(app, "operators", "create", OPERATOR, "--password", "someone else entirely")
    assert sign_in(app.test_client()).status_code == 401


# -- sign-in: limits, and the same answers for every name ------------------------------------


def test_sign_in_is_limited_per_client_address(app: Flask, operator: str) -> None:
    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    answers = [sign_in(guesser, name=f"guess{n}").status_code for n in range(40)]
    assert 429 in answers, answers
    first = answers.index(429)
    assert first >= 5
    assert set(answers[:first]) == {401}
    assert set(answers[first:]) == {429}
    refused = sign_in(guesser)  # the right name and password: still this address's turn to wait
    assert refused.status_code == 429
    assert "from this address" in alert(refused)
    assert int(refused.headers["Retry-After"]) >= 1
    assert sign_in(app.test_client()).status_code == 302  # another address is not affected


class CountingArgon2:
    """argon2id as `app.passwords` runs it, counting the hashes and verifications."""

    def __init__(self) -> None:
        self.real = passwords._ARGON2
        self.calls = 0

    def hash(self, password: str) -> str:
        self.calls += 1
        return self.real.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self.calls += 1
        return self.real.verify(password_hash, password)


def _answers(app: Flask, name: str, argon2: CountingArgon2, address: str) -> list[Any]:
    """(status, message, argon2 runs) of seven wrong passwords and then the right one."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    seen = []
    for password in ["a wrong password"] * 7 + [PASSWORD]:
        before = argon2.calls
        response = sign_in(client, name=name, password=password)
        seen.append((response.status_code, alert(response), argon2.calls - before))
    return seen


def test_unknown_and_known_names_get_the_same_answers_and_back_off(
    app: Flask, operator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argon2 = CountingArgon2()
    monkeypatch.setattr(passwords, "_ARGON2", argon2)
    known = _answers(app, OPERATOR, argon2, "192.0.2.1")
    unknown = _answers(app, "nobody", argon2, "192.0.2.2")
    assert known == unknown
    assert known[0] == (401, "Wrong name or password.", 1)
    assert known[-1][0] == 429
    assert known[-1][1].startswith("Too many failed attempts")
    assert known[-1][2] == 0  # refused before any hashing


def test_a_disabled_operator_is_answered_like_an_unknown_name(
    app: Flask, operator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(app, "operators", "disable", OPERATOR)
    argon2 = CountingArgon2()
    monkeypatch.setattr(passwords, "_ARGON2", argon2)
    assert _answers(app, OPERATOR, argon2, "192.0.2.1") == _answers(
        app, "nobody", argon2, "192.0.2.2"
    )


def test_a_failed_sign_in_logs_an_unknown_name_only_as_a_short_hash(
    app: Flask, operator: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.admin")
    client = app.test_client()
    sign_in(client, name=PASSWORD, password="")  # the password typed where the name goes
    sign_in(client, name=OPERATOR, password="a wrong password")
    refusals = [r.getMessage() for r in caplog.records if "sign-in refused" in r.getMessage()]
    assert len(refusals) == 2, refusals
    assert all(PASSWORD not in line for line in caplog.text.splitlines())
    assert re.search(r"unknown name #[0-9a-f]{8,16}\b", refusals[0]), refusals[0]
    assert "'olivia'" in refusals[1]


def test_unknown_names_are_checked_against_a_hash_as_costly_as_a_real_one() -> None:
    assert operator_signin.DUMMY_HASH.startswith("$argon2id$")
    assert not passwords._ARGON2.check_needs_rehash(operator_signin.DUMMY_HASH)


# -- sign-in and SCIM do not share argon2 ----------------------------------------------------


class GatedArgon2:
    """argon2id whose verifications (sign-ins) wait at a gate; hashes (SCIM writes) do not."""

    def __init__(self) -> None:
        self.real = passwords._ARGON2
        self.inside = threading.Event()
        self.gate = threading.Event()

    def hash(self, password: str) -> str:
        return self.real.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self.inside.set()
        self.gate.wait(10)
        return self.real.verify(password_hash, password)


def _in_thread(work: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(answer=work()), daemon=True)
    thread.start()
    return thread, result


def test_a_sign_in_never_holds_up_a_scim_password_write(
    app: Flask, operator: str, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argon2 = GatedArgon2()
    monkeypatch.setattr(passwords, "_ARGON2", argon2)
    signing_in, _ = _in_thread(lambda: sign_in(app.test_client()).status_code)
    try:
        assert argon2.inside.wait(5), "the sign-in never reached argon2"
        scim = Scim.of(app, token)
        body = user_body("pat@example.com", password="a password the IdP pushed")
        writing, written = _in_thread(lambda: scim.post("/Users", body).status_code)
        writing.join(5)
        assert written.get("answer") == 201, "the SCIM write waited for the sign-in's argon2"
    finally:
        argon2.gate.set()
        signing_in.join(10)


def test_a_flood_of_sign_ins_is_refused_not_queued(
    app: Flask, operator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argon2 = GatedArgon2()
    monkeypatch.setattr(passwords, "_ARGON2", argon2)
    signing_in, first = _in_thread(lambda: sign_in(app.test_client()).status_code)
    try:
        assert argon2.inside.wait(5), "the sign-in never reached argon2"
        other = app.test_client()
        other.environ_base["REMOTE_ADDR"] = "203.0.113.9"
        token = csrf(other)
        flood, answered = _in_thread(
            lambda: other.post("/admin/login", data={"csrf": token, "name": "x", "password": "y"})
        )
        flood.join(3)
        response = answered.get("answer")
        assert response is not None, "a second sign-in queued behind the first"
        assert response.status_code == 503
        assert "busy" in alert(response).lower()
        assert response.headers["Retry-After"] == "1"
    finally:
        argon2.gate.set()
        signing_in.join(10)
    assert first["answer"] == 302
