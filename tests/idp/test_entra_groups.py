"""Microsoft Entra ID's group provisioning conversations, replayed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from scim_schemas import CORE_GROUP, CORE_USER
from tests.helpers import Scim, patch_body, stored_members
from tests.idp.conversation import fixture, subset

pytestmark = pytest.mark.idp

ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


def user(scim: Any, login: str) -> str:
    body = {"schemas": [CORE_USER], "userName": login, "externalId": login, "roles": []}
    response = scim.post("/Users", body)
    assert response.status_code == 201
    return response.get_json()["id"]


def create_group(scim: Any) -> dict[str, Any]:
    recorded = fixture("entra/create_group")
    request = {**recorded["request"], "schemas": [CORE_GROUP, ADSCIM_GROUP]}
    response = scim.post("/Groups", request)
    assert response.status_code == recorded["statusCode"], response.get_json()
    subset(recorded["response"], response.get_json())
    return response.get_json()


def test_test_connection_looks_up_a_random_name(scim: Any) -> None:
    response = scim.get(
        "/Groups",
        query_string={
            "filter": f'displayName eq "{uuid.uuid4()}"',
            "excludedAttributes": "members",
        },
    )
    assert response.status_code == 200
    assert (response.get_json()["totalResults"], response.get_json()["Resources"]) == (0, [])


def test_create_with_the_adscim_schema_then_look_up_by_name(scim: Any) -> None:
    created = create_group(scim)
    lookup = fixture("entra/get_group_dn")
    response = scim.get(
        "/Groups",
        query_string={"filter": 'displayName eq "DISPLAYNAME"', "excludedAttributes": "members"},
    )
    assert response.status_code == lookup["statusCode"]
    body = response.get_json()
    assert body["totalResults"] == lookup["response"]["totalResults"]
    # The recordings come from different tenants: the externalId is the one we created with.
    subset({**lookup["response"]["Resources"][0], "externalId": None}, body["Resources"][0])
    assert body["Resources"][0]["id"] == created["id"]
    assert "members" not in body["Resources"][0]
    by_external = scim.get(
        "/Groups", query_string={"filter": f'externalId eq "{created["externalId"]}"'}
    )
    assert [r["id"] for r in by_external.get_json()["Resources"]] == [created["id"]]
    recorded = fixture("entra/get_group")
    fetched = scim.get(f"/Groups/{created['id']}")
    assert fetched.status_code == recorded["statusCode"]
    assert fetched.get_json()["displayName"] == recorded["response"]["displayName"]


def test_membership_probe(scim: Any) -> None:
    group = create_group(scim)
    member, other = user(scim, "member@contoso.com"), user(scim, "other@contoso.com")
    add = {"op": "Add", "path": "members", "value": [{"value": member}]}
    assert scim.patch(f"/Groups/{group['id']}", patch_body(add)).status_code == 204

    def probe(user_id: str) -> list[str]:
        text = f'id eq "{group["id"]}" and members eq "{user_id}"'
        response = scim.get(
            "/Groups", query_string={"filter": text, "excludedAttributes": "members"}
        )
        assert response.status_code == 200
        resources = response.get_json()["Resources"]
        assert all("members" not in r for r in resources)
        return [r["id"] for r in resources]

    assert probe(member) == [group["id"]]
    assert probe(other) == []


def test_add_and_remove_members_with_capitalised_ops(scim: Any) -> None:
    group = create_group(scim)
    ids = [user(scim, f"u{i}@contoso.com") for i in range(4)]
    add = {
        "op": "Add",
        "path": "members",
        "value": [{"$ref": None, "value": user_id} for user_id in ids],
    }
    response = scim.patch(f"/Groups/{group['id']}", patch_body(add))
    assert response.status_code == 204  # what Entra prefers, and the default
    assert stored_members(group["id"]) == set(ids)
    remove = {
        "op": "Remove",
        "path": "members",
        "value": [{"$ref": None, "value": ids[0]}, {"$ref": None, "value": ids[2]}],
    }
    assert scim.patch(f"/Groups/{group['id']}", patch_body(remove)).status_code == 204
    assert stored_members(group["id"]) == {ids[1], ids[3]}  # only the listed members went


def test_recorded_update_renames_adds_and_removes(scim: Any) -> None:
    group = create_group(scim)
    member = user(scim, "f648@contoso.com")
    recorded = fixture("entra/update_group")
    operations = recorded["request"]["Operations"]
    for operation in operations[1:]:
        operation["value"][0]["value"] = member
    response = scim.patch(f"/Groups/{group['id']}", recorded["request"])
    assert response.status_code == 204
    fetched = scim.get(f"/Groups/{group['id']}").get_json()
    assert fetched["displayName"] == operations[0]["value"]
    assert "members" not in fetched  # added, then removed, in the same request
    assert fetched["meta"]["version"] == 'W/"2"'


def test_recorded_update_with_200_configured(scim_with: Callable[..., Scim]) -> None:
    client = scim_with(group_patch_status=200)
    group = create_group(client)
    recorded = fixture("entra/update_group")
    member = user(client, "f648@contoso.com")
    for operation in recorded["request"]["Operations"][1:]:
        operation["value"][0]["value"] = member
    response = client.patch(f"/Groups/{group['id']}", recorded["request"])
    assert response.status_code == recorded["statusCode"]
    subset({**recorded["response"], "externalId": group["externalId"]}, response.get_json())
