"""Several LMS targets per tenant (issue 17 §1): each target gets its users, a restricted
target only its audiences' members (a leaver of the last one suspended there, never deleted; a
joiner created), a target with chosen cohorts only those groups as cohorts, a target's own
match field and auth are what its deliveries use, one target down never delays another,
enrolment rules name their target, and `lms-scim lms` checks what it is given and never shows
or stores a token in clear."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from app import runtime
from app.relay.dispatch import Dispatcher
from app.relay.worker import relay_from
from app.store import tenancy
from app.store.db import database
from app.store.models import AuditEvent, KeptEnrolment, LmsTarget, LmsUserLink, Outbox, utcnow
from tests.helpers import Scim, create_group, create_user, feed, invoke, patch_ok, run
from tests.relay.harness import A_URL, B_URL, created_auth, join, leave, looked_up, one_site_hung
from tests.relay.moodle_sim import TOKEN, MoodleSim

Sites = tuple[MoodleSim, MoodleSim]


def _dispatcher(app: Flask, **options: Any) -> Dispatcher:
    current = runtime.of(app)
    return Dispatcher(
        settings_for=current.tenant_settings,
        build=lambda settings: relay_from(settings, 2000, 50),
        secret_box=current.secret_box,
        **options,
    )


def _add(app: Flask, name: str, *args: str, token: str = TOKEN) -> Any:
    return feed(app, token + "\n", "lms", "add", name, *args)


@pytest.fixture
def two_targets(app: Flask, sites: Sites) -> None:
    """The default tenant's `default` target on site A (its LMS_* settings) and `b` on B."""
    result = feed(app, TOKEN + "\n", "tenants", "set", "default", "LMS_TOKEN", f"LMS_URL={A_URL}")
    assert result.exit_code == 0, result.output
    result = _add(app, "b", "--url", B_URL)
    assert result.exit_code == 0, result.output


def _users(site: MoodleSim) -> dict[str, bool]:
    """email → suspended."""
    return {u["email"]: bool(u["suspended"]) for u in site.users.values()}


def _deliver(app: Flask) -> None:
    _dispatcher(app).run_due()


def test_each_target_gets_the_tenants_users_and_cohorts(
    app: Flask, scim: Scim, sites: Sites
) -> None:
    site_a, site_b = sites
    run(app, "tenants", "set", "default", f"LMS_URL={A_URL}")
    feed(app, TOKEN + "\n", "tenants", "set", "default", "LMS_TOKEN")
    ann = create_user(scim, "ann@x.example")
    create_group(scim, "Staff", ann["id"])
    _deliver(app)
    # Added later: what the tenant already has is queued for it, so it catches up.
    assert _add(app, "b", "--url", B_URL).exit_code == 0
    create_user(scim, "bob@x.example")
    _deliver(app)
    assert _users(site_a) == _users(site_b) == {"ann@x.example": False, "bob@x.example": False}
    assert site_a.state()["cohorts"] == site_b.state()["cohorts"] == {"Staff": ["ann@x.example"]}
    with app.app_context():
        targets = dict(LmsTarget.select(LmsTarget.name, LmsTarget.id).tuples())
        links = sorted(LmsUserLink.select(LmsUserLink.target_id).tuples())
    assert links == sorted([(targets["default"],)] * 2 + [(targets["b"],)] * 2)


def test_a_change_writes_one_outbox_row_per_target_in_one_statement(
    app: Flask, scim: Scim, two_targets: None
) -> None:
    with app.app_context():
        Outbox.delete().execute()
    statements: list[str] = []
    original = database.obj.execute_sql

    def spy(sql: str, *args: Any, **kwargs: Any) -> Any:
        if "outbox" in sql and sql.lstrip().upper().startswith("INSERT"):
            statements.append(sql)
        return original(sql, *args, **kwargs)

    database.obj.execute_sql = spy  # type: ignore[method-assign]
    try:
        ann = create_user(scim, "ann@x.example")
    finally:
        del database.obj.execute_sql
    assert len(statements) == 1
    with app.app_context():
        rows = list(Outbox.select(Outbox.target_id, Outbox.user_id).tuples())
        targets = [t.id for t in LmsTarget.select().order_by(LmsTarget.id)]
    assert sorted(rows) == [(t, ann["id"]) for t in targets]


