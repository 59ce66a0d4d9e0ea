"""The LMS relay against the simulated Moodle, on SQLite and PostgreSQL: matching, create,
update, suspend, cohorts, enrolments, failures, restarts and ordering."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask

from app.relay.worker import Relay, Settings
from app.store import outbox
from app.store.models import LmsUserLink, Outbox
from tests.helpers import app_with, create_group, create_user, in_threads, invoke, patch_ok, run
from tests.relay.harness import Clock, drain, join, leave, make_relay, set_active
from tests.relay.moodle_sim import TOKEN, URL, MoodleSim, SimulatedCrash

# -- the "done when" scenario ----------------------------------------------------------------


def test_okta_sequence_leaves_moodle_exactly_in_step(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock, config: Any
) -> None:
    """Okta: create, add to a group with enrolment rules, deactivate, reactivate, leave."""
    # Alice already has a Moodle account (another username): matched by e-mail, not created.
    existing = moodle.add_user("alice.liddell", "alice@example.com", firstname="A.")
    alice = create_user(scim, "alice@example.com", externalId="00u-alice")
    bob = create_user(scim, "bob@example.com", externalId="00u-bob")
    physics = create_group(scim, "Physics 101")
    run(app, "enrolments", "add", "Physics 101", "101", "--role", "student")
    run(app, "enrolments", "add", physics["id"], "102", "--role", "teacher", "--keep-on-leave")
    drain(relay, clock)
    assert moodle.count("core_user_create_users") == 1  # bob only

    join(scim, physics["id"], alice["id"])
    join(scim, physics["id"], bob["id"])
    drain(relay, clock)
    state = moodle.state()
    assert state["cohorts"] == {"Physics 101": ["alice.liddell", "bob@example.com"]}
    assert ("alice.liddell", 101, "student") in state["enrolments"]

    set_active(scim, alice["id"], False)
    drain(relay, clock)
    print(f"\nsimulated Moodle after deactivating alice:\n{moodle.dump()}")
    assert moodle.users[existing]["suspended"] == 1
    assert ("alice.liddell", 101, "student") in moodle.state()["enrolments"]  # kept, suspended

    set_active(scim, alice["id"], True)
    leave(scim, physics["id"], alice["id"])
    drain(relay, clock)

    final = moodle.state()
    print(f"\nsimulated Moodle after the Okta sequence ({config.database_url.split(':')[0]}):")
    print(moodle.dump())
    assert final == {
        "users": {
            "alice.liddell": {"email": "alice@example.com", "suspended": False},
            "bob@example.com": {"email": "bob@example.com", "suspended": False},
        },
        "cohorts": {"Physics 101": ["bob@example.com"]},
        "enrolments": [
            ("alice.liddell", 102, "editingteacher"),  # kept: the rule keeps enrolments
            ("bob@example.com", 101, "student"),
            ("bob@example.com", 102, "editingteacher"),
        ],
    }
    # The SCIM User shows the same enrolments, read-only, in the LMS extension.
    body = scim.get(f"/Users/{alice['id']}").get_json()
    lms = body["urn:lms-scim:schemas:extension:lms:2.0:User"]
    assert lms["enrolments"] == [{"courseId": "102", "role": "teacher"}]
    assert Outbox.select().count() == 0
    status = run(app, "users", "status", "alice@example.com").stdout
    assert "enrolments:    course 102 (teacher)" in status
    assert "LMS:           in step with the LMS since" in status


def test_a_role_no_rule_gives_any_more_is_taken_away_and_the_course_kept(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    """Two groups give course 201, one as student and one as teacher: leaving the teachers'
    group leaves a student, not a student who still teaches."""
    erin = create_user(scim, "erin@example.com")
    learners, tutors = create_group(scim, "Learners"), create_group(scim, "Tutors")
    run(app, "enrolments", "add", "Learners", "201", "--role", "student")
    run(app, "enrolments", "add", "Tutors", "201", "--role", "teacher")
    join(scim, learners["id"], erin["id"])
    join(scim, tutors["id"], erin["id"])
    drain(relay, clock)
    both = [("erin@example.com", 201, "editingteacher"), ("erin@example.com", 201, "student")]
    assert moodle.state()["enrolments"] == both

    leave(scim, tutors["id"], erin["id"])
    drain(relay, clock)
    assert moodle.state()["enrolments"] == [("erin@example.com", 201, "student")]
    assert moodle.count("enrol_manual_unenrol_users") == 0  # the enrolment itself stays


# -- matching and profile --------------------------------------------------------------------


def test_match_by_username_when_configured(
    app: Flask, scim: Any, moodle: MoodleSim, clock: Clock
) -> None:
    existing = moodle.add_user("carol", "carol.old@example.com")
    relay = make_relay(clock, Settings(match_field="username"))
    create_user(scim, "Carol", emails=[{"value": "carol@example.com", "primary": True}])
    drain(relay, clock)
    assert moodle.count("core_user_create_users") == 0
    assert moodle.users[existing]["email"] == "carol@example.com"  # the profile follows
    assert LmsUserLink.get().matched


def test_create_update_and_delete(scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock) -> None:
    user = create_user(scim, "dana@example.com")
    drain(relay, clock)
    (lms_id,) = moodle.users
    assert moodle.users[lms_id]["firstname"] == "Alice"
    assert moodle.users[lms_id]["idnumber"] == user["id"]
    patch_ok(
        scim, f"/Users/{user['id']}", {"op": "replace", "path": "name.givenName", "value": "Dana"}
    )
    drain(relay, clock)
    assert moodle.users[lms_id]["firstname"] == "Dana"
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    drain(relay, clock)
    assert moodle.users == {}
    assert LmsUserLink.select().count() == 0


def test_group_rename_and_delete_follow_and_keep_rules_survive_deletion(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    erin = create_user(scim, "erin@example.com")
    group = create_group(scim, "Chemistry", erin["id"])
    run(app, "enrolments", "add", "Chemistry", "103", "--role", "student", "--keep-on-leave")
    run(app, "enrolments", "add", "Chemistry", "201", "--role", "student")
    drain(relay, clock)
    assert moodle.state()["enrolments"] == [
        ("erin@example.com", 103, "student"),
        ("erin@example.com", 201, "student"),
    ]
    patch_ok(
        scim, f"/Groups/{group['id']}", {"op": "replace", "path": "displayName", "value": "Chem"}
    )
    drain(relay, clock)
    assert list(moodle.state()["cohorts"]) == ["Chem"]
    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    drain(relay, clock)
    assert moodle.state()["cohorts"] == {}
    assert moodle.state()["enrolments"] == [("erin@example.com", 103, "student")]


def test_removing_a_rule_unenrols_members(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    frank = create_user(scim, "frank@example.com")
    create_group(scim, "Biology", frank["id"])
    run(app, "enrolments", "add", "Biology", "101", "--role", "student")
    drain(relay, clock)
    assert moodle.state()["enrolments"] == [("frank@example.com", 101, "student")]
    run(app, "enrolments", "remove", "biology", "101")
    drain(relay, clock)
    assert moodle.state()["enrolments"] == []


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["timeout", "http503", "maintenance"])
def test_transient_errors_are_retried_with_growing_backoff(
    scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock, fault: str
) -> None:
    moodle.fail("core_user_create_users", fault, times=3)
    create_user(scim, "gina@example.com")
    delays = []
    for _ in range(3):
        assert relay.run_once() == 1
        row = Outbox.get()
        assert row.state == "pending"
        assert row.last_error
        delays.append((row.next_attempt_at - clock.now).total_seconds())
        assert relay.run_once() == 0  # not due yet
        clock.advance(delays[-1] + 0.01)
    assert delays[0] < delays[2]  # exponential (1, 2, 4 s with half of it jitter)
    assert all(0.5 <= d <= 4 for d in delays)
    drain(relay, clock)
    assert [u["username"] for u in moodle.users.values()] == ["gina@example.com"]


def test_transient_errors_give_up_into_a_dead_letter(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    moodle.fail("core_user_get_users_by_field", "timeout", times=relay.max_attempts)
    create_user(scim, "hana@example.com")
    drain(relay, clock)
    row = Outbox.get()
    assert row.state == "dead"
    assert row.attempts == relay.max_attempts
    assert row.last_error.startswith("gave up after 5 attempts")


def test_permanent_errors_are_dead_letters_that_block_nobody(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    bad = create_user(scim, "ivy with spaces", emails=[{"value": "ivy@example.com"}])
    good = create_user(scim, "jack@example.com")
    group = create_group(scim, "Maths", bad["id"], good["id"])
    drain(relay, clock)
    assert sorted(u["username"] for u in moodle.users.values()) == ["jack@example.com"]
    assert moodle.state()["cohorts"] == {"Maths": ["jack@example.com"]}
    dead = list(Outbox.select().where(Outbox.state == "dead").order_by(Outbox.id))
    assert [(r.kind, r.user_id) for r in dead] == [("user", bad["id"]), ("member", bad["id"])]
    assert "invalidparameter: Invalid username: ivy with spaces" in dead[0].last_error

    out = run(app, "relay", "status").stdout
    assert "failures:      2 dead letter(s)" in out
    assert "Invalid username" in out
    assert (
        "not in step with the LMS: core_user_create_users: invalidparameter"
        in run(app, "users", "status", bad["id"]).stdout
    )

    # The operator fixes the user in the IdP; requeued dead letters then go through.
    patch_ok(scim, f"/Users/{bad['id']}", {"op": "replace", "path": "userName", "value": "ivy"})
    assert "requeued 2" in run(app, "relay", "retry", "--all").stdout
    drain(relay, clock)
    assert moodle.state()["cohorts"] == {"Maths": ["ivy", "jack@example.com"]}
    assert Outbox.select().count() == 0
    assert group["id"]


def test_wrong_token_and_missing_functions_are_reported_by_relay_test(
    app: Flask, moodle: MoodleSim
) -> None:
    configured = app_with(app, lms_url=URL, lms_token=TOKEN)
    moodle.allowed = {"core_webservice_get_site_info", "core_user_get_users_by_field"}
    result = invoke(configured, "relay", "test")
    assert result.exit_code == 1
    assert "connected to Simulated Moodle" in result.stdout
    assert "core_user_create_users" in result.stderr
    assert "12 required function(s) missing" in result.stderr

    moodle.allowed = None
    assert "every required function is allowed" in run(configured, "relay", "test").stdout

    wrong = app_with(app, lms_url=URL, lms_token="wrong")
    result = invoke(wrong, "relay", "test")
    assert result.exit_code == 1
    assert "invalidtoken" in result.stderr


# -- restarts and concurrency ----------------------------------------------------------------


def test_a_restart_mid_backlog_loses_nothing_and_applies_nothing_twice(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    users = [create_user(scim, f"user{n}@example.com") for n in range(6)]
    group = create_group(scim, "History", *(u["id"] for u in users))
    run(app, "enrolments", "add", "History", "101", "--role", "student")
    # The relay dies right after Moodle created the fourth account, and again after an
    # enrolment: its own bookkeeping (link, delivered row) never happens.
    moodle.fail("core_user_create_users", "pass", times=3)
    moodle.fail("core_user_create_users", "crash_after")
    with pytest.raises(SimulatedCrash):
        drain(relay, clock)
    restarted = make_relay(clock, seed=99)
    clock.advance(restarted.lease.total_seconds() + 1)  # the dead relay's lease runs out
    moodle.fail("enrol_manual_enrol_users", "crash_after")
    with pytest.raises(SimulatedCrash):
        drain(restarted, clock)
    clock.advance(restarted.lease.total_seconds() + 1)
    drain(make_relay(clock, seed=5), clock)

    state = moodle.state()
    names = sorted(f"user{n}@example.com" for n in range(6))
    assert sorted(state["users"]) == names  # each once: check-before-create found the 4th
    assert moodle.count("core_user_create_users") == 6
    assert state["cohorts"] == {"History": names}
    assert state["enrolments"] == [(name, 101, "student") for name in names]
    assert Outbox.select().count() == 0
    assert group


def test_concurrent_scim_writes_and_two_relays_converge_in_order(
    app: Flask, scim: Any, token: str, moodle: MoodleSim, clock: Clock
) -> None:
    users = [create_user(scim, f"c{n}@example.com") for n in range(8)]
    groups = [create_group(scim, f"Course group {n}") for n in range(2)]
    run(app, "enrolments", "add", "Course group 0", "101", "--role", "student")
    run(app, "enrolments", "add", "Course group 1", "102", "--role", "teacher", "--keep-on-leave")

    def writer(n: int) -> Any:
        def work(client: Any) -> None:
            user = users[n]
            for group in groups:
                join(client, group["id"], user["id"])
            set_active(client, user["id"], False)
            set_active(client, user["id"], n % 2 == 0)
            if n % 3 == 0:
                leave(client, groups[0]["id"], user["id"])
                leave(client, groups[1]["id"], user["id"])
            patch_ok(
                client, f"/Users/{user['id']}", {"op": "replace", "path": "title", "value": f"T{n}"}
            )

        return work

    errors = in_threads(app, [writer(n) for n in range(8)], token)
    assert not errors, errors

    relays = [make_relay(clock, seed=s) for s in (1, 2)]
    claimed: list[list[int]] = [[], []]

    def drive(index: int) -> None:
        """One relay's loop (`run_once`), noting which rows it claimed."""
        relay = relays[index]
        for _ in range(2000):
            rows = outbox.claim(relay.batch, relay.lease, now=clock())
            claimed[index].extend(r.id for r in rows)
            for row in rows:
                relay._deliver_one(row)
            if not rows and not Outbox.select().where(Outbox.state == "pending").exists():
                return

    threads = [threading.Thread(target=drive, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(claimed[0]) & set(claimed[1])  # never the same row twice at once
    assert Outbox.select().count() == 0

    state = moodle.state()
    stayed = [f"c{n}@example.com" for n in range(8) if n % 3]
    assert state["cohorts"] == {"Course group 0": stayed, "Course group 1": stayed}
    assert state["users"] == {
        f"c{n}@example.com": {"email": f"c{n}@example.com", "suspended": n % 2 == 1}
        for n in range(8)
    }
    expected = {(u, 101, "student") for u in stayed} | {
        (f"c{n}@example.com", 102, "editingteacher") for n in range(8)
    }
    assert set(state["enrolments"]) == expected


def test_nothing_reaches_the_outbox_for_a_change_that_rolled_back(scim: Any) -> None:
    create_user(scim, "kim@example.com")
    before = Outbox.select().count()
    clash = scim.post(
        "/Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "KIM@example.com",
        },
    )
    assert clash.status_code == 409
    assert Outbox.select().count() == before


def test_a_stopping_relay_gives_back_the_rows_it_did_not_start(
    scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    for n in range(3):
        create_user(scim, f"s{n}@example.com")
    stop = threading.Event()
    stop.set()
    assert relay.run_once(stop) == 3
    assert moodle.calls == []
    assert Outbox.select().where(Outbox.lease_until.is_null(False)).count() == 0
    drain(make_relay(clock, seed=3), clock)  # another relay takes them at once
    assert len(moodle.users) == 3
