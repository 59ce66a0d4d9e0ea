"""Which relay actions run for which user type (issue 17 §2) and the "sync users with no
enrolments" switch (§3), end to end against the simulated Moodle, on SQLite and PostgreSQL:
a type without `create` is matched, never created (held, with the reason in `users status`,
and caught up with its cohorts and enrolments once an account appears); without `update` its
profile is not pushed; without `deactivate` deactivation does not suspend; a change of
userType re-evaluates the user at once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from app.relay.worker import Relay
from app.store.models import AuditEvent, LmsUserHold, Outbox
from tests.helpers import create_group, create_user, invoke, patch_ok, run
from tests.relay.harness import Clock, drain, join, set_active
from tests.relay.moodle_sim import MoodleSim


def _suspended(moodle: MoodleSim) -> dict[str, bool]:
    """email → suspended."""
    return {u["email"]: bool(u["suspended"]) for u in moodle.users.values()}


def _rename(scim: Any, user_id: str, given: str) -> None:
    patch_ok(scim, f"/Users/{user_id}", {"op": "replace", "path": "name.givenName", "value": given})


def _retype(scim: Any, user_id: str, user_type: str) -> None:
    patch_ok(scim, f"/Users/{user_id}", {"op": "replace", "path": "userType", "value": user_type})


def _status(app: Flask, user: str) -> dict[str, Any]:
    shown = json.loads(run(app, "users", "status", user, "--format", "json").stdout)
    (target,) = shown["lmsTargets"]
    return target


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("default", "teacher", "create,delete"), "unknown action 'delete'"),
        (("default", "teacher", ","), "no action given"),
        (("default", "teacher", "none,create"), "unknown action 'none'"),
        (("nowhere", "teacher", "update"), "No LMS target 'nowhere'"),
        (("default", " teacher", "update"), "A userType"),
    ],
)
def test_lms_actions_refuses_bad_input_in_one_line(
    app: Flask, args: tuple[str, ...], message: str
) -> None:
    result = invoke(app, "lms", "actions", *args)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ")
    assert message in line
    assert "ACTIONS is `none` or a comma list" in line or "action" not in message


def test_lms_actions_are_stored_per_target_shown_and_audited(app: Flask) -> None:
    out = run(app, "lms", "actions", "default", "Teacher", "deactivate, UPDATE").stdout
    assert out.strip() == (
        "default: userType Teacher: update, deactivate (was: create, update, deactivate)."
    )
    run(app, "lms", "actions", "default", "parent", "none")
    again = run(app, "lms", "actions", "default", "teacher", "update,deactivate").stdout
    assert again.strip() == "default: userType teacher: update, deactivate."  # same type
    shown = json.loads(run(app, "lms", "show", "default", "--format", "json").stdout)
    assert shown["actions"] == {"parent": [], "teacher": ["update", "deactivate"]}
    assert shown["sync_unenrolled"] is True
    text = run(app, "lms", "show", "default").stdout
    assert "parent: none; teacher: update, deactivate; other types: all" in text
    with app.app_context():
        trail = [
            json.loads(e.changes)
            for e in AuditEvent.select().where(AuditEvent.operation == "lms_actions")
        ]
    assert [(t["userType"], t["actions"]) for t in trail] == [
        ("Teacher", {"before": "create, update, deactivate", "after": "update, deactivate"}),
        ("parent", {"before": "create, update, deactivate", "after": "none"}),
        ("teacher", {"before": "update, deactivate", "after": "update, deactivate"}),
    ]


def test_a_classter_school_students_created_teachers_matched_parents_left_alone(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    run(app, "lms", "actions", "default", "teacher", "update,deactivate")
    run(app, "lms", "actions", "default", "parent", "none")
    tina_lms = moodle.add_user("tina.t", "tina@school.example", firstname="T.")
    pam_lms = moodle.add_user("pam.p", "pam@school.example", firstname="P.")
    sam = create_user(scim, "sam@school.example", userType="student")
    tina = create_user(scim, "tina@school.example", userType="teacher")
    tom = create_user(scim, "tom@school.example", userType="Teacher")  # types fold
    create_user(scim, "pam@school.example", userType="parent")
    create_user(scim, "pete@school.example", userType="parent")
    drain(relay, clock)

    assert _suspended(moodle) == {
        "tina@school.example": False,
        "pam@school.example": False,
        "sam@school.example": False,  # a student: created
    }  # tom (teacher) and pete (parent) had no account: never created
    assert moodle.count("core_user_create_users") == 1
    assert moodle.users[tina_lms]["firstname"] == "Alice"  # update: the profile is pushed
    assert moodle.users[pam_lms]["firstname"] == "P."  # none: matched, nothing pushed
    assert moodle.count("core_user_update_users") == 1  # tina's

    held = _status(app, tom["id"])
    assert held["actions"] == ["update", "deactivate"]
    assert held["notCreated"] == (
        "userType Teacher: create not allowed on target default; no account matched by email"
    )
    text = run(app, "users", "status", tom["id"]).stdout
    assert (
        "LMS default:   actions update, deactivate; not created: userType Teacher: create not "
        "allowed on target default; no account matched by email"
    ) in text
    student = _status(app, sam["id"])
    assert (student["actions"], student["actionsConfigured"]) == (
        ["create", "update", "deactivate"],
        False,
    )
    assert student["summary"].endswith("(created)")
    assert _status(app, tina["id"])["summary"] == (
        f"actions update, deactivate; account {tina_lms} (matched)"
    )


def test_the_admin_user_page_says_why_a_user_was_not_created(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock, signed_in: Any
) -> None:
    run(app, "lms", "actions", "default", "teacher", "update")
    tom = create_user(scim, "tom@school.example", userType="teacher")
    drain(relay, clock)
    page = signed_in.get(f"/admin/users/{tom['id']}").get_data(as_text=True)
    assert (
        '<p class="small" data-target="default">default: actions update; not created: userType '
        "teacher: create not allowed on target default; no account matched by email</p>"
    ) in page


def test_a_held_user_catches_up_with_cohorts_and_enrolments_once_an_account_appears(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    run(app, "lms", "actions", "default", "teacher", "update,deactivate")
    tom = create_user(scim, "tom@school.example", userType="teacher")
    create_group(scim, "Maths", tom["id"])
    run(app, "enrolments", "add", "Maths", "101", "--role", "teacher")
    drain(relay, clock)
    assert moodle.users == {}
    assert moodle.state()["cohorts"] == {"Maths": []}
    with app.app_context():
        assert LmsUserHold.select().count() == 1

    # The school's other system makes his account; his next change here links it.
    moodle.add_user("tom.teacher", "tom@school.example")
    _rename(scim, tom["id"], "Thomas")
    drain(relay, clock)
    state = moodle.state()
    assert state["cohorts"] == {"Maths": ["tom.teacher"]}
    assert state["enrolments"] == [("tom.teacher", 101, "editingteacher")]
    assert moodle.count("core_user_create_users") == 0
    with app.app_context():
        assert LmsUserHold.select().count() == 0
    assert _status(app, tom["id"])["notCreated"] is None

    # Setting a type's actions again (even unchanged) looks again for its held users' accounts.
    tia = create_user(scim, "tia@school.example", userType="teacher")
    drain(relay, clock)
    assert _status(app, tia["id"])["notCreated"] is not None
    moodle.add_user("tia.teacher", "tia@school.example")
    run(app, "lms", "actions", "default", "teacher", "update,deactivate")
    drain(relay, clock)
    assert _status(app, tia["id"])["summary"].endswith("(matched)")


def test_a_change_of_user_type_re_evaluates_the_user_at_once(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    run(app, "lms", "actions", "default", "teacher", "update,deactivate")
    run(app, "lms", "actions", "default", "alumnus", "none")
    kim = create_user(scim, "kim@school.example", userType="teacher")
    create_group(scim, "Maths", kim["id"])
    run(app, "enrolments", "add", "Maths", "101", "--role", "student")
    drain(relay, clock)
    assert moodle.users == {}

    _retype(scim, kim["id"], "student")  # a student may be created: at once, in step
    drain(relay, clock)
    state = moodle.state()
    assert _suspended(moodle) == {"kim@school.example": False}
    assert state["cohorts"] == {"Maths": ["kim@school.example"]}
    assert state["enrolments"] == [("kim@school.example", 101, "student")]

    _retype(scim, kim["id"], "alumnus")  # none: nothing pushed from now on
    _rename(scim, kim["id"], "Kimberly")
    set_active(scim, kim["id"], False)
    drain(relay, clock)
    (account,) = moodle.users.values()
    assert (account["firstname"], account["suspended"]) == ("Alice", 0)


def test_without_update_the_profile_is_not_pushed_but_deactivation_suspends(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    run(app, "lms", "actions", "default", "staff", "create,deactivate")
    ann = create_user(scim, "ann@school.example", userType="staff")
    drain(relay, clock)
    (account,) = moodle.users.values()
    assert account["firstname"] == "Alice"  # created with the profile
    _rename(scim, ann["id"], "Annie")
    drain(relay, clock)
    assert account["firstname"] == "Alice"
    set_active(scim, ann["id"], False)
    drain(relay, clock)
    assert (account["firstname"], account["suspended"]) == ("Alice", 1)
    set_active(scim, ann["id"], True)
    drain(relay, clock)
    assert account["suspended"] == 0
    calls = [p["users"][0] for name, p in moodle.calls if name == "core_user_update_users"]
    # Only the suspension (deactivate) was ever pushed, never the profile.
    assert [sorted(call) for call in calls] == [["id", "suspended"]] * 3


def test_without_deactivate_deactivation_does_not_suspend(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    run(app, "lms", "actions", "default", "teacher", "create,update")
    ted = create_user(scim, "ted@school.example", userType="teacher")
    drain(relay, clock)
    set_active(scim, ted["id"], False)
    _rename(scim, ted["id"], "Edward")
    drain(relay, clock)
    (account,) = moodle.users.values()
    assert (account["firstname"], account["suspended"]) == ("Edward", 0)
    # Setting the actions again re-evaluates the type's users at once: now suspended.
    with app.app_context():
        Outbox.delete().execute()
    run(app, "lms", "actions", "default", "teacher", "create,update,deactivate")
    with app.app_context():
        assert [r.user_id for r in Outbox.select()] == [ted["id"]]
    drain(relay, clock)
    assert account["suspended"] == 1


def test_sync_unenrolled_off_creates_only_users_a_rule_of_the_target_enrols(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    refused = invoke(app, "lms", "set", "default", "sync_unenrolled=maybe")
    assert refused.exit_code == 1
    assert "sync_unenrolled is true or false: 'maybe'." in refused.output
    run(app, "lms", "set", "default", "sync_unenrolled=false")
    assert (
        json.loads(run(app, "lms", "show", "default", "--format", "json").stdout)["sync_unenrolled"]
        is False
    )
    ann = create_user(scim, "ann@school.example")
    bob = create_user(scim, "bob@school.example")
    moodle.add_user("carl", "carl@school.example")
    create_user(scim, "carl@school.example")  # has an account: matched all the same
    physics = create_group(scim, "Physics", ann["id"])
    run(app, "enrolments", "add", "Physics", "101", "--role", "student")
    create_group(scim, "Chess club", bob["id"])
    drain(relay, clock)
    assert set(_suspended(moodle)) == {"ann@school.example", "carl@school.example"}
    assert _status(app, bob["id"])["notCreated"] == (
        "no enrolment rule of target default gives them a course (sync_unenrolled=false); "
        "no account matched by email"
    )

    join(scim, physics["id"], bob["id"])  # a rule now gives him a course: created, in step
    drain(relay, clock)
    assert moodle.state()["cohorts"] == {
        "Chess club": ["bob@school.example"],
        "Physics": ["ann@school.example", "bob@school.example"],
    }
    assert ("bob@school.example", 101, "student") in moodle.state()["enrolments"]

    dan = create_user(scim, "dan@school.example")
    drain(relay, clock)
    assert "dan@school.example" not in _suspended(moodle)
    run(app, "lms", "set", "default", "sync_unenrolled=true")  # back on: everyone, at once
    drain(relay, clock)
    assert "dan@school.example" in _suspended(moodle)
    assert _status(app, dan["id"])["summary"].endswith("(created)")
