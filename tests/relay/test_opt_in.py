"""The relay is opt-in (issue 19 §2; issue 20 "no work for features that are off"): a tenant
without an LMS gets no outbox rows and its writes run no outbox statement; `relay status` says
the relay is not configured and how to configure it; configuring it later starts from a full
reconciliation (`relay sync --all`) that brings the LMS to the whole state, not from a backlog."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playhouse.test_utils import count_queries

from app import runtime
from app.config import Config
from app.relay.worker import Relay
from app.store import tenancy
from app.store.models import LmsTarget, Outbox
from tests.helpers import Scim, app_with, create_group, create_user, feed, invoke, run
from tests.relay.harness import B_URL, Clock, drain, join, leave, set_active
from tests.relay.moodle_sim import TOKEN, URL, MoodleSim


@pytest.fixture
def config(config: Config) -> Config:
    """No LMS anywhere: the environment names none (the relay conftest's default does)."""
    return replace(config, lms_url=None, lms_token=None)


def _queued() -> list[tuple[str, int]]:
    with tenancy.everywhere():
        return list(Outbox.select(Outbox.kind, Outbox.target_id).order_by(Outbox.id).tuples())


def _build_state(app: Flask, scim: Scim) -> dict[str, str]:
    """Users, groups, memberships and enrolment rules made while no LMS is configured,
    including things that came and went (nothing of them may reach the LMS later)."""
    alice = create_user(scim, "alice@example.com")["id"]
    bob = create_user(scim, "bob@example.com")["id"]
    carol = create_user(scim, "carol@example.com")["id"]
    gone = create_user(scim, "gone@example.com")["id"]
    physics = create_group(scim, "Physics", alice, bob, gone)["id"]
    chemistry = create_group(scim, "Chemistry")["id"]
    temporary = create_group(scim, "Temporary", alice)["id"]
    run(app, "enrolments", "add", "Physics", "101", "--role", "student")
    run(app, "enrolments", "add", chemistry, "102", "--role", "teacher")
    join(scim, chemistry, carol)
    set_active(scim, bob, False)
    leave(scim, physics, gone)
    assert scim.delete(f"/Users/{gone}").status_code == 204
    assert scim.delete(f"/Groups/{temporary}").status_code == 204
    return {"alice": alice, "bob": bob, "carol": carol, "physics": physics}


FULL_STATE = {
    "users": {
        "alice@example.com": {"email": "alice@example.com", "suspended": False},
        "bob@example.com": {"email": "bob@example.com", "suspended": True},
        "carol@example.com": {"email": "carol@example.com", "suspended": False},
    },
    "cohorts": {
        "Chemistry": ["carol@example.com"],
        "Physics": ["alice@example.com", "bob@example.com"],
    },
    "enrolments": [
        ("alice@example.com", 101, "student"),
        ("bob@example.com", 101, "student"),
        ("carol@example.com", 102, "editingteacher"),
    ],
}


def test_no_outbox_rows_and_no_changes_waiting_without_an_lms(
    app: Flask, scim: Scim, signed_in: FlaskClient
) -> None:
    alice = _build_state(app, scim)["alice"]
    assert _queued() == []
    status = run(app, "relay", "status").stdout
    assert "The LMS relay is not configured for tenant 'default'" in status
    assert "lms-scim tenants set default LMS_URL=" in status
    assert "lms-scim relay sync --all --tenant default" in status
    assert "waiting" not in status
    assert "backlog" not in status
    person = run(app, "users", "status", "alice@example.com").stdout
    assert "LMS:           no LMS is configured (the relay is off)" in person
    assert "LMS default" not in person  # no per-target account or actions to speak of
    shown = json.loads(run(app, "users", "status", "alice@example.com", "--format", "json").stdout)
    assert shown["lmsTargets"] == []
    for command in (("lms", "list"), ("lms", "show", "default"), ("stats",), ("users", "list")):
        shown = run(app, *command).stdout.lower()
        assert "waiting" not in shown, (command, shown)
    shown = json.loads(run(app, "relay", "status", "--format", "json").stdout)
    assert shown["configured"] is False
    assert "relay sync --all" in shown["help"]
    once = invoke(app, "relay", "run", "--once")
    assert once.exit_code == 1
    assert "Set LMS_URL and LMS_TOKEN" in once.output
    refused = invoke(app, "relay", "sync", "--all")
    assert refused.exit_code == 1
    assert "not configured" in refused.output
    # Settings of the default target that queue its users again queue nothing while it has no
    # LMS: it starts from `relay sync --all` once it has one.
    run(app, "lms", "actions", "default", "learner", "update,deactivate")
    run(app, "lms", "set", "default", "audiences=Physics")
    run(app, "lms", "set", "default", "sync_unenrolled=false")
    run(app, "enrolments", "remove", "Physics", "101")
    assert _queued() == []
    # The admin page says the same, and speaks of nothing waiting.
    response = signed_in.get("/admin/relay")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "the relay is off and nothing is queued" in page
    assert "relay sync --all" in page
    assert "waiting" not in page
    groups = signed_in.get("/admin/groups").get_data(as_text=True)
    assert "no LMS configured" in groups
    assert "waiting" not in groups
    for path in ("/admin/", "/admin/users", f"/admin/users/{alice}", "/admin/tenants"):
        shown = signed_in.get(path)
        assert shown.status_code in (200, 404), path
        assert "waiting" not in shown.get_data(as_text=True).lower(), path


def _statements(call: Callable[[], Any]) -> list[str]:
    with count_queries() as counted:
        call()
    return [record.msg[0].lower() for record in counted.get_queries()]


def test_a_scim_write_without_a_relay_runs_no_outbox_statement(
    app: Flask, scim: Scim, token: str
) -> None:
    """No outbox statement (and no look-up of targets) on a tenant without an LMS; with one,
    the same write runs the outbox's INSERT … SELECT and nothing else more."""
    configured = Scim.of(app_with(app, lms_url=URL, lms_token=TOKEN), token)
    ids = {}
    for name, client in (("off", scim), ("on", configured)):
        # Warm: the token, the tenant and its relay targets are cached after this.
        ids[name] = create_user(client, f"warm-{name}@example.com")["id"]
        create_group(client, f"Warm {name}", ids[name])
    counts: dict[str, list[int]] = {"off": [], "on": []}
    for name, client in (("off", scim), ("on", configured)):
        group = create_group(client, f"G {name}")["id"]
        before = len(_queued())
        writes: list[Callable[[], Any]] = [
            lambda client=client, name=name: create_user(client, f"u-{name}@example.com"),
            lambda client=client, name=name: set_active(client, ids[name], False),
            lambda client=client, name=name, group=group: join(client, group, ids[name]),
            lambda client=client, name=name, group=group: leave(client, group, ids[name]),
            lambda client=client, group=group: client.delete(f"/Groups/{group}"),
        ]
        for write in writes:
            sql = _statements(write)
            touching = [q for q in sql if '"outbox"' in q or '"lms_target"' in q]
            if name == "off":
                assert touching == [], sql
            else:  # a group's deletion: its own row and its members' (two statements)
                assert touching, sql
                assert {q.split(" (")[0] for q in touching} == {'insert into "outbox"'}, sql
            counts[name].append(len(sql) - len(touching))
        if name == "off":
            assert len(_queued()) == before
        else:
            assert len(_queued()) > before
    # Nothing else differs: the relay's state came from the caches, not from a query.
    assert counts["on"] == counts["off"]


def test_configuring_later_starts_from_a_full_reconciliation(
    app: Flask, scim: Scim, moodle: MoodleSim, clock: Clock, relay: Relay
) -> None:
    ids = _build_state(app, scim)
    assert _queued() == []
    out = feed(app, TOKEN + "\n", "tenants", "set", "default", "LMS_TOKEN", f"LMS_URL={URL}")
    assert out.exit_code == 0, out.output
    assert "relay sync --all --tenant default" in out.output
    assert _queued() == []  # configuring queues nothing by itself: no backlog of old changes
    status = run(app, "relay", "status").stdout
    assert f"LMS:           {URL}" in status
    assert "backlog:       0 change(s) waiting" in status
    assert "`lms-scim relay sync --all` queues" in status
    person = run(app, "users", "status", "alice@example.com").stdout
    assert "LMS:           not yet sent to the LMS" in person

    synced = run(app, "relay", "sync", "--all").stdout
    assert synced.strip() == (
        "default: queued 8 change(s) for a full reconciliation "
        "(3 users, 2 groups, 3 memberships); 0 were waiting already"
    )
    # Idempotent: run again, nothing more is queued.
    again = run(app, "relay", "sync", "--all", "--batch", "2").stdout
    assert "queued 0 change(s)" in again
    assert "8 were waiting already" in again
    # A change made now is queued as usual, and a sync does not queue it twice.
    create_user(scim, "dan@example.com")
    third = run(app, "relay", "sync", "--all", "--batch", "1").stdout
    assert "queued 0 change(s)" in third
    assert "(4 users, 2 groups, 3 memberships); 9 were waiting already" in third
    drain(relay, clock)
    final = moodle.state()
    expected = {
        **FULL_STATE,
        "users": {
            **FULL_STATE["users"],
            "dan@example.com": {"email": "dan@example.com", "suspended": False},
        },
    }
    assert final == expected
    assert _queued() == []
    assert ids  # the state the LMS now holds was made before it was configured
    assert "sync --all" not in run(app, "relay", "status").stdout  # delivered: no hint


def test_a_tenant_without_its_own_lms_fans_out_only_to_added_targets(
    app: Flask, scim: Scim, sites: tuple[MoodleSim, MoodleSim], signed_in: FlaskClient
) -> None:
    """`default` has no LMS, target b has one: changes go to b only; `lms add` started b from
    the full state, like a sync."""
    alice = create_user(scim, "alice@example.com")["id"]
    assert _queued() == []
    added = feed(app, TOKEN + "\n", "lms", "add", "b", "--url", B_URL)
    assert added.exit_code == 0, added.output
    with app.app_context():
        b = LmsTarget.get(LmsTarget.name == "b").id
        assert runtime.of(app).receivers(tenancy.DEFAULT_TENANT) == (b,)
    assert _queued() == [("user", b)]
    set_active(scim, alice, False)
    create_group(scim, "Physics", alice)
    assert {target for _, target in _queued()} == {b}
    status = run(app, "relay", "status").stdout
    assert "== LMS target default" in status
    assert "backlog:       none (nothing is queued for a target without an LMS)" in status
    assert "== LMS target b" in status
    assert "backlog:       4 change(s) waiting" in status
    refused = invoke(app, "relay", "sync", "--all", "--lms", "default")
    assert refused.exit_code == 1
    assert "has no LMS" in refused.output
    # The admin pages know the tenant has an LMS (target b), though `default` has none.
    groups = signed_in.get("/admin/groups").get_data(as_text=True)
    assert "change(s) waiting for the LMS relay" in groups
    assert "no LMS configured" not in groups


def test_target_changes_move_the_cache_generation(
    app: Flask, scim: Scim, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    """m0021: another process's cache of who receives changes learns of `lms add`, a new URL
    and `lms remove` within TOKEN_CACHE_SECONDS (the generation moves); a change that decides
    nothing about receiving (audiences, cohorts: the relay reads them as it delivers) leaves it
    alone."""
    from app.store import generation

    def moved(*args: str, stdin: str | None = None) -> int:
        with app.app_context():
            before = generation.read()
        result = feed(app, stdin or "", *args)
        assert result.exit_code == 0, result.output
        with app.app_context():
            return generation.read() - before

    create_group(scim, "Staff")
    assert moved("lms", "add", "b", "--url", B_URL, stdin=TOKEN + "\n") > 0
    assert moved("lms", "set", "b", f"url={B_URL}/other") > 0
    assert moved("lms", "set", "b", "audiences=Staff") == 0
    assert moved("lms", "set", "b", "cohorts=Staff") == 0
    assert moved("lms", "remove", "b", "--force") > 0


def test_the_overview_of_several_tenants_speaks_of_no_waiting_without_an_lms(
    app: Flask, scim: Scim, acme: Scim
) -> None:
    """`relay status` across tenants: a tenant with an LMS has its numbers, one without has
    "not configured" and no backlog figure."""
    out = feed(app, TOKEN + "\n", "tenants", "set", "acme", "LMS_TOKEN", f"LMS_URL={B_URL}")
    assert out.exit_code == 0, out.output
    create_user(scim, "ann@example.com")
    create_user(acme, "bob@acme.example")
    assert [kind for kind, _ in _queued()] == ["user"]  # acme's only
    lines = run(app, "relay", "status").stdout.splitlines()
    assert lines[0].split()[:3] == ["tenant", "LMS", "backlog"]
    assert lines[1].split()[:4] == ["default", "not", "configured", "-"]
    assert lines[2].split()[:3] == ["acme", B_URL, "1"]
    summary = run(app, "relay", "status", "--format", "json").stdout
    default, acme_line = json.loads(summary)["tenants"]
    assert (default["lms"], default["backlog"]) == (None, 0)
    assert (acme_line["lms"], acme_line["backlog"]) == (B_URL, 1)


LMS_EXTENSION = "urn:lms-scim:schemas:extension:lms:2.0:User"


def _enrolment_queries(sql: list[str]) -> list[str]:
    return [q for q in sql if '"enrolment_rule"' in q or '"kept_enrolment"' in q]


def test_no_enrolment_query_without_rules(app: Flask, scim: Scim) -> None:
    """Issue 20: a tenant without enrolment rules (and nothing kept) reads and writes users
    without the enrolment query; its first rule brings it back at once in this process, and
    moves the cache generation for the others."""
    from app.store import generation

    alice = create_user(scim, "alice@example.com")["id"]
    create_group(scim, "Physics", alice)
    assert scim.get(f"/Users/{alice}").status_code == 200  # warm
    reads_and_writes: list[Callable[[], Any]] = [
        lambda: scim.get(f"/Users/{alice}"),
        lambda: scim.get("/Users"),
        lambda: set_active(scim, alice, False),
        lambda: scim.post("/Users/.search", {"filter": 'userName eq "alice@example.com"'}),
    ]
    for call in reads_and_writes:
        sql = _statements(call)
        assert _enrolment_queries(sql) == [], sql
    body = scim.get(f"/Users/{alice}").get_json()
    assert body.get(LMS_EXTENSION, {}).get("enrolments", []) == []  # as before: none

    with app.app_context():
        before = generation.read()
    run(app, "enrolments", "add", "Physics", "101", "--role", "student")
    with app.app_context():
        assert generation.read() > before
    sql = _statements(lambda: scim.get(f"/Users/{alice}"))
    assert len(_enrolment_queries(sql)) == 1
    body = scim.get(f"/Users/{alice}").get_json()
    assert body[LMS_EXTENSION]["enrolments"] == [{"courseId": "101", "role": "student"}]
