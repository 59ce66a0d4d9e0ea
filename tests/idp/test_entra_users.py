"""Microsoft Entra ID's user provisioning conversations (documented dialect), replayed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.store.models import User
from scim_schemas import ENTERPRISE_USER
from tests.helpers import patch_body
from tests.idp.conversation import fixture, subset

pytestmark = pytest.mark.idp


@pytest.fixture
def entra_user(scim: Any) -> dict[str, Any]:
    create = fixture("entra/create_user")
    response = scim.post("/Users", create["request"])
    assert response.status_code == create["statusCode"], response.get_json()
    subset(create["response"], response.get_json())
    return response.get_json()


def test_test_connection_looks_up_a_random_guid(scim: Any) -> None:
    for attribute in ("userName", "externalId"):
        text = f'{attribute} eq "{uuid.uuid4()}"'
        body = scim.get("/Users", query_string={"filter": text}).get_json()
        assert (body["totalResults"], body["Resources"]) == (0, [])


def test_query_by_user_name_returns_the_user(scim: Any, entra_user: dict[str, Any]) -> None:
    text = f'userName eq "{entra_user["userName"]}"'
    body = scim.get("/Users", query_string={"filter": text}).get_json()
    assert body["totalResults"] == 1
    expected = fixture("entra/get_user_query_resp")["response"]["Resources"][0]
    assert set(expected) - {"id", "meta", "externalId", "userName", "name", "emails"} <= set(
        body["Resources"][0]
    )


@pytest.mark.parametrize(
    "text",
    [
        'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"',
        'emails[type eq "work"].value eq '
        '"test_user_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"',
    ],
)
def test_every_matching_attribute_can_be_filtered(
    scim: Any, entra_user: dict[str, Any], text: str
) -> None:
    body = scim.get("/Users", query_string={"filter": text}).get_json()
    assert [r["id"] for r in body["Resources"]] == [entra_user["id"]]


def test_recorded_update_patch(scim: Any, entra_user: dict[str, Any]) -> None:
    update = fixture("entra/update_user")
    response = scim.patch(f"/Users/{entra_user['id']}", update["request"])
    assert response.status_code == update["statusCode"], response.get_json()
    body = response.get_json()
    expected = dict(update["response"])
    expected["name"] = {k: v for k, v in expected["name"].items() if k != "formatted"}
    subset({k: v for k, v in expected.items() if k not in ("externalId", "schemas")}, body)
    assert User.get_by_id(entra_user["id"]).active is False


@pytest.mark.parametrize(
    ("value", "expected"), [("False", False), ("True", True), ("false", False)]
)
def test_string_booleans_deactivate_leavers(
    scim: Any, entra_user: dict[str, Any], value: str, expected: bool
) -> None:
    body = patch_body({"op": "Replace", "path": "active", "value": value})
    response = scim.patch(f"/Users/{entra_user['id']}", body)
    assert response.status_code == 200, response.get_json()
    assert User.get_by_id(entra_user["id"]).active is expected


def test_replace_of_a_missing_work_email_creates_it(scim: Any) -> None:
    created = scim.post(
        "/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "nomail"}
    ).get_json()
    body = patch_body(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@contoso.test"}
    )
    response = scim.patch(f"/Users/{created['id']}", body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["emails"] == [{"type": "work", "value": "new@contoso.test"}]


def test_primary_as_string_boolean(scim: Any, entra_user: dict[str, Any]) -> None:
    body = patch_body(
        {
            "op": "Add",
            "path": "emails",
            "value": [{"type": "home", "value": "home@contoso.test", "primary": "True"}],
        }
    )
    emails = scim.patch(f"/Users/{entra_user['id']}", body).get_json()["emails"]
    primaries = [e["value"] for e in emails if e.get("primary")]
    assert primaries == ["home@contoso.test"]


def test_pathless_replace_with_dotted_and_urn_keys(scim: Any, entra_user: dict[str, Any]) -> None:
    body = patch_body(
        {
            "op": "replace",
            "value": {
                "name.givenName": "Grace",
                f"{ENTERPRISE_USER}:employeeNumber": "E-1",
                f"{ENTERPRISE_USER}:department": "Maths",
            },
        }
    )
    result = scim.patch(f"/Users/{entra_user['id']}", body).get_json()
    assert result["name"]["givenName"] == "Grace"
    assert result[ENTERPRISE_USER] == {"employeeNumber": "E-1", "department": "Maths"}


def test_manager_as_bare_id_and_as_manager_path(scim: Any, entra_user: dict[str, Any]) -> None:
    url = f"/Users/{entra_user['id']}"
    bare = patch_body({"op": "Add", "path": f"{ENTERPRISE_USER}:manager", "value": "boss-1"})
    assert scim.patch(url, bare).get_json()[ENTERPRISE_USER]["manager"]["value"] == "boss-1"
    listed = patch_body({"op": "Replace", "path": "manager", "value": [{"value": "boss-2"}]})
    assert scim.patch(url, listed).get_json()[ENTERPRISE_USER]["manager"]["value"] == "boss-2"
    text = f'{ENTERPRISE_USER}:manager.value eq "boss-2"'
    found = scim.get("/Users", query_string={"filter": text}).get_json()
    assert [r["id"] for r in found["Resources"]] == [entra_user["id"]]


def test_validator_style_pascal_case_create(scim: Any) -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
        "UserName": "Pascal@contoso.test",
        "Active": True,
        "DisplayName": "Pascal Case",
        "Emails": [{"Primary": "True", "Type": "work", "Value": "Pascal@contoso.test"}],
        "Name": {"GivenName": "Pascal", "FamilyName": "Case"},
        "NickName": None,
        ENTERPRISE_USER: {"Department": "R&D", "Manager": None},
        "meta": {"resourceType": "User"},
        "roles": [],
    }
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["emails"] == [{"primary": True, "type": "work", "value": "Pascal@contoso.test"}]
    assert created[ENTERPRISE_USER] == {"department": "R&D"}


def test_retried_create_meets_409_naming_the_existing_user(
    scim: Any, entra_user: dict[str, Any]
) -> None:
    again = scim.post("/Users", fixture("entra/create_user")["request"])
    assert again.status_code == 409
    assert entra_user["id"] in again.get_json()["detail"]


def test_inactive_users_are_still_returned(scim: Any, entra_user: dict[str, Any]) -> None:
    scim.patch(
        f"/Users/{entra_user['id']}",
        patch_body({"op": "Replace", "path": "active", "value": "False"}),
    )
    fetched = scim.get(f"/Users/{entra_user['id']}")
    assert fetched.status_code == 200
    assert fetched.get_json()["active"] is False
