"""Enrolments with dates and role options (issue 17 §3), end to end against the simulated
Moodle, on SQLite and PostgreSQL: `enrolments add … --start/--end/--no-end-for` sets Moodle's
`timestart`/`timeend` on `enrol_manual_enrol_users`, a rule's new dates reach the enrolments it
already made, roles are named from the target's `--roles` map (custom ones too) and an unknown
role or a bad date is refused when the rule is made, never at delivery."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask

from app import runtime
from app.relay.dispatch import Dispatcher
from app.relay.worker import Relay, Settings, relay_from
from app.store.models import AuditEvent, EnrolmentRule, Outbox
from tests.helpers import create_group, create_user, feed, invoke, run
from tests.relay.harness import B_URL, Clock, drain, join, leave, make_relay
from tests.relay.moodle_sim import TOKEN, MoodleSim

START, END = "2027-01-15", "2027-06-30T12:00:00Z"
T_START = int(dt.datetime(2027, 1, 15, tzinfo=dt.UTC).timestamp())
T_END = int(dt.datetime(2027, 6, 30, 12, tzinfo=dt.UTC).timestamp())
T_JULY = int(dt.datetime(2027, 7, 31, tzinfo=dt.UTC).timestamp())


def _times(moodle: MoodleSim) -> dict[tuple[str, int], tuple[int, int]]:
    """(username, course) → (timestart, timeend) of each user enrolment."""
    names = {uid: u["username"] for uid, u in moodle.users.items()}
    return {
        (names[user], course): (start, end)
        for (user, course), (start, end, _status) in moodle.enrolment_times.items()
    }


def _enrol_calls(moodle: MoodleSim) -> list[dict[str, str]]:
    return [
        e for name, params in moodle.calls if name == "enrol_manual_enrol_users"
        for e in params["enrolments"]
    ]  # fmt: skip


def test_a_dated_rule_sets_timestart_and_timeend(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    ann = create_user(scim, "ann@school.example")
    create_group(scim, "Physics", ann["id"])
    out = run(
        app, "enrolments", "add", "Physics", "101", "--role", "student", "--start", START,
        "--end", END,
    ).stdout  # fmt: skip
    assert out.strip().endswith(
        "as student; leavers are unenrolled; from 2027-01-15T00:00:00Z until 2027-06-30T12:00:00Z."
    )
    drain(relay, clock)
    (call,) = _enrol_calls(moodle)
    assert (call["timestart"], call["timeend"]) == (str(T_START), str(T_END))
    assert _times(moodle) == {("ann@school.example", 101): (T_START, T_END)}
    listed = json.loads(run(app, "enrolments", "list", "--format", "json").stdout)
    assert [(r["start"], r["end"], r["noEndFor"]) for r in listed] == [
        ("2027-01-15T00:00:00Z", "2027-06-30T12:00:00Z", [])
    ]
    table = run(app, "enrolments", "list").stdout.splitlines()
    assert table[0].split()[-1] == "dates"
    assert table[1].endswith("from 2027-01-15T00:00:00Z until 2027-06-30T12:00:00Z")


def test_no_end_for_a_role_drops_the_end_date_for_its_enrolments(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    """Teachers keep access after the end date: the students' rule ends, the teachers' (same
    dates, `--no-end-for teacher`) does not; one user with both roles in a course has Moodle's
    one user enrolment there, without an end."""
    ann = create_user(scim, "ann@school.example")
    tess = create_user(scim, "tess@school.example")
    create_group(scim, "Physics", ann["id"])
    staff = create_group(scim, "Physics staff", tess["id"])
    dates = ("--start", START, "--end", END, "--no-end-for", "teacher")
    run(app, "enrolments", "add", "Physics", "101", "--role", "student", *dates)
    run(app, "enrolments", "add", "Physics staff", "101", "--role", "teacher", *dates)
    drain(relay, clock)
    assert _times(moodle) == {
        ("ann@school.example", 101): (T_START, T_END),
        ("tess@school.example", 101): (T_START, 0),
    }
    join(scim, staff["id"], ann["id"])  # ann now teaches too: her enrolment loses its end
    drain(relay, clock)
    assert _times(moodle)[("ann@school.example", 101)] == (T_START, 0)
    assert ("ann@school.example", 101, "editingteacher") in moodle.state()["enrolments"]
    leave(scim, staff["id"], ann["id"])  # and gets it back when she stops
    drain(relay, clock)
    assert _times(moodle)[("ann@school.example", 101)] == (T_START, T_END)
    assert ("ann@school.example", 101, "editingteacher") not in moodle.state()["enrolments"]


def test_changing_a_rules_dates_updates_the_enrolments_it_made(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    ann = create_user(scim, "ann@school.example")
    bob = create_user(scim, "bob@school.example")
    create_group(scim, "Physics", ann["id"], bob["id"])
    run(app, "enrolments", "add", "Physics", "101", "--role", "student", "--start", START)
    drain(relay, clock)
    assert set(_times(moodle).values()) == {(T_START, 0)}

    out = run(app, "enrolments", "set", "Physics", "101", "--end", "2027-07-31").stdout
    assert out.strip() == (
        "'Physics', course 101 (student): from 2027-01-15T00:00:00Z until 2027-07-31T00:00:00Z."
    )
    drain(relay, clock)
    assert set(_times(moodle).values()) == {(T_START, T_JULY)}
    assert len(_enrol_calls(moodle)) == 4  # two enrolments, then each redated once
    assert moodle.state()["enrolments"] == [
        ("ann@school.example", 101, "student"),
        ("bob@school.example", 101, "student"),
    ]
    drain(relay, clock)  # in step: nothing more is sent
    assert len(_enrol_calls(moodle)) == 4

    run(app, "enrolments", "set", "Physics", "101", "--start", "none", "--end", "none")
    drain(relay, clock)
    assert set(_times(moodle).values()) == {(0, 0)}
    # `add` again states the whole rule: its dates too.
    run(app, "enrolments", "add", "Physics", "101", "--role", "student", "--end", END)
    drain(relay, clock)
    assert set(_times(moodle).values()) == {(0, T_END)}
    with app.app_context():
        trail = [
            json.loads(e.changes)
            for e in AuditEvent.select()
            .where(AuditEvent.resource_type == "EnrolmentRule")
            .order_by(AuditEvent.id)
        ]
    assert trail[1] == {
        "courseId": "101",
        "end": {"before": None, "after": "2027-07-31T00:00:00Z"},
    }
    assert trail[3]["end"] == {"before": None, "after": "2027-06-30T12:00:00Z"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--role", "mentor"), "Unknown role 'mentor': the LMS target's roles are student, "
                               "teacher (add one with `lms-scim lms set NAME roles=…`)."),
        (("--role", "student", "--start", "next monday"),
         "--start must be an ISO 8601 date or date-time (e.g. 2027-01-15 or "
         "2027-01-15T08:00:00Z): 'next monday'."),
        (("--role", "student", "--end", "2027-13-01"), "--end must be an ISO 8601 date"),
        (("--role", "student", "--start", "2027-02-01", "--end", "2027-01-31T23:59:59Z"),
         "The end (2027-01-31T23:59:59Z) must be after the start (2027-02-01T00:00:00Z)."),
        (("--role", "student", "--start", END, "--end", END), "must be after the start"),
        (("--role", "student", "--end", END, "--no-end-for", "mentor"), "Unknown role 'mentor'"),
    ],
)  # fmt: skip
def test_bad_dates_and_unknown_roles_are_refused_when_the_rule_is_added(
    app: Flask, scim: Any, args: tuple[str, ...], message: str
) -> None:
    create_group(scim, "Physics")
    result = invoke(app, "enrolments", "add", "Physics", "101", *args)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line == f"Error: {message}" or (line.startswith("Error: ") and message in line)
    with app.app_context():
        assert EnrolmentRule.select().count() == 0


def test_enrolments_set_refuses_bad_changes(app: Flask, scim: Any) -> None:
    create_group(scim, "Physics")
    run(app, "enrolments", "add", "Physics", "101", "--role", "student", "--end", END)
    for args, message in (
        ((), "Give --start, --end or --no-end-for."),
        (("--start", "2027-07-01"), "must be after the start"),
        (("--no-end-for", "tutor"), "Unknown role 'tutor'"),
        (("--start", "soon"), "--start must be an ISO 8601 date"),
    ):
        result = invoke(app, "enrolments", "set", "Physics", "101", *args)
        assert result.exit_code == 1, args
        assert message in result.output, result.output
    missing = invoke(app, "enrolments", "set", "Physics", "102", "--end", END)
    assert "Group 'Physics' has no rule for course 102." in missing.output
    shown = json.loads(run(app, "enrolments", "list", "--format", "json").stdout)
    assert [(r["start"], r["end"]) for r in shown] == [(None, "2027-06-30T12:00:00Z")]


def test_custom_roles_come_from_the_targets_roles_map(
    app: Flask, scim: Any, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    _, site_b = sites
    bad = feed(app, TOKEN + "\n", "lms", "add", "b", "--url", B_URL, "--roles",
               "student=5,teacher=3,a-very-long-role-name=4")  # fmt: skip
    assert bad.exit_code == 1
    assert "A role name is a letter, then up to 15 letters" in bad.output
    added = feed(app, TOKEN + "\n", "lms", "add", "b", "--url", B_URL, "--roles",
                 "student=5,teacher=3,mentor=4")  # fmt: skip
    assert added.exit_code == 0, added.output
    ann = create_user(scim, "ann@school.example")
    create_group(scim, "Mentors", ann["id"])
    refused = invoke(app, "enrolments", "add", "Mentors", "101", "--role", "mentor", "--lms",
                     "default")  # fmt: skip
    assert refused.exit_code == 1
    assert "Unknown role 'mentor': the LMS target's roles are student, teacher" in refused.output
    run(app, "enrolments", "add", "Mentors", "101", "--role", "mentor", "--lms", "b",
        "--end", END, "--no-end-for", "mentor")  # fmt: skip
    current = runtime.of(app)
    Dispatcher(
        settings_for=current.tenant_settings,
        build=lambda settings: relay_from(settings, 2000, 50),
        secret_box=current.secret_box,
    ).run_due()
    # Moodle's role 4 (the non-editing "teacher"), without an end.
    assert site_b.state()["enrolments"] == [("ann@school.example", 101, "teacher")]
    assert _times(site_b) == {("ann@school.example", 101): (0, 0)}
    # The map must keep the roles rules use: refused when changed, not at delivery.
    dropped = invoke(app, "lms", "set", "b", "roles=student=5,teacher=3")
    assert dropped.exit_code == 1
    assert dropped.output.strip() == (
        "Error: LMS target 'b': enrolment rules use roles the new map lacks: "
        "mentor (Mentors → course 101); change or remove those rules first."
    )
    run(app, "lms", "set", "b", "roles=student=5,teacher=3,mentor=4,tutor=4")


def test_a_role_map_keeps_the_roles_rules_use_whoever_changes_it(
    app: Flask, scim: Any, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    """An unknown role is refused when a rule is made; dropping a role from a map later must
    not bring that failure back at delivery. `tenants set SLUG LMS_ROLE_IDS=…` is the map of
    `default` and of every target added without `--roles`, `lms set NAME roles=…` one target's
    own: both refuse a map without a role a rule of theirs names (as its role or in its
    `--no-end-for`), naming the rules, and change nothing."""
    run(app, "tenants", "set", "default", "LMS_ROLE_IDS=student=5,teacher=3,mentor=9")
    added = feed(app, TOKEN + "\n", "lms", "add", "b", "--url", B_URL)  # the tenant's map
    assert added.exit_code == 0, added.output
    ann = create_user(scim, "ann@school.example")
    create_group(scim, "Mentors", ann["id"])
    create_group(scim, "Physics", ann["id"])
    run(app, "enrolments", "add", "Mentors", "101", "--role", "mentor", "--lms", "default")
    run(app, "enrolments", "add", "Physics", "102", "--role", "student", "--lms", "b",
        "--end", END, "--no-end-for", "mentor")  # fmt: skip
    events = AuditEvent.select().count()

    def roles_setting() -> str:
        shown = json.loads(run(app, "tenants", "show", "default", "--format", "json").stdout)
        return str(shown["settings"]["LMS_ROLE_IDS"]["value"])

    for value in ("student=5,teacher=3", ""):  # another map, or back to the environment's
        refused = invoke(app, "tenants", "set", "default", "UNIQUE_EMAILS=no",
                         f"LMS_ROLE_IDS={value}")  # fmt: skip
        assert refused.exit_code == 1
        assert refused.output.strip() == (
            "Error: LMS_ROLE_IDS (the role map of LMS target(s) default, b): enrolment rules "
            "use roles the new map lacks: mentor (Mentors → course 101 on default), mentor "
            "(Physics → course 102 on b, --no-end-for); change or remove those rules first."
        )
    assert roles_setting() == "student=5,teacher=3,mentor=9"
    shown = json.loads(run(app, "tenants", "show", "default", "--format", "json").stdout)
    assert shown["settings"]["UNIQUE_EMAILS"]["source"] == "default"
    assert AuditEvent.select().count() == events

    # `lms set` sees a `--no-end-for` role too; the whole change is refused.
    refused = invoke(app, "lms", "set", "b", f"url={B_URL}/other", "roles=student=5,teacher=3")
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "Error: LMS target 'b': enrolment rules use roles the new map lacks: "
        "mentor (Physics → course 102, --no-end-for); change or remove those rules first."
    )
    b = json.loads(run(app, "lms", "show", "b", "--format", "json").stdout)
    assert (b["url"], b["roles"]) == (B_URL, "student=5,teacher=3,mentor=9")
    assert AuditEvent.select().count() == events

    # With its own map, b leaves the tenant's; without default's mentor rule the tenant's map
    # may drop mentor.
    run(app, "lms", "set", "b", "roles=student=5,teacher=3,mentor=4")
    run(app, "enrolments", "remove", "Mentors", "101", "--lms", "default")
    run(app, "tenants", "set", "default", "LMS_ROLE_IDS=student=5,teacher=3")
    assert roles_setting() == "student=5,teacher=3"


def test_a_role_dropped_from_the_map_after_it_was_given_is_a_dead_letter_not_kept_silently(
    app: Flask, scim: Any, moodle: MoodleSim, clock: Clock
) -> None:
    """A role given in a course that stays (another rule gives another role there) is taken
    away when no rule gives it any more; when the map no longer has its id, the relay cannot
    take it away and says so in a dead letter, instead of leaving it in Moodle unnoticed."""
    run(app, "tenants", "set", "default", "LMS_ROLE_IDS=student=5,teacher=3,mentor=4")
    ann = create_user(scim, "ann@school.example")
    create_group(scim, "Physics", ann["id"])
    create_group(scim, "Mentors", ann["id"])
    run(app, "enrolments", "add", "Physics", "101", "--role", "student")
    run(app, "enrolments", "add", "Mentors", "101", "--role", "mentor")
    drain(make_relay(clock, Settings(role_ids={"student": 5, "teacher": 3, "mentor": 4})), clock)
    assert moodle.state()["enrolments"] == [
        ("ann@school.example", 101, "student"),
        ("ann@school.example", 101, "teacher"),  # Moodle's role 4
    ]
    run(app, "enrolments", "remove", "Mentors", "101")
    run(app, "tenants", "set", "default", "LMS_ROLE_IDS=student=5,teacher=3")  # no rule uses it
    drain(make_relay(clock, Settings(role_ids={"student": 5, "teacher": 3})), clock)
    (dead,) = Outbox.select().where(Outbox.state == "dead")
    assert "no LMS role id for role 'mentor' to take away" in dead.last_error
    assert ("ann@school.example", 101, "teacher") in moodle.state()["enrolments"]
