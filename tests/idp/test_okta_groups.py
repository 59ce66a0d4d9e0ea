"""Okta's group push conversations (Okta SCIM 2.0 reference), replayed."""

from __future__ import annotations

from typing import Any

import pytest

from app.store.models import User
from scim_schemas import CORE_USER, LIST_RESPONSE
from tests.helpers import stored_members
from tests.idp.conversation import OKTA_HEADERS, RECORDED_MEMBERS, fixture, replay, subset

pytestmark = pytest.mark.idp


def user(scim: Any, login: str) -> str:
    body = {"schemas": [CORE_USER], "userName": login, "groups": [], "active": True}
    response = scim.post("/Users", body, headers=OKTA_HEADERS)
    assert response.status_code == 201
    return response.get_json()["id"]


def push_group(scim: Any) -> dict[str, Any]:
    create = fixture("okta/create_group")
    response = scim.post("/Groups", create["request"], headers=OKTA_HEADERS)
    assert response.status_code == create["statusCode"]
    return response.get_json()


def test_test_connection_lists_groups(scim: Any) -> None:
    response = scim.get("/Groups?count=100&startIndex=1")
    assert response.status_code == 200
    body = response.get_json()
    assert body["schemas"] == [LIST_RESPONSE]
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (0, 1, 0)
    assert body["Resources"] == []


def test_push_creates_with_empty_members_then_reads_back(scim: Any) -> None:
    create = fixture("okta/create_group")
    created = push_group(scim)
    subset(create["response"], created)  # `members: null` in the record: no members
    assert "members" not in created
    member = user(scim, "test.user@okta.local")
    add = {"op": "add", "path": "members", "value": [{"value": member, "display": "x"}]}
    patch = {**fixture("okta/update_group_membership")["request"], "Operations": [add]}
    assert scim.patch(f"/Groups/{created['id']}", patch, headers=OKTA_HEADERS).status_code == 204
    retrieve = fixture("okta/retrieve_group")
    response = scim.get(f"/Groups/{created['id']}", headers=OKTA_HEADERS)
    assert response.status_code == retrieve["statusCode"]
    body = response.get_json()
    assert set(body) >= set(retrieve["response"])
    assert body["members"] == [
        {
            "value": member,
            "display": "test.user@okta.local",
            "type": "User",
            "$ref": f"http://localhost/scim/v2/Users/{member}",
        }
    ]


def test_membership_patch_removes_adds_and_replaces_in_one_request(scim: Any) -> None:
    group = push_group(scim)
    leaving, joining = (user(scim, login) for login in ("leaver@okta.local", "joiner@okta.local"))
    ids = dict(zip(RECORDED_MEMBERS, (leaving, joining), strict=True))
    seed = {"op": "add", "path": "members", "value": [{"value": leaving}]}
    recorded = fixture("okta/update_group_membership")
    scim.patch(f"/Groups/{group['id']}", {**recorded["request"], "Operations": [seed]})

    request = replay(recorded, ids)
    remove_then_add = {**request, "Operations": request["Operations"][:2]}
    response = scim.patch(f"/Groups/{group['id']}", remove_then_add, headers=OKTA_HEADERS)
    assert response.status_code in (200, 204)
    assert stored_members(group["id"]) == {joining}

    response = scim.patch(f"/Groups/{group['id']}", request, headers=OKTA_HEADERS)
    assert response.status_code in (200, 204)
    assert stored_members(group["id"]) == {joining, leaving}  # the final full replace
    assert User.select().count() == 2


def test_rename_carries_the_groups_own_id(scim: Any) -> None:
    group = push_group(scim)
    recorded = fixture("okta/update_group_name")
    request = replay(recorded, {recorded["response"]["id"]: group["id"]})
    # The recording renames to the name the group already has; its response shows the new one.
    request["Operations"][0]["value"]["displayName"] = recorded["response"]["displayName"]
    response = scim.patch(f"/Groups/{group['id']}", request, headers=OKTA_HEADERS)
    assert response.status_code in (200, 204)
    fetched = scim.get(f"/Groups/{group['id']}").get_json()
    subset(recorded["response"], fetched)
    assert fetched["meta"]["version"] != group["meta"]["version"]


def test_wizard_apps_put_the_group(scim: Any) -> None:
    group = push_group(scim)
    first, second = user(scim, "one@okta.local"), user(scim, "two@okta.local")
    body = {
        **fixture("okta/create_group")["request"],
        "id": group["id"],
        "displayName": "Test SCIMv2 renamed",
        "members": [{"value": first, "display": "one"}, {"value": second, "display": "two"}],
    }
    response = scim.put(f"/Groups/{group['id']}", body, headers=OKTA_HEADERS)
    assert response.status_code == 200
    assert response.get_json()["displayName"] == "Test SCIMv2 renamed"
    assert {m["value"] for m in response.get_json()["members"]} == {first, second}
    body["members"] = [{"value": second}]
    scim.put(f"/Groups/{group['id']}", body, headers=OKTA_HEADERS)
    assert stored_members(group["id"]) == {second}


def test_unlink_deletes_the_group_but_not_its_users(scim: Any) -> None:
    group = push_group(scim)
    member = user(scim, "stay@okta.local")
    scim.put(
        f"/Groups/{group['id']}",
        {**fixture("okta/create_group")["request"], "members": [{"value": member}]},
    )
    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    missing = scim.get(f"/Groups/{group['id']}")
    assert missing.status_code == 404
    assert missing.get_json()["status"] == "404"
    assert scim.get(f"/Users/{member}").status_code == 200


def test_import_pages_through_groups(scim: Any) -> None:
    created = {push_group(scim)["id"] for _ in range(3)}  # same name: not unique by default
    seen: list[str] = []
    for start in (1, 3):
        body = scim.get(f"/Groups?startIndex={start}&count=2").get_json()
        assert body["totalResults"] == 3
        assert body["itemsPerPage"] == len(body["Resources"])
        seen += [r["id"] for r in body["Resources"]]
    assert sorted(seen) == sorted(created)
