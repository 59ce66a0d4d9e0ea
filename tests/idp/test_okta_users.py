"""Okta's user provisioning conversations (Okta SCIM 2.0 reference), replayed."""

from __future__ import annotations

from typing import Any

import pytest

from app.store.models import User
from tests.idp.conversation import OKTA_HEADERS, fixture, subset

pytestmark = pytest.mark.idp


def test_test_connection_lists_two_users(scim: Any) -> None:
    response = scim.get("/Users?count=2&startIndex=1")
    assert response.status_code == 200
    assert response.get_json()["Resources"] == []


def test_assign_looks_up_case_insensitively_then_creates_then_links(scim: Any) -> None:
    create = fixture("okta/create_user")
    login = create["request"]["userName"]
    lookup = scim.get(
        "/Users",
        query_string={"filter": f'userName eq "{login.upper()}"', "startIndex": 1, "count": 100},
    )
    body = lookup.get_json()
    assert (lookup.status_code, body["totalResults"], body["Resources"]) == (200, 0, [])
    assert body["itemsPerPage"] == 0

    response = scim.post("/Users", create["request"], headers=OKTA_HEADERS)
    assert response.status_code == create["statusCode"]
    created = response.get_json()
    subset(create["response"], created)
    assert "password" not in created
    assert User.get_by_id(created["id"]).password_hash.startswith("$argon2id$")

    again = scim.get("/Users", query_string={"filter": f'userName eq "{login.upper()}"'})
    assert [r["id"] for r in again.get_json()["Resources"]] == [created["id"]]

    duplicate = scim.post("/Users", create["request"], headers=OKTA_HEADERS)
    assert duplicate.status_code == 409
    assert duplicate.get_json()["scimType"] == "uniqueness"
    assert duplicate.get_json()["status"] == "409"


def test_profile_update_is_get_then_put_with_read_only_fields(scim: Any) -> None:
    created = scim.post("/Users", fixture("okta/create_user")["request"]).get_json()
    assert scim.get(f"/Users/{created['id']}").status_code == 200
    update = fixture("okta/update_user")
    request = {**update["request"], "id": created["id"]}
    response = scim.put(f"/Users/{created['id']}", request, headers=OKTA_HEADERS)
    assert response.status_code == update["statusCode"]
    subset(update["response"], response.get_json())


def test_deactivate_and_reactivate_by_pathless_patch(scim: Any) -> None:
    created = scim.post("/Users", fixture("okta/create_user")["request"]).get_json()
    patch = fixture("okta/update_user_patch")
    response = scim.patch(f"/Users/{created['id']}", patch["request"], headers=OKTA_HEADERS)
    assert response.status_code == 200
    assert response.get_json()["active"] is False
    assert scim.get(f"/Users/{created['id']}").get_json()["active"] is False
    listed = scim.get("/Users", query_string={"filter": f'userName eq "{created["userName"]}"'})
    assert listed.get_json()["Resources"][0]["active"] is False  # still there while inactive
    reactivate = {**patch["request"], "Operations": [{"op": "replace", "value": {"active": True}}]}
    assert scim.patch(f"/Users/{created['id']}", reactivate).get_json()["active"] is True


def test_wizard_apps_deactivate_with_put(scim: Any) -> None:
    created = scim.post("/Users", fixture("okta/create_user")["request"]).get_json()
    body = {**fixture("okta/update_user")["request"], "active": False}
    assert scim.put(f"/Users/{created['id']}", body).get_json()["active"] is False


def test_password_push_replaces_the_hash(scim: Any) -> None:
    created = scim.post("/Users", fixture("okta/create_user")["request"]).get_json()
    before = User.get_by_id(created["id"]).password_hash
    push = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"password": "an0ther-Secret"}}],
    }
    response = scim.patch(f"/Users/{created['id']}", push)
    assert response.status_code == 200
    after = User.get_by_id(created["id"]).password_hash
    assert after != before
    assert after.startswith("$argon2id$")


def test_import_pages_through_everyone_once(scim: Any) -> None:
    base = fixture("okta/create_user")["request"]
    ids = set()
    for i in range(5):
        body = {
            **base,
            "userName": f"user{i}@okta.local",
            "externalId": f"00u{i}",
            "emails": [{"primary": True, "value": f"user{i}@okta.local", "type": "work"}],
        }
        ids.add(scim.post("/Users", body).get_json()["id"])
    seen = []
    start = 1
    while True:
        page = scim.get(f"/Users?startIndex={start}&count=2").get_json()
        assert isinstance(page["startIndex"], int)
        assert page["itemsPerPage"] == len(page["Resources"])
        seen += [r["id"] for r in page["Resources"]]
        if start + page["itemsPerPage"] > page["totalResults"]:
            break
        start += page["itemsPerPage"]
    assert sorted(seen) == sorted(ids)


def test_user_exists_lookup_of_an_unknown_user_is_an_empty_list(scim: Any) -> None:
    exists = fixture("okta/user_exists")
    response = scim.get(exists["path"])
    assert response.status_code == exists["statusCode"]
    body = response.get_json()
    assert body["totalResults"] == 0
    assert body["Resources"] == []


def test_unknown_id_is_404_with_the_error_schema(scim: Any) -> None:
    response = scim.get("/Users/00000000000000000000000000000000")
    assert response.status_code == 404
    assert response.get_json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