def test_a_restricted_target_receives_only_its_audiences_members(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    site_a, site_b = sites
    ann = create_user(scim, "ann@x.example")
    bob = create_user(scim, "bob@x.example")
    staff = create_group(scim, "Staff", ann["id"])
    run(app, "lms", "set", "b", "audiences=Staff")
    _deliver(app)
    assert _users(site_a) == {"ann@x.example": False, "bob@x.example": False}
    assert _users(site_b) == {"ann@x.example": False}  # bob: not created, not matched

    join(scim, staff["id"], bob["id"])  # joining creates them there
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": False, "bob@x.example": False}

    leave(scim, staff["id"], ann["id"])  # leaving the last audience suspends, never deletes
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": True, "bob@x.example": False}
    assert _users(site_a) == {"ann@x.example": False, "bob@x.example": False}
    assert site_b.count("core_user_delete_users") == 0

    join(scim, staff["id"], ann["id"])  # back in: unsuspended, the same account
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": False, "bob@x.example": False}
    assert site_b.count("core_user_create_users") == 2


def test_leaving_one_of_two_audiences_keeps_the_account_leaving_the_last_suspends(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    """A user is suspended on a restricted target only when they leave the last of its
    audience groups: still a member of another, their account there stays active."""
    site_a, site_b = sites
    ann = create_user(scim, "ann@x.example")
    staff = create_group(scim, "Staff", ann["id"])
    partners = create_group(scim, "Partners", ann["id"])
    run(app, "lms", "set", "b", "audiences=Staff,Partners")
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": False}

    leave(scim, staff["id"], ann["id"])  # still in Partners
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": False}
    assert site_b.state()["cohorts"] == {"Partners": ["ann@x.example"], "Staff": []}

    leave(scim, partners["id"], ann["id"])  # the last one
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": True}
    assert site_b.count("core_user_delete_users") == 0
    assert _users(site_a) == {"ann@x.example": False}  # default receives everyone


def test_a_targets_own_match_field_and_auth_are_what_delivery_uses(
    app: Flask, scim: Scim, sites: Sites
) -> None:
    """`lms add b --match username --auth oauth2`: the relay looks b's accounts up by username
    and creates them with auth oauth2, while `default` (the tenant's LMS_*: e-mail, manual) does
    as before for the same users; `lms set` changes them for the next delivery. Read from the
    calls each simulated site recorded."""
    site_a, site_b = sites
    connected = feed(
        app, TOKEN + "\n", "tenants", "set", "default", "LMS_TOKEN", f"LMS_URL={A_URL}"
    )
    assert connected.exit_code == 0, connected.output
    added = _add(app, "b", "--url", B_URL, "--match", "username", "--auth", "oauth2")
    assert added.exit_code == 0, added.output
    carol_b = site_b.add_user("carol", "carol.old@x.example")  # b's account, by username
    email = [{"value": "carol@x.example", "primary": True}]
    create_user(scim, "Carol", emails=email)
    create_user(scim, "bob@x.example")
    _deliver(app)

    assert looked_up(site_b) == [("username", ["carol"]), ("username", ["bob@x.example"])]
    assert created_auth(site_b) == {"bob@x.example": "oauth2"}  # carol matched, not created
    assert site_b.users[carol_b]["email"] == "carol@x.example"  # the profile follows
    assert looked_up(site_a) == [("email", ["carol@x.example"]), ("email", ["bob@x.example"])]
    assert created_auth(site_a) == {"carol": "manual", "bob@x.example": "manual"}

    run(app, "lms", "set", "b", "match=email", "auth=saml2")
    create_user(scim, "dan@x.example")
    _deliver(app)
    assert looked_up(site_b)[-1] == ("email", ["dan@x.example"])
    assert created_auth(site_b)["dan@x.example"] == "saml2"
    assert created_auth(site_a)["dan@x.example"] == "manual"


def test_a_restricted_target_whose_groups_are_gone_receives_nobody(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    site_a, site_b = sites
    ann = create_user(scim, "ann@x.example")
    staff = create_group(scim, "Staff", ann["id"])
    run(app, "lms", "set", "b", "audiences=Staff")
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": False}
    assert scim.delete(f"/Groups/{staff['id']}").status_code == 204
    create_user(scim, "carol@x.example")
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": True}  # never silently everyone
    listed = json.loads(run(app, "lms", "list", "--format", "json").stdout)
    assert [(t["name"], t["audiences"]) for t in listed] == [("default", None), ("b", [])]
    assert "nobody" in run(app, "lms", "list").stdout
    assert set(_users(site_a)) == {"ann@x.example", "carol@x.example"}


# -- chosen cohorts ----------------------------------------------------------------------------

ANN, BOB, CAROL = "ann@x.example", "bob@x.example", "carol@x.example"


def _cohort_calls(site: MoodleSim) -> int:
    return sum(1 for name, _ in site.calls if name.startswith("core_cohort_"))


def _queued_for(app: Flask, name: str) -> list[tuple[str, str | None, str | None]]:
    """(kind, user, group) of the rows waiting for target `name`."""
    with app.app_context():
        target = LmsTarget.get(LmsTarget.name == name).id
        rows = Outbox.select(Outbox.kind, Outbox.user_id, Outbox.group_id)
        return sorted(rows.where(Outbox.target_id == target).tuples(), key=str)


def _cohort_trail() -> list[tuple[str, Any]]:
    return [(e.operation, json.loads(e.changes).get("cohorts")) for e in _lms_events()]


def test_a_target_receives_only_its_chosen_cohorts(app: Flask, scim: Scim, sites: Sites) -> None:
    """Issue 17 §1, a client that "can receive chosen audiences": `lms add b --cohort Physics`
    makes only Physics a cohort on b (with the members b receives) while `default` gets every
    group, and b hears nothing of the others — not one cohort call. `lms set b cohorts=…` adds
    a group (only it and its memberships queued: made there, filled), drops one (its cohort
    stays there as it was: never updated, never deleted), and `cohorts=` is every group again
    (the dropped group's cohort found again by its idnumber, not made twice)."""
    site_a, site_b = sites
    connected = feed(
        app, TOKEN + "\n", "tenants", "set", "default", "LMS_TOKEN", f"LMS_URL={A_URL}"
    )
    assert connected.exit_code == 0, connected.output
    ann, bob, carol = (create_user(scim, email) for email in (ANN, BOB, CAROL))
    physics = create_group(scim, "Physics", ann["id"])
    chemistry = create_group(scim, "Chemistry", ann["id"], bob["id"])
    added = _add(app, "b", "--url", B_URL, "--cohort", "Physics")
    assert added.exit_code == 0, added.output
    assert "every user; cohorts Physics; token sealed" in added.stdout
    _deliver(app)
    assert site_a.state()["cohorts"] == {"Chemistry": [ANN, BOB], "Physics": [ANN]}
    assert site_b.state()["cohorts"] == {"Physics": [ANN]}
    assert _users(site_b) == _users(site_a)  # cohorts choose groups, not users
    assert site_b.count("core_cohort_create_cohorts") == 1

    # Chemistry changes (a member joins, a rename): default follows, b hears nothing.
    join(scim, chemistry["id"], carol["id"])
    rename = {"op": "replace", "path": "displayName", "value": "Chemistry 1"}
    patch_ok(scim, f"/Groups/{chemistry['id']}", rename)
    calls = _cohort_calls(site_b)
    _deliver(app)
    assert site_a.state()["cohorts"] == {"Chemistry 1": [ANN, BOB, CAROL], "Physics": [ANN]}
    assert site_b.state()["cohorts"] == {"Physics": [ANN]}
    assert _cohort_calls(site_b) == calls

    listed = json.loads(run(app, "lms", "list", "--format", "json").stdout)
    assert [(t["name"], t["cohorts"]) for t in listed] == [("default", None), ("b", ["Physics"])]
    table = run(app, "lms", "list").stdout.splitlines()
    assert table[0].split()[:5] == ["name", "url", "match", "audiences", "cohorts"]
    assert "every group" in table[1]
    shown = json.loads(run(app, "lms", "show", "b", "--format", "json").stdout)
    assert (shown["audiences"], shown["cohorts"]) == ("everyone", "Physics")
    assert "every group" in run(app, "lms", "show", "default").stdout

    # Chemistry chosen too: only it and its memberships are queued for b.
    run(app, "lms", "set", "b", "cohorts=Physics,Chemistry 1")
    chem = chemistry["id"]
    assert _queued_for(app, "b") == sorted(
        [("group", None, chem)] + [("member", u["id"], chem) for u in (ann, bob, carol)], key=str
    )
    _deliver(app)
    assert site_b.state()["cohorts"] == {"Chemistry 1": [ANN, BOB, CAROL], "Physics": [ANN]}

    # Chemistry dropped: no longer updated on b, and its cohort stays there.
    run(app, "lms", "set", "b", "cohorts=physics")  # displayNames as identities
    leave(scim, chem, bob["id"])
    calls = _cohort_calls(site_b)
    _deliver(app)
    assert site_a.state()["cohorts"]["Chemistry 1"] == [ANN, CAROL]
    assert site_b.state()["cohorts"] == {"Chemistry 1": [ANN, BOB, CAROL], "Physics": [ANN]}
    assert _cohort_calls(site_b) == calls
    assert site_b.count("core_cohort_delete_cohorts") == 0

    # Every group again: what b lacked is queued (Chemistry, not Physics), its cohort found by
    # idnumber. The relay adds current members; bob, who left while it was not chosen, stays
    # in that cohort (it never reads a cohort's members from the LMS).
    run(app, "lms", "set", "b", "cohorts=")
    assert _queued_for(app, "b") == sorted(
        [("group", None, chem)] + [("member", u["id"], chem) for u in (ann, carol)], key=str
    )
    _deliver(app)
    assert site_b.count("core_cohort_create_cohorts") == 2  # Physics, Chemistry: once each
    assert site_b.state()["cohorts"] == {"Chemistry 1": [ANN, BOB, CAROL], "Physics": [ANN]}
    join(scim, physics["id"], bob["id"])
    leave(scim, chem, carol["id"])
    _deliver(app)
    assert site_b.state()["cohorts"] == {"Chemistry 1": [ANN, BOB], "Physics": [ANN, BOB]}
    assert site_a.state()["cohorts"] == {"Chemistry 1": [ANN], "Physics": [ANN, BOB]}

    with app.app_context():
        trail = _cohort_trail()
    assert trail == [
        ("lms_add", [physics["id"]]),
        ("lms_set", [physics["id"], chem]),
        ("lms_set", [physics["id"]]),
        ("lms_set", []),
    ]


def test_a_target_whose_chosen_cohorts_are_gone_receives_none(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    """A chosen group deleted in the IdP drops out of the list (its cohort deleted there as
    everywhere); with none left the target receives no cohort, never every one."""
    site_a, site_b = sites
    ann = create_user(scim, ANN)
    physics = create_group(scim, "Physics", ann["id"])
    run(app, "lms", "set", "b", "cohorts=Physics")
    _deliver(app)
    assert site_b.state()["cohorts"] == {"Physics": [ANN]}
    assert scim.delete(f"/Groups/{physics['id']}").status_code == 204
    create_group(scim, "Biology", ann["id"])
    _deliver(app)
    assert site_b.state()["cohorts"] == {}
    assert site_a.state()["cohorts"] == {"Biology": [ANN]}
    listed = json.loads(run(app, "lms", "list", "--format", "json").stdout)
    assert [(t["name"], t["cohorts"]) for t in listed] == [("default", None), ("b", [])]
    assert "none (its groups are gone)" in run(app, "lms", "list").stdout
    assert "none (its groups are gone)" in run(app, "lms", "show", "b").stdout


def test_default_takes_chosen_cohorts_and_audiences_with_them(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    """`default` (the tenant's LMS_*) chooses its cohorts as any target does; set together with
    audiences, the audiences' catch-up queues everything once."""
    site_a, site_b = sites
    ann, bob = create_user(scim, ANN), create_user(scim, BOB)
    create_group(scim, "Staff", ann["id"])
    create_group(scim, "Partners", ann["id"], bob["id"])
    run(app, "lms", "set", "default", "cohorts=Partners", "audiences=Staff")
    _deliver(app)
    assert _users(site_a) == {ANN: False}
    assert site_a.state()["cohorts"] == {"Partners": [ANN]}
    assert site_b.state()["cohorts"] == {"Partners": [ANN, BOB], "Staff": [ANN]}


def test_a_hung_lms_never_delays_another_target_of_the_same_tenant(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    site_a, site_b = sites
    create_user(scim, "ann@x.example")
    dispatcher = _dispatcher(app, workers=2, idle=0.05)
    with one_site_hung(dispatcher, site_a, lambda: bool(site_b.users)) as took:
        # B's copy arrived while A's first call was still hanging: B never waited for A.
        assert _users(site_b) == {"ann@x.example": False}
        print(f"target b's user delivered in {took * 1000:.0f} ms while default's LMS hung")
    with app.app_context():
        waiting = list(Outbox.select().where(Outbox.state == "pending"))
    (kept,) = waiting  # A's change waits for A alone
    assert "no answer within" in kept.last_error
    assert _users(site_a) == {}
    # A's back-off is A's own: its row waits for a later try, and a change made meanwhile
    # reaches B at once (run_due never tries A's row before it is due).
    assert kept.attempts == 1
    assert kept.next_attempt_at is not None
    assert kept.next_attempt_at > utcnow()
    create_user(scim, "bo@x.example")
    _deliver(app)
    assert _users(site_b) == {"ann@x.example": False, "bo@x.example": False}
    with app.app_context():
        assert Outbox.get_by_id(kept.id).attempts == 1  # not tried again before it was due


def test_enrolment_rules_name_their_target(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    site_a, site_b = sites
    ann = create_user(scim, "ann@x.example")
    create_group(scim, "Physics", ann["id"])
    refused = invoke(app, "enrolments", "add", "Physics", "101", "--role", "student")
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        "Error: This tenant has several LMS targets; name one with --lms (default, b)."
    )
    out = run(app, "enrolments", "add", "Physics", "101", "--role", "student", "--lms", "b")
    assert "enrolled in course 101 on b as student" in out.stdout
    _deliver(app)
    assert site_b.state()["enrolments"] == [("ann@x.example", 101, "student")]
    assert site_a.state()["enrolments"] == []
    listed = run(app, "enrolments", "list").stdout.splitlines()
    assert listed[0].split()[-1] == "lms"
    assert listed[1].split()[-1] == "b"
    unknown = invoke(app, "enrolments", "add", "Physics", "101", "--role", "student", "--lms", "x")
    assert unknown.exit_code == 1
    assert "No LMS target 'x' (this tenant has: default, b)." in unknown.output


def test_keep_on_leave_is_per_target(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    """The same group's rules on two targets, one keeping previous enrolments: a leaver stays
    enrolled on that target only, and the kept enrolment belongs to it."""
    site_a, site_b = sites
    ann = create_user(scim, "ann@x.example")
    physics = create_group(scim, "Physics", ann["id"])
    run(app, "enrolments", "add", "Physics", "101", "--role", "student", "--lms", "default")
    run(app, "enrolments", "add", "Physics", "201", "--role", "student", "--lms", "b",
        "--keep-on-leave")  # fmt: skip
    _deliver(app)
    assert site_a.state()["enrolments"] == [("ann@x.example", 101, "student")]
    assert site_b.state()["enrolments"] == [("ann@x.example", 201, "student")]

    leave(scim, physics["id"], ann["id"])
    _deliver(app)
    assert site_a.state()["enrolments"] == []  # default's rule unenrols leavers
    assert site_b.state()["enrolments"] == [("ann@x.example", 201, "student")]  # kept on b
    with app.app_context():
        b = LmsTarget.get(LmsTarget.name == "b").id
        kept = list(KeptEnrolment.select(KeptEnrolment.target_id, KeptEnrolment.course_id).tuples())
    assert kept == [(b, "201")]


def test_relay_status_test_and_retry_per_target(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    create_user(scim, "bad name", emails=[{"value": "bad@x.example"}])
    run(app, "relay", "run", "--once")
    shown = json.loads(run(app, "relay", "status", "--format", "json").stdout)
    assert shown["tenant"] == "default"
    by_name = {t["target"]: t for t in shown["targets"]}
    assert (by_name["default"]["lms"], by_name["b"]["lms"]) == (A_URL, B_URL)
    assert by_name["default"]["failures"] == by_name["b"]["failures"] == 1
    text = run(app, "relay", "status").stdout
    assert "== LMS target default" in text
    assert "== LMS target b" in text
    one = json.loads(run(app, "relay", "status", "--lms", "b", "--format", "json").stdout)
    assert (one["target"], one["lms"], one["failures"]) == ("b", B_URL, 1)

    assert "requeued 1" in run(app, "relay", "retry", "--all", "--lms", "b").stdout
    again = json.loads(run(app, "relay", "status", "--format", "json").stdout)
    assert [(t["target"], t["failures"]) for t in again["targets"]] == [("default", 1), ("b", 0)]

    tested = run(app, "relay", "test", "--lms", "b").stdout
    assert tested.splitlines()[0].startswith("connected to")
    both = run(app, "relay", "test").stdout
    assert "default: connected to" in both
    assert "default/b: connected to" in both


# -- the `lms` commands ----------------------------------------------------------------------


def _lms_events() -> list[AuditEvent]:
    return list(
        AuditEvent.select().where(AuditEvent.resource_type == "LmsTarget").order_by(AuditEvent.id)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--url", "ftp://x"), "The LMS URL must be http(s)://host[/path]: 'ftp://x'."),
        (("--url", B_URL, "--match", "idnumber"), "match must be email or username"),
        (("--url", B_URL, "--roles", "student=five"), "--roles must look like"),
        (("--url", B_URL, "--roles", "student=5"), "--roles needs a positive LMS role id"),
        (("--url", B_URL, "--auth", "no way"), "auth must name a Moodle auth plugin"),
        (("--url", B_URL, "--audience", "No such group"), "No group with id or displayName"),
        (("--url", B_URL, "--cohort", "No such group"), "No group with id or displayName"),
    ],
)
def test_lms_add_refuses_bad_input_in_one_line(
    app: Flask, args: tuple[str, ...], message: str
) -> None:
    result = _add(app, "b", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    with app.app_context():
        assert [t.name for t in LmsTarget.select()] == ["default"]


def test_lms_cohorts_refuse_unknown_and_ambiguous_groups_in_one_line(
    app: Flask, scim: Scim, sites: Sites, two_targets: None
) -> None:
    create_group(scim, "Physics")
    create_group(scim, "Physics")
    create_group(scim, "Chemistry")
    for assignment, message in [
        ("cohorts=Chemistry,Nope", "Error: No group with id or displayName 'Nope'."),
        ("cohorts=Physics", "Error: More than one group is called 'Physics'; use the id."),
    ]:
        result = invoke(app, "lms", "set", "b", assignment)
        assert (result.exit_code, result.output.strip()) == (1, message)
    ambiguous = _add(app, "c", "--url", B_URL, "--cohort", "Physics")
    assert ambiguous.exit_code == 1
    assert ambiguous.output.strip().endswith("use the id.")
    shown = json.loads(run(app, "lms", "show", "b", "--format", "json").stdout)
    assert shown["cohorts"] == "every group"  # nothing changed
    with app.app_context():
        assert [t.name for t in LmsTarget.select()] == ["default", "b"]
        assert [e.operation for e in _lms_events()] == ["lms_add"]


def test_lms_names_tokens_and_removal(app: Flask, scim: Scim, sites: Sites) -> None:
    assert _add(app, "b", "--url", B_URL, token="").exit_code == 1  # no token: nothing stored
    assert (
        _add(app, "default", "--url", B_URL)
        .output.strip()
        .endswith("An LMS target called 'default' exists.")
    )
    assert _add(app, "b", "--url", B_URL).exit_code == 0
    taken = _add(app, "b", "--url", B_URL)
    assert (taken.exit_code, taken.output.strip()) == (
        1,
        "Error: An LMS target called 'b' exists.",
    )
    on_argv = invoke(app, "lms", "set", "b", f"token={TOKEN}")
    assert on_argv.exit_code == 1
    assert "never taken from the command line" in on_argv.output
    assert TOKEN not in on_argv.output
    default = invoke(app, "lms", "set", "default", f"url={B_URL}")
    assert default.exit_code == 1
    assert "tenants set" in default.output
    bad_key = invoke(app, "lms", "set", "b", "colour=blue")
    assert (bad_key.exit_code, "the keys are url, match" in bad_key.output) == (1, True)

    shown = json.loads(run(app, "lms", "show", "b", "--format", "json").stdout)
    assert shown["token"] == "••••" + TOKEN[-4:]
    assert shown["url"] == B_URL
    with app.app_context():
        (stored,) = LmsTarget.select(LmsTarget.token).where(LmsTarget.name == "b").tuples()
        trail = " ".join(e.changes or "" for e in AuditEvent.select())
        operations = [e.operation for e in _lms_events()]
    assert TOKEN not in stored[0]
    assert TOKEN not in trail
    assert operations == ["lms_add"]
    assert feed(app, "another-token-0000\n", "lms", "set", "b", "token").exit_code == 0
    assert run(app, "lms", "show", "b").stdout.count("0000") == 1

    create_user(scim, "ann@x.example")
    refused = invoke(app, "lms", "remove", "b")
    assert refused.exit_code == 1
    assert "has 1 undelivered change(s)" in refused.output
    assert "dropped" in run(app, "lms", "remove", "b", "--force").stdout
    with app.app_context():
        assert [t.name for t in LmsTarget.select()] == ["default"]
        assert Outbox.select().count() == 1  # the default target's row stays
        operations = [e.operation for e in _lms_events()]
    assert operations == ["lms_add", "lms_set", "lms_remove"]
    assert invoke(app, "lms", "remove", "default").exit_code == 1


def test_a_new_tenant_has_its_default_target(app: Flask, acme: Scim) -> None:
    listed = json.loads(run(app, "lms", "list", "--tenant", "acme", "--format", "json").stdout)
    assert [(t["name"], t["url"]) for t in listed] == [("default", None)]
    with app.app_context(), tenancy.everywhere():
        assert LmsTarget.select().count() == 2
