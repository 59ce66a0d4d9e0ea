"""Courses and categories made from groups (issue 17 §4), end to end against the simulated Moodle
on SQLite and PostgreSQL: `courses map` → the course and its category tree, made once (a second
run, a lost response, two relays racing on one path), found by idnumber then shortname on first
sight and by LMS id afterwards; renames followed only when asked; template courses copied;
`enrolments add GROUP mapped`; and bad input refused in one line."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask import Flask

from app import runtime
from app.relay.courses import COURSE_FUNCTIONS, Courses, category_idnumber
from app.relay.dispatch import Dispatcher
from app.relay.moodle import REQUIRED_FUNCTIONS, LmsError, MoodleClient
from app.relay.worker import Relay, relay_from
from app.store import lms_targets, outbox
from app.store.db import database
from app.store.models import AuditEvent, CategoryLink, CourseMap, Outbox
from scim_schemas import LMS_USER
from tests.helpers import create_group, create_user, feed, invoke, patch_ok, run
from tests.relay.harness import A_URL, B_URL, Clock, drain, join, leave, make_relay
from tests.relay.moodle_sim import TOKEN, URL, MoodleSim, SimulatedCrash

COURSE_CALLS = ("core_course_create_courses", "core_course_duplicate_course")


def _map(app: Flask, group: str, *args: str) -> Any:
    return run(app, "courses", "map", group, *args)


def _physics(scim: Any, *members: str, name: str = "Physics", external_id: str = "7B") -> str:
    group = create_group(scim, name, *members, externalId=external_id)
    return str(group["id"])


def _rename(scim: Any, group_id: str, name: str, external_id: str) -> None:
    patch_ok(
        scim,
        f"/Groups/{group_id}",
        {"op": "replace", "value": {"displayName": name, "externalId": external_id}},
    )


def _course_calls(moodle: MoodleSim) -> list[str]:
    return [name for name, _ in moodle.calls if "core_course_" in name]


def _requeue(group_id: str) -> None:
    """The group's row again (as a rename or a replayed delivery would queue it)."""
    outbox.group(group_id)


# -- making the course -----------------------------------------------------------------------


