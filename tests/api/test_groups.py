"""/Groups from the client's side: requests in, responses and stored state out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from playhouse.test_utils import count_queries

from app.config import Config
from app.store import memberships
from app.store.models import AuditEvent, Group, Membership, User
from scim_schemas import CORE_GROUP, CORE_USER, LIST_RESPONSE, PATCH_OP, SEARCH_REQUEST
from tests.helpers import (
    Scim,
    assert_error,
    bulk_members,
    bulk_users,
    create_group,
    create_user,
    group_body,
    in_threads,
    members,
    patch_body,
    stored_members,
)


def member_ids(scim: Any, group_id: str) -> set[str]:
    body = scim.get(f"/Groups/{group_id}").get_json()
    return {m["value"] for m in body.get("members", [])}


@pytest.fixture
def users(scim: Any) -> list[dict[str, Any]]:
    return [
        create_user(scim, "ann@example.com", displayName="Ann Smith"),
        create_user(scim, "bob@example.com"),
        create_user(scim, "cid@example.com", displayName="Cid"),
    ]


# --------------------------------------------------------------------------------------------
# Create, read, delete


def test_create_returns_the_group_with_location_and_etag(scim: Any) -> None:
    response = scim.post("/Groups", group_body(externalId="ext-1", members=[]))
    assert response.status_code == 201
    assert response.mimetype == "application/scim+json"
    body = response.get_json()
    assert body["schemas"] == [CORE_GROUP]
    assert body["displayName"] == "Physics 101"
    assert body["externalId"] == "ext-1"
    assert "members" not in body
    assert body["meta"]["resourceType"] == "Group"
    assert body["meta"]["location"].endswith(f"/scim/v2/Groups/{body['id']}")
    assert response.headers["Location"] == body["meta"]["location"]
    assert response.headers["ETag"] == body["meta"]["version"] == 'W/"1"'
    assert scim.get(f"/Groups/{body['id']}").get_json() == body


def test_members_carry_value_ref_display_and_type(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, _ = users
    body = create_group(scim, members=members(ann["id"], bob["id"]))
    by_id = {m["value"]: m for m in body["members"]}
    assert by_id[ann["id"]] == {
        "value": ann["id"],
        "$ref": ann["meta"]["location"],
        "display": "Ann Smith",
        "type": "User",
    }
    assert by_id[bob["id"]]["display"] == "bob@example.com"  # no displayName: the userName
    assert scim.get(f"/Groups/{body['id']}").get_json()["members"] == body["members"]


@pytest.mark.parametrize(
    "body",
    [
        {"schemas": [CORE_GROUP]},
        {"schemas": [CORE_GROUP], "displayName": None},
        {"schemas": [CORE_GROUP], "displayName": 7},
        {"schemas": [CORE_GROUP], "displayName": "x" * 600},
        {"schemas": [CORE_GROUP], "displayName": "x", "shoeSize": 9},
        {"schemas": [CORE_GROUP], "displayName": "x", "members": "nope"},
        {"schemas": [CORE_GROUP], "displayName": "x", "members": [{"display": "no value"}]},
        {"schemas": [CORE_USER], "displayName": "x"},
    ],
)
def test_bad_bodies_are_invalid_value_and_store_nothing(scim: Any, body: Any) -> None:
    assert_error(scim.post("/Groups", body), 400, "invalidValue")
    assert Group.select().count() == 0


def test_unknown_member_is_invalid_value_and_nothing_is_stored(
    scim: Any, users: list[dict[str, Any]]
) -> None:
    response = scim.post("/Groups", group_body(members=members(users[0]["id"], "nobody")))
    body = assert_error(response, 400, "invalidValue")
    assert "nobody" in body["detail"]
    assert Group.select().count() == 0
    assert Membership.select().count() == 0


def test_a_group_cannot_be_a_member(scim: Any, users: list[dict[str, Any]]) -> None:
    inner = create_group(scim, "Inner")
    for member in ({"value": inner["id"]}, {"value": users[0]["id"], "type": "Group"}):
        body = assert_error(
            scim.post("/Groups", group_body("Outer", members=[member])), 400, "invalidValue"
        )
        assert "Only Users can be members" in body["detail"]
    outer = create_group(scim, "Outer")
    response = scim.patch(
        f"/Groups/{outer['id']}",
        patch_body({"op": "add", "path": "members", "value": [{"value": inner["id"]}]}),
    )
    assert "nested groups" in assert_error(response, 400, "invalidValue")["detail"]


def test_unknown_group_id_is_404_for_every_method(scim: Any) -> None:
    assert_error(scim.get("/Groups/nope"), 404)
    assert_error(scim.put("/Groups/nope", group_body()), 404)
    assert_error(
        scim.patch("/Groups/nope", patch_body({"op": "add", "path": "members", "value": []})), 404
    )
    assert_error(scim.delete("/Groups/nope"), 404)


def test_delete_removes_memberships_never_users(scim: Any, users: list[dict[str, Any]]) -> None:
    group = create_group(scim, members=members(*(u["id"] for u in users)))
    response = scim.delete(f"/Groups/{group['id']}")
    assert response.status_code == 204
    assert_error(scim.get(f"/Groups/{group['id']}"), 404)
    assert Membership.select().count() == 0
    assert User.select().count() == 3
    assert "groups" not in scim.get(f"/Users/{users[0]['id']}").get_json()


def test_if_none_match_and_if_match(scim: Any) -> None:
    group = create_group(scim)
    etag = group["meta"]["version"]
    assert scim.get(f"/Groups/{group['id']}", headers={"If-None-Match": etag}).status_code == 304
    assert_error(
        scim.put(f"/Groups/{group['id']}", group_body(), headers={"If-Match": 'W/"9"'}), 412
    )
    assert_error(scim.delete(f"/Groups/{group['id']}", headers={"If-Match": 'W/"9"'}), 412)
    ok = scim.put(f"/Groups/{group['id']}", group_body("New"), headers={"If-Match": etag})
    assert ok.status_code == 200


# --------------------------------------------------------------------------------------------
# Users' `groups`


def test_users_show_their_groups_and_filter_by_them(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, _ = users
    physics = create_group(scim, "Physics", members=members(ann["id"]))
    create_group(scim, "Chemistry", members=members(bob["id"]))
    fetched = scim.get(f"/Users/{ann['id']}").get_json()
    assert fetched["groups"] == [
        {
            "value": physics["id"],
            "$ref": physics["meta"]["location"],
            "display": "Physics",
            "type": "direct",
        }
    ]
    for text in (f'groups.value eq "{physics["id"]}"', f'groups eq "{physics["id"].upper()}"'):
        found = scim.get("/Users", query_string={"filter": text}).get_json()
        assert [r["id"] for r in found["Resources"]] == [ann["id"]], text
    by_name = scim.get("/Users", query_string={"filter": 'groups.display eq "Chemistry"'})
    assert [r["id"] for r in by_name.get_json()["Resources"]] == [bob["id"]]


def test_deleting_a_user_removes_its_memberships(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, _ = users
    group = create_group(scim, members=members(ann["id"], bob["id"]))
    assert scim.delete(f"/Users/{ann['id']}").status_code == 204
    assert member_ids(scim, group["id"]) == {bob["id"]}
    # The group's members changed: a new version (so a cached ETag no longer matches) and a trace.
    after = scim.get(f"/Groups/{group['id']}").get_json()
    assert after["meta"]["version"] != group["meta"]["version"]
    stale = scim.get(f"/Groups/{group['id']}", headers={"If-None-Match": group["meta"]["version"]})
    assert stale.status_code == 200
    event = (
        AuditEvent.select()
        .where(AuditEvent.resource_id == group["id"])
        .order_by(AuditEvent.id.desc())[0]
    )
    assert json.loads(event.changes)["members"]["removed"] == [ann["id"]]


def test_a_deactivated_user_keeps_its_memberships(scim: Any, users: list[dict[str, Any]]) -> None:
    ann = users[0]
    group = create_group(scim, members=members(ann["id"]))
    deactivate = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    assert scim.patch(f"/Users/{ann['id']}", deactivate).status_code == 200
    assert member_ids(scim, group["id"]) == {ann["id"]}
    assert scim.get(f"/Users/{ann['id']}").get_json()["groups"][0]["value"] == group["id"]


# --------------------------------------------------------------------------------------------
# PUT


def test_put_replaces_name_external_id_and_members(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, cid = users
    group = create_group(scim, externalId="x", members=members(ann["id"], bob["id"]))
    body = group_body("Renamed", members=members(bob["id"], cid["id"]))
    body.update(id="ignored", meta={"resourceType": "Group"})
    response = scim.put(f"/Groups/{group['id']}", body)
    assert response.status_code == 200, response.get_json()
    replaced = response.get_json()
    assert replaced["id"] == group["id"]
    assert replaced["displayName"] == "Renamed"
    assert "externalId" not in replaced
    assert {m["value"] for m in replaced["members"]} == {bob["id"], cid["id"]}
    assert replaced["meta"]["version"] == 'W/"2"'
    audit = _last_group_event()
    changes = json.loads(audit.changes)
    assert changes["members"] == {"added": [cid["id"]], "removed": [ann["id"]]}


def test_put_without_members_keeps_them_and_empty_members_clears(
    scim: Any, users: list[dict[str, Any]]
) -> None:
    group = create_group(scim, members=members(users[0]["id"]))
    kept = scim.put(f"/Groups/{group['id']}", group_body()).get_json()
    assert kept["meta"]["version"] == group["meta"]["version"]  # nothing changed
    assert stored_members(group["id"]) == {users[0]["id"]}
    cleared = scim.put(f"/Groups/{group['id']}", group_body(members=[])).get_json()
    assert "members" not in cleared
    assert stored_members(group["id"]) == set()


def test_put_with_an_unknown_member_changes_nothing(scim: Any, users: list[dict[str, Any]]) -> None:
    group = create_group(scim, members=members(users[0]["id"]))
    response = scim.put(f"/Groups/{group['id']}", group_body("New", members=members("ghost")))
    assert_error(response, 400, "invalidValue")
    assert scim.get(f"/Groups/{group['id']}").get_json() == group


# --------------------------------------------------------------------------------------------
# PATCH


def test_patch_adds_and_removes_single_members(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, cid = users
    group = create_group(scim, members=members(ann["id"]))
    response = scim.patch(
        f"/Groups/{group['id']}",
        patch_body(
            {"op": "add", "path": "members", "value": members(bob["id"], cid["id"])},
            {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'},
        ),
    )
    assert response.status_code == 204
    assert response.get_data() == b""
    assert response.headers["ETag"] == 'W/"2"'
    assert stored_members(group["id"]) == {bob["id"], cid["id"]}
    changes = json.loads(_last_group_event().changes)
    assert changes == {"members": {"added": [bob["id"], cid["id"]], "removed": [ann["id"]]}}


def _last_group_event() -> AuditEvent:
    """The newest event of a Group (each moved member's own event is written with it)."""
    query = AuditEvent.select().where(AuditEvent.resource_type == "Group")
    return query.order_by(AuditEvent.id.desc()).first()


def test_adding_a_member_twice_is_a_no_op(scim: Any, users: list[dict[str, Any]]) -> None:
    ann = users[0]
    group = create_group(scim, members=members(ann["id"]))
    audits = AuditEvent.select().count()
    add = patch_body({"op": "add", "path": "members", "value": members(ann["id"], ann["id"])})
    response = scim.patch(f"/Groups/{group['id']}", add)
    assert response.status_code == 204
    assert response.headers["ETag"] == group["meta"]["version"]
    assert stored_members(group["id"]) == {ann["id"]}
    assert AuditEvent.select().count() == audits


def test_patch_remove_with_values_removes_only_those(
    scim: Any, users: list[dict[str, Any]]
) -> None:
    ann, bob, cid = users
    group = create_group(scim, members=members(ann["id"], bob["id"], cid["id"]))
    remove = {"op": "remove", "path": "members", "value": [{"$ref": None, "value": bob["id"]}]}
    assert scim.patch(f"/Groups/{group['id']}", patch_body(remove)).status_code == 204
    assert stored_members(group["id"]) == {ann["id"], cid["id"]}
    # Removing a member that is not there (any more) is not an error.
    again = {"op": "remove", "path": f'members[value eq "{bob["id"]}"]'}
    assert scim.patch(f"/Groups/{group['id']}", patch_body(remove, again)).status_code == 204
    assert stored_members(group["id"]) == {ann["id"], cid["id"]}


def test_patch_remove_without_value_removes_all_members(
    scim: Any, users: list[dict[str, Any]]
) -> None:
    group = create_group(scim, members=members(*(u["id"] for u in users)))
    assert (
        scim.patch(
            f"/Groups/{group['id']}", patch_body({"op": "remove", "path": "members"})
        ).status_code
        == 204
    )
    assert stored_members(group["id"]) == set()
    assert User.select().count() == 3


def test_patch_remove_by_any_member_filter(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, cid = users
    group = create_group(scim, members=members(ann["id"], bob["id"], cid["id"]))
    remove = {"op": "remove", "path": 'members[display sw "ann" or display eq "CID"]'}
    assert scim.patch(f"/Groups/{group['id']}", patch_body(remove)).status_code == 204
    assert stored_members(group["id"]) == {bob["id"]}
    bad = {"op": "remove", "path": 'members[shoeSize eq "9"]'}
    assert_error(scim.patch(f"/Groups/{group['id']}", patch_body(bad)), 400, "invalidFilter")


def test_patch_replace_members_sets_the_whole_list(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, cid = users
    group = create_group(scim, members=members(ann["id"], bob["id"]))
    replace = {
        "op": "replace",
        "path": "members",
        "value": members(bob["id"], cid["id"], cid["id"]),
    }
    assert scim.patch(f"/Groups/{group['id']}", patch_body(replace)).status_code == 204
    assert stored_members(group["id"]) == {bob["id"], cid["id"]}
    pathless = {"op": "replace", "value": {"members": members(ann["id"])}}
    assert scim.patch(f"/Groups/{group['id']}", patch_body(pathless)).status_code == 204
    assert stored_members(group["id"]) == {ann["id"]}


def test_patch_rename_tolerates_the_groups_own_id(scim: Any) -> None:
    group = create_group(scim)
    rename = {"op": "replace", "value": {"id": group["id"], "displayName": "Physics 102"}}
    assert scim.patch(f"/Groups/{group['id']}", patch_body(rename)).status_code == 204
    fetched = scim.get(f"/Groups/{group['id']}").get_json()
    assert fetched["displayName"] == "Physics 102"
    assert fetched["meta"]["version"] == 'W/"2"'
    other = {"op": "replace", "value": {"id": "another-id", "displayName": "X"}}
    assert_error(scim.patch(f"/Groups/{group['id']}", patch_body(other)), 400, "mutability")


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        ({"op": "remove", "path": "displayName"}, "mutability"),
        ({"op": "replace", "path": "members.display", "value": "x"}, "mutability"),
        ({"op": "replace", "path": 'members[value eq "x"]', "value": {"value": "y"}}, "mutability"),
        ({"op": "add", "path": "members", "value": [{"value": "ghost"}]}, "invalidValue"),
        ({"op": "add", "path": "shoeSize", "value": 9}, "invalidPath"),
        ({"op": "remove"}, "noTarget"),
        ({"op": "move", "path": "members"}, "invalidSyntax"),
    ],
)
def test_a_failing_operation_applies_nothing_of_the_request(
    scim: Any, users: list[dict[str, Any]], operation: dict[str, Any], scim_type: str
) -> None:
    ann, bob, _ = users
    group = create_group(scim, members=members(ann["id"]))
    body = patch_body(
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "add", "path": "members", "value": members(bob["id"])},
        {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'},
        operation,
    )
    assert_error(scim.patch(f"/Groups/{group['id']}", body), 400, scim_type)
    assert scim.get(f"/Groups/{group['id']}").get_json() == group
    assert stored_members(group["id"]) == {ann["id"]}


def test_patch_can_answer_200_with_the_group_honouring_attributes(
    scim_with: Callable[..., Scim], users: list[dict[str, Any]]
) -> None:
    scim = scim_with(group_patch_status=200)
    group = create_group(scim)
    add = patch_body({"op": "add", "path": "members", "value": members(users[0]["id"])})
    response = scim.patch(f"/Groups/{group['id']}?attributes=members.value", add)
    assert response.status_code == 200
    assert response.get_json() == {
        "schemas": [CORE_GROUP],
        "id": group["id"],
        "members": [{"value": users[0]["id"]}],
    }
    assert response.headers["ETag"] == 'W/"2"'


def test_group_patch_status_and_unique_names_come_from_the_environment() -> None:
    config = Config.from_env({"GROUP_PATCH_RESPONSE": "200", "UNIQUE_GROUP_NAMES": "true"})
    assert (config.group_patch_status, config.unique_group_names) == (200, True)
    default = Config.from_env({})
    assert (default.group_patch_status, default.unique_group_names) == (204, False)
    with pytest.raises(ValueError, match="GROUP_PATCH_RESPONSE"):
        Config.from_env({"GROUP_PATCH_RESPONSE": "201"})


# --------------------------------------------------------------------------------------------
# displayName uniqueness


def test_display_names_are_not_unique_by_default(scim: Any) -> None:
    create_group(scim, "Physics")
    create_group(scim, "PHYSICS")
    assert Group.select().count() == 2


def test_unique_display_names_when_configured(scim_with: Callable[..., Scim]) -> None:
    scim = scim_with(unique_group_names=True)
    physics = create_group(scim, "Physics")
    body = assert_error(scim.post("/Groups", group_body("pHYSICS")), 409, "uniqueness")
    assert physics["id"] in body["detail"]
    chemistry = create_group(scim, "Chemistry")
    rename = patch_body({"op": "replace", "path": "displayName", "value": "physics"})
    assert_error(scim.patch(f"/Groups/{chemistry['id']}", rename), 409, "uniqueness")
    assert_error(scim.put(f"/Groups/{chemistry['id']}", group_body("Physics")), 409, "uniqueness")
    assert scim.delete(f"/Groups/{physics['id']}").status_code == 204
    create_group(scim, "PHYSICS")  # the name is free again at once


# --------------------------------------------------------------------------------------------
# Listing, filtering, sorting, projection


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [r["id"] for r in response.get_json()["Resources"]]


def test_filters_idps_use(scim: Any, users: list[dict[str, Any]]) -> None:
    ann, bob, _ = users
    physics = create_group(scim, "Physics", externalId="ext-P", members=members(ann["id"]))
    chemistry = create_group(scim, "Chemistry", members=members(ann["id"], bob["id"]))
    cases = {
        'displayName eq "PHYSICS"': [physics["id"]],
        'externalId eq "ext-P"': [physics["id"]],
        'externalId eq "ext-p"': [],  # externalId is caseExact
        f'members eq "{bob["id"]}"': [chemistry["id"]],
        f'members.value eq "{bob["id"]}"': [chemistry["id"]],
        f'members[value eq "{ann["id"]}"]': sorted([physics["id"], chemistry["id"]]),
        f'id eq "{physics["id"]}" and members eq "{ann["id"]}"': [physics["id"]],
        f'id eq "{physics["id"]}" and members eq "{bob["id"]}"': [],
        'displayName sw "chem" or displayName ew "ICS"': sorted([physics["id"], chemistry["id"]]),
        "members pr": sorted([physics["id"], chemistry["id"]]),
        'members.display co "smith"': sorted([physics["id"], chemistry["id"]]),
        'not (displayName eq "physics")': [chemistry["id"]],
    }
    for text, expected in cases.items():
        response = scim.get("/Groups", query_string={"filter": text, "sortBy": "id"})
        assert _ids(response) == expected, text
        assert response.get_json()["totalResults"] == len(expected)


@pytest.mark.parametrize(
    "text", ['shoeSize eq "9"', "displayName eq", 'members.$ref eq "x"', "displayName gt"]
)
def test_bad_filters_are_invalid_filter(scim: Any, text: str) -> None:
    assert_error(scim.get("/Groups", query_string={"filter": text}), 400, "invalidFilter")


def test_list_pages_and_sorts(scim: Any) -> None:
    names = ["delta", "Alpha", "charlie", "Bravo", "echo"]
    for name in names:
        create_group(scim, name)
    seen: list[str] = []
    for start in (1, 3, 5):
        body = scim.get(f"/Groups?startIndex={start}&count=2&sortBy=displayName").get_json()
        assert body["schemas"] == [LIST_RESPONSE]
        assert (body["totalResults"], body["startIndex"]) == (5, start)
        assert body["itemsPerPage"] == len(body["Resources"])
        seen += [r["displayName"] for r in body["Resources"]]
    assert seen == sorted(names, key=str.lower)
    descending = scim.get("/Groups?sortBy=displayName&sortOrder=descending").get_json()
    assert [r["displayName"] for r in descending["Resources"]] == sorted(names, key=str.lower)[::-1]
    assert_error(scim.get("/Groups?sortBy=members"), 400, "invalidValue")


def test_attributes_and_excluded_attributes(scim: Any, users: list[dict[str, Any]]) -> None:
    group = create_group(scim, externalId="e", members=members(users[0]["id"]))
    gid = group["id"]
    assert scim.get(f"/Groups/{gid}?attributes=displayName").get_json() == {
        "schemas": [CORE_GROUP],
        "id": gid,
        "displayName": "Physics 101",
    }
    without = scim.get(f"/Groups/{gid}?excludedAttributes=members,meta").get_json()
    assert without == {
        "schemas": [CORE_GROUP],
        "id": gid,
        "externalId": "e",
        "displayName": "Physics 101",
    }
    only_display = scim.get(f"/Groups/{gid}?attributes=members.display").get_json()
    assert only_display["members"] == [{"display": "Ann Smith"}]
    listed = scim.get("/Groups?excludedAttributes=members").get_json()["Resources"]
    assert "members" not in listed[0]
    assert_error(scim.get(f"/Groups/{gid}?attributes=shoeSize"), 400, "invalidValue")


def test_search_endpoint(scim: Any, users: list[dict[str, Any]]) -> None:
    group = create_group(scim, members=members(users[0]["id"]))
    create_group(scim, "Other")
    response = scim.post(
        "/Groups/.search",
        {
            "schemas": [SEARCH_REQUEST],
            "filter": f'members eq "{users[0]["id"]}"',
            "attributes": ["displayName"],
        },
    )
    assert response.get_json()["Resources"] == [
        {"schemas": [CORE_GROUP], "id": group["id"], "displayName": "Physics 101"}
    ]


# --------------------------------------------------------------------------------------------
# Cost: queries and memory


@pytest.fixture
def warm(scim: Any) -> Any:
    """A client whose token is cached, so counted requests run only the group's queries."""
    assert scim.get("/ServiceProviderConfig").status_code == 200
    return scim


def _sql(counter: count_queries) -> list[str]:
    return [record.msg[0].lower() for record in counter.get_queries()]


def test_excluded_members_are_never_loaded(warm: Any, users: list[dict[str, Any]]) -> None:
    ann = users[0]
    group = create_group(warm, "Physics", members=members(ann["id"]))
    gid = group["id"]
    for path in (
        f"/Groups/{gid}?excludedAttributes=members",
        f"/Groups/{gid}?attributes=displayName",
        "/Groups?filter=displayName%20eq%20%22physics%22&excludedAttributes=members",
    ):
        with count_queries() as counter:
            assert warm.get(path).status_code == 200
        assert not [q for q in _sql(counter) if "membership" in q], path
    probe = f'id eq "{gid}" and members eq "{ann["id"]}"'
    with count_queries() as counter:
        body = warm.get("/Groups", query_string={"filter": probe, "excludedAttributes": "members"})
    assert [r["id"] for r in body.get_json()["Resources"]] == [gid]
    # One query: the page (a short first page is its own total, so no COUNT), with the
    # membership table only inside its sub-select.
    assert len(_sql(counter)) == 1


def _patch_queries(scim: Any, group_id: str, add: str, remove: str) -> int:
    body = patch_body(
        {"op": "remove", "path": f'members[value eq "{remove}"]'},
        {"op": "add", "path": "members", "value": members(add)},
    )
    with count_queries() as counter:
        assert scim.patch(f"/Groups/{group_id}", body).status_code == 204
    return counter.count


def test_member_patch_costs_the_same_whatever_the_group_size(warm: Any) -> None:
    ids = bulk_users(305)
    small = create_group(warm, "Small")
    big = create_group(warm, "Big")
    bulk_members(small["id"], ids[:3])
    bulk_members(big["id"], ids[:300])
    small_cost = _patch_queries(warm, small["id"], ids[303], ids[0])
    big_cost = _patch_queries(warm, big["id"], ids[304], ids[0])
    assert small_cost == big_cost
    # lock, user check, delete, insert, version, audit, the moved users' versions and
    # histories, LMS outbox
    assert small_cost <= 9
    assert len(stored_members(big["id"])) == 300


def test_big_groups_stream_in_chunks(warm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memberships, "CHUNK", 10)
    ids = bulk_users(35)
    big = create_group(warm, "Big")
    bulk_members(big["id"], ids)
    small = [create_group(warm, f"Small {i}") for i in range(3)]
    for i, group in enumerate(small):
        bulk_members(group["id"], ids[i * 3 : i * 3 + 3])
    with count_queries() as counter:
        response = warm.get(f"/Groups/{big['id']}")
        assert response.is_streamed
        body = response.get_json()
    assert [m["value"] for m in body["members"]] == ids
    # the group, the count, then four keyset chunks of at most 10 members
    member_reads = [q for q in _sql(counter) if 'from "membership"' in q and "count(" not in q]
    assert len(member_reads) == 4
    listed = warm.get("/Groups?sortBy=displayName").get_json()["Resources"]
    assert [len(r.get("members", [])) for r in listed] == [35, 3, 3, 3]
    assert [m["value"] for m in listed[3]["members"]] == ids[6:9]
    with count_queries() as counter:
        warm.get("/Groups?filter=displayName%20sw%20%22small%22").get_json()
    # the three small groups' members are read together in one query
    assert len([q for q in _sql(counter) if 'from "membership"' in q]) == 2


# --------------------------------------------------------------------------------------------
# Concurrency


def test_concurrent_member_changes_lose_nothing(app: Flask, scim: Any, token: str) -> None:
    joining = bulk_users(20, "join")
    leaving = bulk_users(20, "leave")
    group = create_group(scim, members=members(*leaving))
    gid = group["id"]

    def job(index: int) -> Callable[[Scim], None]:
        def change(client: Scim) -> None:
            add = {"op": "add", "path": "members", "value": members(joining[index])}
            if index % 2:
                remove = {"op": "remove", "path": f'members[value eq "{leaving[index]}"]'}
            else:
                remove = {"op": "Remove", "path": "members", "value": members(leaving[index])}
            for operation in (add, remove):
                response = client.patch(f"/Groups/{gid}", patch_body(operation))
                assert response.status_code == 204, response.get_data(as_text=True)

        return change

    errors = in_threads(app, [job(i) for i in range(20)], token)
    assert not errors, errors
    assert stored_members(gid) == set(joining)
    assert scim.get(f"/Groups/{gid}").get_json()["meta"]["version"] == 'W/"41"'
