"""Tenants: a token of one tenant never reads, lists, counts, changes or references anything of
another; a foreign id answers exactly as an absent one; names are unique per tenant."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from app.store import tenancy
from app.store.models import AuditEvent, EnrolmentRule
from tests.helpers import (
    Scim,
    assert_error,
    create_group,
    create_user,
    invoke,
    members,
    patch_body,
    run,
    user_body,
)

ABSENT = "0" * 32


@pytest.fixture
def alice(scim: Scim) -> dict[str, Any]:
    """A user of the default tenant."""
    return create_user(scim, "alice@example.com", emails=[{"value": "alice@example.com"}])


def _without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "detail"}


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("PUT", user_body("alice@example.com")),
        ("PATCH", patch_body({"op": "replace", "path": "active", "value": False})),
        ("DELETE", None),
    ],
)
def test_a_foreign_user_answers_as_an_absent_one(
    scim: Scim, acme: Scim, alice: dict[str, Any], method: str, body: Any
) -> None:
    foreign = acme.request(method, f"/Users/{alice['id']}", body)
    absent = acme.request(method, f"/Users/{ABSENT}", body)
    assert foreign.status_code == absent.status_code == 404
    assert _without_id(foreign.get_json()) == _without_id(absent.get_json())
    # And nothing happened to alice.
    assert (
        scim.get(f"/Users/{alice['id']}").get_json() == scim.get(f"/Users/{alice['id']}").get_json()
    )
    assert scim.get(f"/Users/{alice['id']}").get_json()["active"] is True


def test_a_foreign_group_answers_as_an_absent_one(scim: Scim, acme: Scim) -> None:
    group = create_group(scim, "Staff")
    for method in ("GET", "DELETE"):
        assert_error(acme.request(method, f"/Groups/{group['id']}"), 404)
    add = patch_body({"op": "add", "path": "members", "value": members(ABSENT)})
    assert_error(acme.patch(f"/Groups/{group['id']}", add), 404)
    assert scim.get(f"/Groups/{group['id']}").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"filter": 'userName eq "alice@example.com"'},
        {"filter": 'emails.value co "alice"'},
        {"filter": "userName pr"},
        {"filter": f'id eq "{ABSENT}"'},
    ],
)
def test_lists_filters_and_counts_see_only_the_tenants_rows(
    scim: Scim, acme: Scim, alice: dict[str, Any], query: dict[str, str]
) -> None:
    listed = acme.get("/Users", query_string=query).get_json()
    assert listed["totalResults"] == 0
    assert listed.get("Resources", []) == []
    assert scim.get("/Users").get_json()["totalResults"] == 1


def test_searches_see_only_the_tenants_rows(scim: Scim, acme: Scim, alice: dict[str, Any]) -> None:
    create_group(scim, "Staff", alice["id"])
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
    for path in ("/.search", "/Users/.search", "/Groups/.search"):
        found = acme.post(path, body).get_json()
        assert found["totalResults"] == 0, path
    assert scim.post("/.search", body).get_json()["totalResults"] == 2


def test_names_are_unique_per_tenant(scim: Scim, acme: Scim, alice: dict[str, Any]) -> None:
    twin = acme.post(
        "/Users", user_body("alice@example.com", emails=[{"value": "alice@example.com"}])
    )
    assert twin.status_code == 201
    assert twin.get_json()["id"] != alice["id"]
    # Each tenant still refuses its own duplicate.
    assert_error(acme.post("/Users", user_body("ALICE@example.com")), 409, "uniqueness")
    assert_error(scim.post("/Users", user_body("ALICE@example.com")), 409, "uniqueness")
    assert scim.get("/Users").get_json()["totalResults"] == 1
    assert acme.get("/Users").get_json()["totalResults"] == 1


def test_a_foreign_user_cannot_be_made_a_member(
    scim: Scim, acme: Scim, alice: dict[str, Any]
) -> None:
    staff = acme.post(
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Staff",
            "members": members(alice["id"]),
        },
    )
    assert_error(staff, 400, "invalidValue")
    own = create_group(acme, "Staff")
    add = patch_body({"op": "add", "path": "members", "value": members(alice["id"])})
    assert_error(acme.patch(f"/Groups/{own['id']}", add), 400, "invalidValue")
    assert "groups" not in scim.get(f"/Users/{alice['id']}").get_json()


def test_bulk_is_scoped_too(scim: Scim, acme: Scim, alice: dict[str, Any]) -> None:
    bulk = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {
                "method": "PATCH",
                "path": f"/Users/{alice['id']}",
                "data": patch_body({"op": "replace", "path": "active", "value": False}),
            }
        ],
    }
    answer = acme.post("/Bulk", bulk).get_json()
    assert answer["Operations"][0]["status"] == "404"
    assert scim.get(f"/Users/{alice['id']}").get_json()["active"] is True


def test_the_cli_asks_which_tenant_once_there_are_several(app: Flask, acme: Scim) -> None:
    refused = invoke(app, "tokens", "list")
    assert refused.exit_code != 0
    assert "--tenant" in refused.output
    assert "default" in refused.output
    assert "acme" in refused.output
    listed = run(app, "tokens", "list", "--tenant", "acme").output
    assert "acme-idp" in listed
    assert "test-idp" not in run(app, "tokens", "list", "--tenant", "acme").output
    assert "acme-idp" not in run(app, "tokens", "list", "--tenant", "default").output


def test_tenants_list_counts_each_tenants_rows(
    app: Flask, scim: Scim, acme: Scim, alice: dict[str, Any]
) -> None:
    create_user(acme, "bob@example.com")
    create_user(acme, "carol@example.com")
    out = run(app, "tenants", "list").output
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert lines["default"][-4:] == ["1", "1", "0", "1"]
    assert lines["acme"][-4:] == ["2", "2", "0", "1"]


def test_tenant_commands_read_their_own_tenant_and_prune_reads_every_one(
    app: Flask, scim: Scim, acme: Scim, alice: dict[str, Any]
) -> None:
    create_user(acme, "bob@example.com")
    assert "alice@example.com" in run(app, "users", "list", "--tenant", "default").output
    acme_users = run(app, "users", "list", "--tenant", "acme").output
    assert "bob@example.com" in acme_users
    assert "alice@example.com" not in acme_users
    assert invoke(app, "users", "status", alice["id"], "--tenant", "acme").exit_code != 0
    assert "bob@example.com" in run(app, "audit", "--tenant", "acme", "--format", "json").output
    assert invoke(app, "users", "list").exit_code != 0  # which tenant?
    assert run(app, "audit", "prune", "--days", "1").exit_code == 0  # retention: every tenant


def test_stats_count_the_named_tenant_only(
    app: Flask, scim: Scim, acme: Scim, alice: dict[str, Any]
) -> None:
    bob = create_user(acme, "bob@example.com")
    create_user(acme, "carol@example.com")
    acme.patch(
        f"/Users/{bob['id']}", patch_body({"op": "replace", "path": "active", "value": False})
    )
    create_group(acme, "Staff", bob["id"])

    def stats(slug: str) -> dict[str, Any]:
        return json.loads(run(app, "stats", "--tenant", slug, "--format", "json").stdout)

    ours, theirs = stats("default"), stats("acme")
    assert ours["users"] == {"total": 1, "active": 1, "inactive": 0}
    assert (ours["groups"], ours["tokens"]) == (0, {"active": 1})  # test-idp
    assert theirs["users"] == {"total": 2, "active": 1, "inactive": 1}
    assert (theirs["groups"], theirs["tokens"]) == (1, {"active": 1})  # acme-idp
    assert ours["activity"]["byOperation"]["create"][-1] == 1
    assert theirs["activity"]["byOperation"]["create"][-1] == 3  # two users and a group
    assert "users: 2 (1 active, 1 inactive)" in run(app, "stats", "--tenant", "acme").stdout
    refused = invoke(app, "stats")
    assert refused.exit_code == 1
    assert "--tenant (default, acme)" in refused.output


def test_enrolment_rules_are_listed_and_removed_in_the_named_tenant_only(
    app: Flask, scim: Scim, acme: Scim, alice: dict[str, Any]
) -> None:
    """Both tenants have a group called Physics; each its own rule. Another tenant's rule is
    never listed, and neither its group's name nor its id reaches it from the wrong tenant."""
    ours = create_group(scim, "Physics", alice["id"])
    theirs = create_group(acme, "Physics", create_user(acme, "bob@example.com")["id"])
    run(app, "enrolments", "add", "Physics", "101", "--role", "student", "--tenant", "default")
    run(app, "enrolments", "add", "Physics", "202", "--role", "teacher", "--tenant", "acme")

    def listed(slug: str) -> list[tuple[str, str, str]]:
        out = run(app, "enrolments", "list", "--tenant", slug, "--format", "json").stdout
        return [(r["group"], r["courseId"], r["role"]) for r in json.loads(out)]

    assert listed("default") == [("Physics", "101", "student")]
    assert listed("acme") == [("Physics", "202", "teacher")]
    by_id = run(app, "enrolments", "list", ours["id"], "--tenant", "default", "--format", "json")
    assert [r["courseId"] for r in json.loads(by_id.stdout)] == ["101"]
    foreign = invoke(app, "enrolments", "list", ours["id"], "--tenant", "acme")
    assert foreign.exit_code == 1
    assert "No group with id or displayName" in foreign.output

    # By name, the other tenant's rule is not there; by id, the other tenant's group is not.
    refusals = {
        ("Physics", "101", "acme"): "Error: Group 'Physics' has no rule for course 101.\n",
        ("Physics", "202", "default"): "Error: Group 'Physics' has no rule for course 202.\n",
        (ours["id"], "101", "acme"): f"Error: No group with id or displayName {ours['id']!r}.\n",
        (theirs["id"], "202", "default"): (
            f"Error: No group with id or displayName {theirs['id']!r}.\n"
        ),
    }
    for (group, course, slug), message in refusals.items():
        refused = invoke(app, "enrolments", "remove", group, course, "--tenant", slug)
        assert (refused.exit_code, refused.output) == (1, message)
    assert listed("default") == [("Physics", "101", "student")]
    assert listed("acme") == [("Physics", "202", "teacher")]

    run(app, "enrolments", "remove", "Physics", "202", "--tenant", "acme")
    assert listed("acme") == []
    assert listed("default") == [("Physics", "101", "student")]