def test_map_makes_the_course_and_its_category_tree_once(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    physics = _physics(scim)
    templates = (
        "--shortname",
        "{displayName}-{externalId}",
        "--fullname",
        "{displayName} ({externalId})",
        "--category",
        "School/Year {externalId}",
    )
    out = _map(app, "Physics", *templates)
    assert "Group 'Physics' has a course: shortname '{displayName}-{externalId}'" in out.stdout
    drain(relay, clock)
    assert moodle.course_list() == [
        ("Physics-7B", "Physics (7B)", "School/Year 7B", f"lms-scim:{physics}")
    ]
    assert moodle.category_paths() == ["Category 1", "School", "School/Year 7B"]
    school = next(c for c in moodle.categories.values() if c["name"] == "School")
    assert school["idnumber"] == "lms-scim:School" == category_idnumber("School")
    listed = json.loads(run(app, "courses", "list", "--format", "json").stdout)
    (course_id,) = [
        cid for cid, c in moodle.course_records.items() if c["shortname"] == "Physics-7B"
    ]
    assert [(m["group"], m["lmsCourseId"], m["category"]) for m in listed] == [
        ("Physics", course_id, "School/Year {externalId}")
    ]

    # The same map again changes nothing; the group's row again: the link is used, no call.
    assert "has a course" in _map(app, "Physics", *templates).stdout
    calls = _course_calls(moodle)
    _requeue(physics)
    drain(relay, clock)
    assert _course_calls(moodle) == calls

    # Links forgotten (a database restored from a backup): first sight finds the same course
    # by idnumber and the categories by theirs; nothing is made twice.
    CourseMap.update(lms_id=None).execute()
    CategoryLink.delete().execute()
    _requeue(physics)
    drain(relay, clock)
    assert moodle.count("core_course_create_courses") == 1
    assert moodle.count("core_course_create_categories") == 2
    assert len(moodle.course_list()) == 1
    assert moodle.category_paths() == ["Category 1", "School", "School/Year 7B"]
    (linked,) = CourseMap.select(CourseMap.lms_id).tuples()
    assert linked == (course_id,)
    operations = [
        e.operation for e in AuditEvent.select().where(AuditEvent.resource_type == "CourseMap")
    ]
    assert operations == ["map"]


def test_first_sight_adopts_a_course_by_shortname_and_a_category_by_name(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    school = moodle.add_category("School")  # made by hand: no idnumber
    existing = moodle.add_course("Physics-7B", "Physics, by hand")
    physics = _physics(scim)
    _physics(scim, name="Chemistry", external_id="8C")
    template = ("--shortname", "{displayName}-{externalId}", "--category", "School/{externalId}")
    _map(app, physics, *template)
    _map(app, "Chemistry", *template)
    drain(relay, clock)
    assert moodle.count("core_course_create_courses") == 1  # Chemistry's only
    assert moodle.course_records[existing]["idnumber"] == f"lms-scim:{physics}"  # adopted
    assert moodle.course_records[existing]["fullname"] == "Physics, by hand"  # left as it was
    assert moodle.category_paths() == ["Category 1", "School", "School/8C"]
    assert moodle.categories[school]["idnumber"] == ""  # a matched category keeps its own
    assert moodle.count("core_course_create_categories") == 1  # "8C" only, under School


def test_casing_applies_to_what_the_templates_render(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    _physics(scim, name="Physics Lab", external_id="7b")
    _map(
        app,
        "Physics Lab",
        "--shortname",
        "{externalId}-{displayName}",
        "--category",
        "Science/{displayName}",
        "--casing",
        "upper",
    )
    drain(relay, clock)
    (course,) = moodle.course_list()
    assert course[:3] == ("7B-PHYSICS LAB", "PHYSICS LAB", "SCIENCE/PHYSICS LAB")


def test_a_lost_response_after_a_create_is_retried_without_a_second_course(
    app: Flask, scim: Any, moodle: MoodleSim, clock: Clock
) -> None:
    physics = _physics(scim)
    _map(app, "Physics", "--shortname", "{displayName}-{externalId}", "--category", "A/B")
    # The relay dies right after Moodle made the first category, and again after the course.
    moodle.fail("core_course_create_categories", "crash_after")
    with pytest.raises(SimulatedCrash):
        drain(make_relay(clock), clock)
    restarted = make_relay(clock, seed=99)
    clock.advance(restarted.lease.total_seconds() + 1)  # the dead relay's lease runs out
    moodle.fail("core_course_create_courses", "crash_after")
    with pytest.raises(SimulatedCrash):
        drain(restarted, clock)
    clock.advance(restarted.lease.total_seconds() + 1)
    drain(make_relay(clock, seed=5), clock)

    assert moodle.count("core_course_create_courses") == 1
    assert moodle.count("core_course_create_categories") == 2
    assert moodle.course_list() == [("Physics-7B", "Physics", "A/B", f"lms-scim:{physics}")]
    assert moodle.category_paths() == ["A", "A/B", "Category 1"]
    assert Outbox.select().count() == 0


def test_two_relays_racing_on_one_category_path_make_it_once(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    _physics(scim)
    create_group(scim, "Chemistry", externalId="7B")
    for group in ("Physics", "Chemistry"):
        _map(app, group, "--shortname", "{displayName}", "--category", "School/Year {externalId}")
    other = Courses(MoodleClient(URL, TOKEN, timeout=2.0), lms_targets.default_id())

    def other_relay_makes_the_path() -> None:
        """Another relay, between this one's look-ups (which found nothing) and its create."""
        assert other.category(("School", "Year 7B")) > 1

    moodle.before["core_course_create_categories"] = other_relay_makes_the_path
    drain(relay, clock)

    assert moodle.category_paths() == ["Category 1", "School", "School/Year 7B"]
    refused = [p for name, p in moodle.calls if name == "!core_course_create_categories"]
    assert [p["categories"][0]["name"] for p in refused] == ["School"]  # then read back
    assert [c[:3] for c in moodle.course_list()] == [
        ("Chemistry", "Chemistry", "School/Year 7B"),
        ("Physics", "Physics", "School/Year 7B"),
    ]
    paths = sorted(p for (p,) in CategoryLink.select(CategoryLink.path).tuples())
    assert paths == ["School", "School/Year 7B"]


def test_two_relays_in_threads_racing_on_one_category_path_make_it_once(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    _physics(scim)
    create_group(scim, "Chemistry", externalId="7B")
    drain(relay, clock)  # the cohorts
    for group in ("Physics", "Chemistry"):
        _map(app, group, "--shortname", "{displayName}", "--category", "School/Year {externalId}")
    # Each relay takes one group; both miss each level, and both create it at once.
    moodle.rendezvous["core_course_create_categories"] = threading.Barrier(2, timeout=10)
    relays = [make_relay(clock, seed=s) for s in (1, 2)]
    errors: list[BaseException] = []

    def deliver(one: Relay) -> None:
        one.batch = 1
        try:
            one.run_once()
        except BaseException as exc:  # re-raised by the test
            errors.append(exc)
        finally:
            if not database.is_closed():
                database.close()

    threads = [threading.Thread(target=deliver, args=(r,)) for r in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert Outbox.select().count() == 0
    assert moodle.category_paths() == ["Category 1", "School", "School/Year 7B"]
    refused = [p["categories"][0]["name"] for n, p in moodle.calls if n.startswith("!")]
    assert sorted(refused) == ["School", "Year 7B"]  # one loser per level, which read it back
    assert [c[:3] for c in moodle.course_list()] == [
        ("Chemistry", "Chemistry", "School/Year 7B"),
        ("Physics", "Physics", "School/Year 7B"),
    ]


def test_two_relays_racing_on_one_course_make_it_once(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    physics = _physics(scim)
    _map(app, "Physics", "--shortname", "{displayName}", "--category", "School")
    other = Courses(MoodleClient(URL, TOKEN, timeout=2.0), lms_targets.default_id())

    def other_relay_makes_the_course() -> None:
        assert other.sync(physics)

    moodle.before["core_course_create_courses"] = other_relay_makes_the_course
    drain(relay, clock)
    refused = [p for name, p in moodle.calls if name == "!core_course_create_courses"]
    assert len(refused) == 1  # `shortnametaken`: then found by idnumber
    assert moodle.course_list() == [("Physics", "Physics", "School", f"lms-scim:{physics}")]
    (linked,) = CourseMap.select(CourseMap.lms_id).tuples()
    assert linked == (next(cid for cid in moodle.course_records if cid > 1000),)


def test_a_category_deleted_on_the_lms_is_made_again(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    physics = _physics(scim)
    create_group(scim, "Chemistry", externalId="8C")
    _map(app, "Physics", "--shortname", "{displayName}", "--category", "School/{externalId}")
    drain(relay, clock)
    # Someone deletes "School" (and what is in it) on the LMS; the link still names it.
    school = next(cid for cid, c in moodle.categories.items() if c["name"] == "School")
    moodle.categories = {k: c for k, c in moodle.categories.items() if k == 1}
    moodle.course_records = {k: c for k, c in moodle.course_records.items() if k < 1000}
    _map(app, "Chemistry", "--shortname", "{displayName}", "--category", "School/{externalId}")
    drain(relay, clock)
    # The parent was missing (`unknowcategory`): the path is looked up again and made anew.
    assert "!core_course_create_categories" in [name for name, _ in moodle.calls]
    assert moodle.category_paths() == ["Category 1", "School", "School/8C"]
    assert school not in moodle.categories
    assert physics


# -- renames ---------------------------------------------------------------------------------


def test_a_rename_changes_the_course_only_with_follow_renames(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    physics = _physics(scim)
    chemistry = _physics(scim, name="Chemistry", external_id="8C")
    template = ("--shortname", "{displayName}-{externalId}", "--category", "School/{externalId}")
    _map(app, "Physics", *template)
    _map(app, "Chemistry", *template, "--follow-renames")
    drain(relay, clock)
    made = moodle.course_list()
    creates = moodle.count("core_course_create_courses")

    _rename(scim, physics, "Physics A", "7A")
    _rename(scim, chemistry, "Chemistry B", "8B")
    drain(relay, clock)
    assert moodle.count("core_course_create_courses") == creates
    assert moodle.course_list() == sorted(
        [
            made[1],  # Physics: as it was
            ("Chemistry B-8B", "Chemistry B", "School/8B", f"lms-scim:{chemistry}"),
        ]
    )
    assert moodle.category_paths() == [
        "Category 1",
        "School",
        "School/7B",
        "School/8B",
        "School/8C",
    ]
    assert "School/7A" not in moodle.category_paths()  # Physics' course did not move
    assert moodle.count("core_course_update_courses") == 1


def test_new_templates_change_an_existing_course_only_with_follow_renames(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    physics = _physics(scim)
    _map(app, "Physics", "--shortname", "{displayName}")
    drain(relay, clock)
    _map(app, "Physics", "--shortname", "{displayName}-{externalId}")
    drain(relay, clock)
    assert [c[0] for c in moodle.course_list()] == ["Physics"]
    _map(app, "Physics", "--shortname", "{externalId}", "--follow-renames", "--casing", "lower")
    drain(relay, clock)
    assert moodle.course_list() == [("7b", "physics", "Category 1", f"lms-scim:{physics}")]
    assert moodle.count("core_course_create_courses") == 1
    changes = [
        json.loads(e.changes)
        for e in AuditEvent.select().where(AuditEvent.resource_type == "CourseMap")
    ]
    assert changes[-1]["shortname"] == {
        "before": "{displayName}-{externalId}",
        "after": "{externalId}",
    }


# -- template courses ------------------------------------------------------------------------


def test_a_template_course_is_copied_and_a_lost_copy_is_not_made_twice(
    app: Flask, scim: Any, moodle: MoodleSim, clock: Clock
) -> None:
    template = moodle.add_course("TEMPLATE", "Course template", format="weeks")
    physics = _physics(scim)
    _map(app, "Physics", "--shortname", "{displayName}", "--template-course", str(template))
    moodle.fail("core_course_duplicate_course", "crash_after")  # copied; idnumber not set yet
    with pytest.raises(SimulatedCrash):
        drain(make_relay(clock), clock)
    clock.advance(301)
    drain(make_relay(clock, seed=3), clock)
    assert moodle.count("core_course_duplicate_course") == 1
    assert moodle.count("core_course_create_courses") == 0
    (copy,) = [c for c in moodle.course_records.values() if c.get("duplicated_from") == template]
    assert (copy["shortname"], copy["format"], copy["categoryid"]) == ("Physics", "weeks", 1)
    assert copy["idnumber"] == f"lms-scim:{physics}"  # set after the copy (found by shortname)


def test_a_missing_template_course_is_a_dead_letter_with_the_reason(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    _physics(scim)
    drain(relay, clock)  # the cohort
    _map(app, "Physics", "--shortname", "{displayName}", "--template-course", "999")
    drain(relay, clock)
    (dead,) = Outbox.select().where(Outbox.state == "dead")
    assert "invalidcourseid" in dead.last_error
    assert moodle.course_list() == []


# -- mapped enrolments -----------------------------------------------------------------------


def test_enrolments_add_mapped_enrols_members_in_the_groups_course(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    ann = create_user(scim, "ann@x.example")
    bob = create_user(scim, "bob@x.example")
    physics = _physics(scim, ann["id"], bob["id"])
    refused = invoke(app, "enrolments", "add", "Physics", "mapped", "--role", "student")
    assert refused.exit_code == 1
    assert "has no course on that LMS target; map one first" in refused.output
    _map(app, "Physics", "--shortname", "{displayName}-{externalId}")
    out = run(app, "enrolments", "add", "Physics", "mapped", "--role", "student")
    assert "are enrolled in course mapped as student" in out.stdout
    drain(relay, clock)
    (course_id,) = [
        cid for cid, c in moodle.course_records.items() if c["shortname"] == "Physics-7B"
    ]
    assert moodle.state()["enrolments"] == [
        ("ann@x.example", course_id, "student"),
        ("bob@x.example", course_id, "student"),
    ]
    listed = run(app, "enrolments", "list").stdout.splitlines()
    assert listed[1].split()[:3] == ["Physics", "mapped", "student"]
    # The user's SCIM resource names the course by its LMS id, as for any other rule.
    shown = scim.get(f"/Users/{ann['id']}").json[LMS_USER]["enrolments"]
    assert shown == [{"courseId": str(course_id), "role": "student"}]

    leave(scim, physics, bob["id"])
    drain(relay, clock)
    assert moodle.state()["enrolments"] == [("ann@x.example", course_id, "student")]
    join(scim, physics, bob["id"])
    drain(relay, clock)
    assert len(moodle.state()["enrolments"]) == 2
    assert moodle.count("core_course_create_courses") == 1

    blocked = invoke(app, "courses", "unmap", "Physics")
    assert blocked.exit_code == 1
    assert "remove it first" in blocked.output
    run(app, "enrolments", "remove", "Physics", "mapped")
    gone = invoke(app, "enrolments", "remove", "Physics", "mapped")
    assert gone.output.strip() == "Error: Group 'Physics' has no rule for course mapped."
    drain(relay, clock)
    assert moodle.state()["enrolments"] == []
    assert "stays on default" in run(app, "courses", "unmap", "Physics").stdout
    assert CourseMap.select().count() == 0
    assert len(moodle.course_list()) == 1  # the course itself stays


def test_a_deleted_group_keeps_its_course_and_map(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    physics = _physics(scim)
    _map(app, "Physics", "--shortname", "{displayName}")
    drain(relay, clock)
    assert scim.delete(f"/Groups/{physics}").status_code == 204
    drain(relay, clock)
    assert len(moodle.course_list()) == 1
    listed = run(app, "courses", "list").stdout
    assert f"{physics} (deleted)" in listed
    assert "stays on default" in run(app, "courses", "unmap", physics).stdout


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--shortname", "{displayName}-{name}"),
            "--shortname '{displayName}-{name}': unknown placeholder {name}; the placeholders "
            "are {displayName}, {externalId}, {id}.",
        ),
        (("--shortname", "x", "--fullname", "{id!r}"), "without a format"),
        (("--shortname", "{displayName"), "expected '}' before end of string"),
        (("--shortname", "x", "--category", "School//{id}"), "each level of the path"),
        (("--shortname", "x", "--category", "{Year}"), "unknown placeholder {Year}"),
        (("--shortname", "x", "--template-course", "abc"), "--template-course must be an LMS"),
        (("--shortname", " "), "--shortname must not be empty"),
        (("--shortname", "x", "--lms", "nope"), "No LMS target 'nope'"),
    ],
)
def test_courses_map_refuses_bad_input_in_one_line(
    app: Flask, scim: Any, args: tuple[str, ...], message: str
) -> None:
    _physics(scim)
    result = invoke(app, "courses", "map", "Physics", *args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert CourseMap.select().count() == 0


def test_courses_map_needs_lms_when_the_tenant_has_several_targets(app: Flask, scim: Any) -> None:
    _physics(scim)
    assert feed(app, TOKEN + "\n", "lms", "add", "b", "--url", B_URL).exit_code == 0
    refused = invoke(app, "courses", "map", "Physics", "--shortname", "{id}")
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "Error: This tenant has several LMS targets; name one with --lms (default, b)."
    )
    assert "on b" in _map(app, "Physics", "--shortname", "{id}", "--lms", "b").stdout
    unknown = invoke(app, "courses", "map", "Nope", "--shortname", "{id}", "--lms", "b")
    assert (unknown.exit_code, "No group with id or displayName 'Nope'" in unknown.output) == (
        1,
        True,
    )


def test_a_group_without_the_externalid_its_template_needs_is_a_dead_letter(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    create_group(scim, "No external id")
    drain(relay, clock)
    _map(app, "No external id", "--shortname", "{externalId}")
    drain(relay, clock)
    (dead,) = Outbox.select().where(Outbox.state == "dead")
    assert "the group has no externalId for the course shortname '{externalId}'" in dead.last_error
    assert moodle.course_list() == []


def test_a_shortname_taken_by_another_groups_course_is_refused_not_shared(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    _physics(scim)
    _physics(scim, name="Chemistry")  # the same externalId
    _map(app, "Physics", "--shortname", "{externalId}")
    drain(relay, clock)
    _map(app, "Chemistry", "--shortname", "{externalId}")
    drain(relay, clock)
    assert len(moodle.course_list()) == 1
    dead = [row.last_error for row in Outbox.select().where(Outbox.state == "dead")]
    assert dead
    assert all("the shortname '7B' is taken by the course of another group" in e for e in dead)
    listed = {m["group"]: m["lmsCourseId"] for m in _listed(app)}
    assert listed["Chemistry"] is None
    assert listed["Physics"] is not None


def test_a_map_names_its_target_and_only_that_site_gets_the_course(
    app: Flask, scim: Any, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    site_a, site_b = sites
    feed(app, TOKEN + "\n", "tenants", "set", "default", "LMS_TOKEN", f"LMS_URL={A_URL}")
    assert feed(app, TOKEN + "\n", "lms", "add", "b", "--url", B_URL).exit_code == 0
    ann = create_user(scim, "ann@x.example")
    physics = _physics(scim, ann["id"])
    _map(app, "Physics", "--lms", "b", "--shortname", "{displayName}", "--category", "S/{id}")
    run(app, "enrolments", "add", "Physics", "mapped", "--role", "teacher", "--lms", "b")
    current = runtime.of(app)
    Dispatcher(
        settings_for=current.tenant_settings,
        build=lambda settings: relay_from(settings, 2000, 50),
        secret_box=current.secret_box,
    ).run_due()
    assert site_a.course_list() == []
    assert site_b.course_list() == [("Physics", "Physics", f"S/{physics}", f"lms-scim:{physics}")]
    (course_id,) = [cid for cid in site_b.course_records if cid > 1000]
    assert site_b.state()["enrolments"] == [("ann@x.example", course_id, "editingteacher")]
    assert site_a.state()["enrolments"] == []
    assert [(m["lms"], m["group"]) for m in _listed(app)] == [("b", "Physics")]


def _listed(app: Flask) -> list[dict[str, Any]]:
    return list(json.loads(run(app, "courses", "list", "--format", "json").stdout))


# -- the simulator says what Moodle 4.3 says -------------------------------------------------


def _call(function: str, **params: Any) -> Any:
    return MoodleClient(URL, TOKEN, timeout=2.0).call(function, **params)


def _refused(function: str, **params: Any) -> str | None:
    with pytest.raises(LmsError) as caught:
        _call(function, **params)
    return caught.value.errorcode


def test_the_simulated_course_functions_fail_as_moodle_does(moodle: MoodleSim) -> None:
    course = {"fullname": "F", "shortname": "S", "categoryid": 1, "idnumber": "I"}
    (made,) = _call("core_course_create_courses", courses=[course])
    assert _refused("core_course_create_courses", courses=[course]) == "shortnametaken"
    again = {**course, "shortname": "S2"}
    assert _refused("core_course_create_courses", courses=[again]) == "courseidnumbertaken"
    lost = {**course, "shortname": "S3", "idnumber": "", "categoryid": 99}
    assert _refused("core_course_create_courses", courses=[lost]) == "errorcatcontextnotvalid"
    orphan = {"name": "X", "parent": 99}
    assert _refused("core_course_create_categories", categories=[orphan]) == "unknowcategory"
    first = {"name": "X", "parent": 0, "idnumber": "x"}
    _call("core_course_create_categories", categories=[first])
    assert _refused("core_course_create_categories", categories=[first]) == "categoryidnumbertaken"
    found = _call("core_course_get_courses_by_field", field="idnumber", value="I")
    assert [c["id"] for c in found["courses"]] == [made["id"]]
    assert _refused("core_course_get_courses_by_field", field="colour", value="x") == (
        "invalidparameter"
    )
    warned = _call("core_course_update_courses", courses=[{"id": made["id"], "shortname": "C101"}])
    assert [w["warningcode"] for w in warned["warnings"]] == ["shortnametaken"]
    assert _refused("core_course_duplicate_course", courseid=9999, fullname="a", shortname="b",
                    categoryid=1) == "invalidcourseid"  # fmt: skip
    criteria = [{"key": "colour", "value": "x"}]
    assert _refused("core_course_get_categories", criteria=criteria) == "criteriaerror"
    # addsubcategories (default 1) brings the subcategories too.
    (x,) = _call("core_course_get_categories", criteria=[{"key": "idnumber", "value": "x"}])
    _call("core_course_create_categories", categories=[{"name": "Y", "parent": x["id"]}])
    both = _call("core_course_get_categories", criteria=[{"key": "idnumber", "value": "x"}])
    only = _call(
        "core_course_get_categories",
        criteria=[{"key": "idnumber", "value": "x"}],
        addsubcategories=0,
    )
    assert ([c["name"] for c in both], [c["name"] for c in only]) == (["X", "Y"], ["X"])


def test_relay_test_asks_for_the_course_functions_once_a_group_has_a_course(
    app: Flask, scim: Any, moodle: MoodleSim
) -> None:
    result = feed(app, TOKEN + "\n", "tenants", "set", "default", "LMS_TOKEN", f"LMS_URL={URL}")
    assert result.exit_code == 0, result.output
    moodle.allowed = set(REQUIRED_FUNCTIONS)
    assert "every required function is allowed" in run(app, "relay", "test").stdout
    _physics(scim)
    _map(app, "Physics", "--shortname", "{displayName}")
    refused = invoke(app, "relay", "test")
    assert refused.exit_code == 1
    assert "  core_course_create_categories" in refused.output
    assert "6 required function(s) missing" in refused.output
    moodle.allowed |= set(COURSE_FUNCTIONS)
    assert "every required function is allowed" in run(app, "relay", "test").stdout


def test_a_mapped_rule_with_dates_sets_them_on_the_groups_course(
    app: Flask, scim: Any, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    """`enrolments add GROUP mapped --start/--end` (issue 17 §3 with §4): the dates reach the
    enrolments in the group's own course, and changing them re-sends them there."""
    ann = create_user(scim, "ann@x.example")
    _physics(scim, ann["id"])
    _map(app, "Physics", "--shortname", "{displayName}-{externalId}")
    run(
        app, "enrolments", "add", "Physics", "mapped", "--role", "student",
        "--start", "2027-01-15", "--end", "2027-06-30",
    )  # fmt: skip
    drain(relay, clock)
    (course_id,) = [
        cid for cid, c in moodle.course_records.items() if c["shortname"] == "Physics-7B"
    ]
    (user_id,) = list(moodle.users)
    start, end, _status = moodle.enrolment_times[(user_id, course_id)]
    assert (start, end) == (1799971200, 1814313600)  # 2027-01-15, 2027-06-30 00:00 UTC
    run(app, "enrolments", "set", "Physics", "mapped", "--end", "none")
    drain(relay, clock)
    assert moodle.enrolment_times[(user_id, course_id)][:2] == (1799971200, 0)
