"""Tenants: a token of one tenant never reads, lists, counts, changes or references anything of
another; a foreign id answers exactly as an absent one; names are unique per tenant."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

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


def test_a_tenants_group_members_are_streamed_in_its_scope(acme: Scim) -> None:
    """Members are read while the body streams, after the view returned: still acme's."""
    user = create_user(acme, "ada@acme.example")
    group = create_group(acme, "Staff", user["id"])
    for body in (
        acme.get(f"/Groups/{group['id']}").get_json(),
        *acme.get("/Groups").get_json()["Resources"],
    ):
        assert [m["value"] for m in body["members"]] == [user["id"]]