def test_enrolments_add_and_set_refuse_a_group_of_another_tenant_as_unknown(
    app: Flask, scim: Scim, acme: Scim, alice: dict[str, Any]
) -> None:
    """Chemistry is acme's only: with `--tenant default` neither its name nor its id names a
    group, so `enrolments add` and `enrolments set` answer as for a group that does not exist
    (exit 1, one line) and create or change nothing, in either tenant."""
    theirs = create_group(acme, "Chemistry", create_user(acme, "bob@example.com")["id"])
    run(app, "enrolments", "add", "Chemistry", "202", "--role", "teacher", "--tenant", "acme")
    with tenancy.everywhere():
        events = AuditEvent.select().count()

    def listed(slug: str) -> list[tuple[str, str, str, str | None]]:
        out = run(app, "enrolments", "list", "--tenant", slug, "--format", "json").stdout
        return [(r["group"], r["courseId"], r["role"], r["end"]) for r in json.loads(out)]

    for group in ("Chemistry", theirs["id"]):
        unknown = f"Error: No group with id or displayName {group!r}.\n"
        for course in ("101", "202"):  # a new rule, or the course acme's rule has
            added = invoke(app, "enrolments", "add", group, course, "--role", "student",
                           "--tenant", "default")  # fmt: skip
            assert (added.exit_code, added.output) == (1, unknown)
        changed = invoke(app, "enrolments", "set", group, "202", "--end", "2027-07-31",
                         "--tenant", "default")  # fmt: skip
        assert (changed.exit_code, changed.output) == (1, unknown)
    assert listed("default") == []
    assert listed("acme") == [("Chemistry", "202", "teacher", None)]
    with tenancy.everywhere():
        assert EnrolmentRule.select().count() == 1
        assert AuditEvent.select().count() == events


