"""Operator commands through Flask's CLI runner, on SQLite and PostgreSQL: users status, list and
add; the audit trail and its retention; stats; operator accounts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any

import pytest
from flask import Flask

from app.store import status
from app.store import tenants as tenant_store
from app.store.models import AuditEvent, Operator, User, utcnow
from scim_schemas import PATCH_OP
from tests.helpers import (
    PASSWORD,
    Scim,
    app_with,
    create_group,
    create_user,
    deactivate,
    invoke,
    last_line,
    run,
)


@pytest.fixture
def alice(scim: Any) -> dict[str, Any]:
    user = create_user(scim, "alice@example.com", externalId="okta-00u1")
    create_group(scim, "Teachers", user["id"])
    return user


# -- users status ----------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["alice@example.com", "ALICE@example.com", "okta-00u1", "id"])
def test_status_answers_is_alice_active_since_when_and_who_changed_it(
    app: Flask, scim: Any, alice: dict[str, Any], ref: str
) -> None:
    deactivate(scim, alice["id"])
    changed = AuditEvent.get(AuditEvent.operation == "deactivate").at

    out = run(app, "users", "status", alice["id"] if ref == "id" else ref).stdout
    assert "user:          alice@example.com (Alice Liddell)" in out
    assert f"state:         inactive since {changed:%Y-%m-%d %H:%M} UTC by token test-idp" in out
    assert "groups:        Teachers" in out
    assert "last event:    deactivate" in out
    assert "req-deactivate-1" in out  # the history names the request
    assert "active: true → false" in out


def test_status_json_has_the_state_its_source_and_the_history(
    app: Flask, scim: Any, alice: dict[str, Any]
) -> None:
    body = json.loads(run(app, "users", "status", "alice@example.com", "--format", "json").stdout)
    assert body["active"] is True
    assert body["stateChangedBy"] == "test-idp"
    assert body["stateSince"] == body["created"]
    assert body["groups"] == [{"id": body["groups"][0]["id"], "displayName": "Teachers"}]
    # Newest first: joining Teachers is in alice's own history too.
    assert [e["operation"] for e in body["history"]] == ["group_join", "create"]
    assert "password" not in json.dumps(body).lower()

    deactivate(scim, alice["id"])
    scim.patch(
        f"/Users/{alice['id']}",
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "title", "value": "Lead"}],
        },
    )
    body = json.loads(run(app, "users", "status", alice["id"], "--format", "json").stdout)
    assert body["active"] is False
    # The last event is the title change, but the state dates from the deactivation.
    assert body["lastEvent"]["operation"] != "deactivate"
    assert [e["operation"] for e in body["history"]][1] == "deactivate"
    assert body["stateSince"] == body["history"][1]["at"]


def test_status_of_an_unknown_user_fails(app: Flask) -> None:
    result = invoke(app, "users", "status", "nobody@example.com")
    assert result.exit_code == 1
    assert "No user" in result.output


def test_status_with_an_ambiguous_email_asks_for_the_id(app: Flask, token: str) -> None:
    scim = Scim.of(app_with(app, unique_emails=False), token)
    create_user(scim, "a1", emails=[{"value": "shared@example.com"}])
    create_user(scim, "a2", emails=[{"value": "shared@example.com"}])
    result = invoke(app, "users", "status", "shared@example.com")
    assert result.exit_code == 1
    assert "use the id" in result.output


# -- users list ------------------------------------------------------------------------------


@pytest.fixture
def people(scim: Any, alice: dict[str, Any]) -> dict[str, str]:
    bob = create_user(scim, "bob@example.com", userType="instructor")
    carol = create_user(scim, "carol@example.com")
    deactivate(scim, bob["id"])
    return {"alice": alice["id"], "bob": bob["id"], "carol": carol["id"]}


def test_list_as_csv_json_and_table(app: Flask, people: dict[str, str]) -> None:
    rows = list(csv.DictReader(io.StringIO(run(app, "users", "list", "--format", "csv").stdout)))
    assert sorted(r["userName"] for r in rows) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    by_name = {r["userName"]: r for r in rows}
    assert by_name["bob@example.com"]["active"] == "false"  # as in JSON and the table
    assert by_name["bob@example.com"]["userType"] == "instructor"
    assert by_name["alice@example.com"]["email"] == "alice@example.com"

    lines = run(app, "users", "list", "--format", "json").stdout.splitlines()
    assert len(lines) == 3
    assert {json.loads(line)["id"] for line in lines} == set(people.values())

    table = run(app, "users", "list").stdout.splitlines()
    assert table[0].split() == ["id", "userName", "name", "userType", "active"]
    assert len(table) == 4


def test_list_inactive_and_by_group(app: Flask, people: dict[str, str]) -> None:
    inactive = run(app, "users", "list", "--inactive", "--format", "json").stdout.splitlines()
    assert [json.loads(line)["userName"] for line in inactive] == ["bob@example.com"]
    teachers = run(app, "users", "list", "--group", "teachers", "--format", "json").stdout
    assert [json.loads(line)["userName"] for line in teachers.splitlines()] == ["alice@example.com"]
    none = run(app, "users", "list", "--inactive", "--group", "Teachers", "--format", "csv")
    assert none.stdout.splitlines() == [
        ",".join(
            ("id", "userName", "name", "email", "userType", "active", "externalId", "lastModified")
        )
    ]


def test_listing_streams_in_chunks_by_id(
    app: Flask, scim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [create_user(scim, f"user{n}@example.com")["id"] for n in range(7)]
    chunks: list[int] = []
    real = status.summarise
    monkeypatch.setattr(status, "summarise", lambda rows: (chunks.append(len(rows)), real(rows))[1])

    stream = status.iter_users(None, chunk=3)
    assert next(stream)["id"] == min(ids)
    assert chunks == [3]  # only the first chunk has been read
    assert [r["id"] for r in stream] == sorted(ids)[1:]
    assert chunks == [3, 3, 1]
    # Through the CLI the same stream runs with the default chunk size.
    assert len(run(app, "users", "list", "--format", "json").stdout.splitlines()) == 7


# -- users add -------------------------------------------------------------------------------


def test_add_creates_an_lms_user_an_idp_can_then_find(app: Flask, scim: Any) -> None:
    result = run(
        app,
        "users",
        "add",
        "dana@example.com",
        "--email",
        "Dana@Example.com",
        "--given",
        "Dana",
        "--family",
        "Scully",
        "--user-type",
        "instructor",
    )
    user_id = last_line(result)
    found = scim.get('/Users?filter=userName eq "DANA@example.com"').get_json()
    assert found["totalResults"] == 1
    user = found["Resources"][0]
    assert user["id"] == user_id
    assert user["name"] == {"givenName": "Dana", "familyName": "Scully"}
    assert user["emails"] == [{"value": "Dana@Example.com", "type": "work", "primary": True}]
    assert user["userType"] == "instructor"
    assert user["timezone"] == "UTC"
    event = AuditEvent.get(AuditEvent.resource_id == user_id)
    assert (event.operation, event.token_name) == ("create", "cli")


def test_add_applies_the_default_user_type_and_refuses_duplicates(app: Flask) -> None:
    run(app, "users", "add", "erin")
    assert User.get(User.user_name == "erin").user_type == "learner"
    result = invoke(app, "users", "add", "ERIN")
    assert result.exit_code == 1
    assert "already taken" in result.output
    assert User.select().count() == 1


# -- audit -----------------------------------------------------------------------------------


def test_audit_by_user_in_table_and_json(app: Flask, scim: Any, people: dict[str, str]) -> None:
    table = run(app, "audit", "--user", "bob@example.com").stdout.splitlines()
    assert table[0].split()[:4] == ["time", "(UTC)", "token", "type"]
    assert [line.split()[5] for line in table[1:]] == ["create", "deactivate"]
    lines = run(app, "audit", "--user", people["bob"], "--format", "json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["operation"] for e in events] == ["create", "deactivate"]
    assert events[1]["changes"] == {"active": {"before": True, "after": False}}
    assert events[1]["requestId"] == "req-deactivate-1"
    assert events[1]["token"] == "test-idp"


def test_audit_finds_a_deleted_user_by_id_and_honours_since(app: Flask, scim: Any) -> None:
    user = create_user(scim, "gone@example.com")
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    lines = run(app, "audit", "--user", user["id"], "--format", "json").stdout.splitlines()
    assert [json.loads(line)["operation"] for line in lines] == ["create", "delete"]
    AuditEvent.update(at=utcnow() - dt.timedelta(days=10)).execute()
    assert run(app, "audit", "--user", user["id"], "--format", "json").stdout == ""
    recent = run(app, "audit", "--since", "11d", "--format", "json").stdout.splitlines()
    assert [json.loads(line)["resourceType"] for line in recent] == ["Token", "User", "User"]


def test_audit_prune_and_db_upgrade_drop_events_past_retention(app: Flask, scim: Any) -> None:
    create_user(scim, "old@example.com")
    create_user(scim, "new@example.com")
    AuditEvent.delete().where(AuditEvent.resource_type == "Token").execute()
    old = AuditEvent.select().order_by(AuditEvent.id).first()
    AuditEvent.update(at=utcnow() - dt.timedelta(days=400)).where(AuditEvent.id == old.id).execute()

    assert "pruned 0" in run(app, "audit", "prune", "--days", "500").stdout
    result = run(app, "db", "upgrade")  # AUDIT_RETENTION_DAYS defaults to 365
    assert "pruned 1 audit event" in result.stderr
    assert AuditEvent.select().count() == 1

    AuditEvent.update(at=utcnow() - dt.timedelta(days=3)).execute()
    assert (
        "pruned 1 audit event(s) older than 2 days"
        in run(app, "audit", "prune", "--days", "2").stdout
    )
    assert AuditEvent.select().count() == 0


# -- stats -----------------------------------------------------------------------------------


def test_stats_counts_states_types_and_recent_activity(app: Flask, people: dict[str, str]) -> None:
    body = json.loads(run(app, "stats", "--format", "json").stdout)
    assert body["users"] == {"total": 3, "active": 2, "inactive": 1}
    assert body["byUserType"] == {"learner": 2, "instructor": 1}
    assert body["groups"] == 1
    assert body["tokens"] == {"active": 1}
    activity = body["activity"]
    assert len(activity["days"]) == 7
    assert activity["days"][-1] == utcnow().date().isoformat()
    assert activity["byOperation"]["create"][-1] == 4  # three users and a group
    assert activity["byOperation"]["deactivate"][-1] == 1
    table = run(app, "stats").stdout
    assert "users: 3 (2 active, 1 inactive)" in table
    assert "instructor" in table


def test_stats_on_an_empty_database(app: Flask) -> None:
    out = run(app, "stats").stdout
    assert "users: 0 (0 active, 0 inactive)" in out
    assert "tokens: none" in out


# -- operators -------------------------------------------------------------------------------


def test_operators_create_hashes_the_password(app: Flask) -> None:
    result = run(app, "operators", "create", "olivia", "--password", "correct horse battery")
    assert "Created operator" in result.stdout
    row = Operator.get(Operator.name == "olivia")
    assert row.password_hash.startswith("$argon2id$")
    assert "correct horse" not in row.password_hash
    assert "olivia" in run(app, "operators", "list").stdout
    event = AuditEvent.get(AuditEvent.resource_type == "Operator")
    assert "correct horse" not in (event.changes or "")


def test_operators_create_prompts_twice_and_rejects_short_or_duplicate(app: Flask) -> None:
    with app.app_context():
        prompted = app.test_cli_runner().invoke(
            args=["operators", "create", "olivia"], input="long enough secret\nlong enough secret\n"
        )
    assert prompted.exit_code == 0, prompted.output
    assert "long enough secret" not in prompted.output  # hidden input
    short = invoke(app, "operators", "create", "otto", "--password", "short")
    assert short.exit_code == 2
    again = invoke(app, "operators", "create", "olivia", "--password", "another long one")
    assert again.exit_code == 1
    assert Operator.select().count() == 1


def test_operators_password_sets_a_new_hash_and_audits_it(app: Flask) -> None:
    run(app, "operators", "create", "olivia", "--password", "first password!")
    before = Operator.get().password_hash
    result = run(app, "operators", "password", "olivia", "--password", "second password!")
    assert "sessions have ended" in result.stdout
    after = Operator.get().password_hash
    assert after != before
    assert after.startswith("$argon2id$")
    event = AuditEvent.get(AuditEvent.operation == "operator_password")
    assert "second password" not in (event.changes or "")
    assert (
        invoke(app, "operators", "password", "nobody", "--password", "whatever long").exit_code == 1
    )


# -- operators bound to a tenant --------------------------------------------------------------


def test_operators_create_binds_to_a_tenant_and_list_shows_it(app: Flask) -> None:
    run(app, "tenants", "create", "acme", "--name", "Acme Corp")
    out = run(app, "operators", "create", "bea", "--tenant", "acme", "--password", PASSWORD)
    assert "they see tenant 'acme' only" in out.stdout
    assert "every tenant" in run(app, "operators", "create", "gil", "--password", PASSWORD).stdout
    assert Operator.get(Operator.name == "bea").tenant_id == tenant_store.by_slug("acme").id
    assert Operator.get(Operator.name == "gil").tenant_id is None
    listed = run(app, "operators", "list").stdout
    assert re.search(r"bea\s+acme\s", listed), listed
    assert re.search(r"gil\s+\(every tenant\)", listed), listed


def test_operators_create_refuses_an_unknown_tenant(app: Flask) -> None:
    result = invoke(app, "operators", "create", "bea", "--tenant", "nope", "--password", PASSWORD)
    assert result.exit_code == 1
    assert "No tenant 'nope'" in result.output
    assert Operator.get_or_none(Operator.name == "bea") is None