@pytest.mark.parametrize(
    "slug", ["Acme", "acme corp", "-acme", "acme-", "acme_corp", "a" * 64, "", "ac\u00e9me"]
)
def test_tenants_create_refuses_an_invalid_slug(app: Flask, slug: str) -> None:
    result = invoke(app, "tenants", "create", "--name", "Acme Corp", "--", slug)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: A tenant slug is 1-63 lower-case letters, digits and inner hyphens: {slug!r}.\n"
    )
    assert [t["slug"] for t in _tenants(app)] == ["default"]


@pytest.mark.parametrize("slug", ["acme", "default"])
def test_tenants_create_refuses_a_slug_that_is_taken(app: Flask, acme: Scim, slug: str) -> None:
    before = _tenants(app)
    result = invoke(app, "tenants", "create", slug, "--name", "Another")
    assert result.exit_code == 1
    assert result.output == f"Error: A tenant with slug {slug!r} exists.\n"
    assert _tenants(app) == before  # none added, neither renamed
    assert [t["slug"] for t in before] == ["default", "acme"]


def _tenants(app: Flask) -> list[dict[str, Any]]:
    return json.loads(run(app, "tenants", "list", "--format", "json").stdout)


def test_a_tenants_group_members_are_streamed_in_its_scope(acme: Scim) -> None:
    """Members are read while the body streams, after the view returned: still acme's."""
    user = create_user(acme, "ada@acme.example")
    group = create_group(acme, "Staff", user["id"])
    for body in (
        acme.get(f"/Groups/{group['id']}").get_json(),
        *acme.get("/Groups").get_json()["Resources"],
    ):
        assert [m["value"] for m in body["members"]] == [user["id"]]
