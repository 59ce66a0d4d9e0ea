"""PATCH (RFC 7644 §3.5.2): the RFC's own examples, every Okta and Entra ID form we know, and
every error with its scimType. Each case also checks that the input dict is left untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.errors import (
    InvalidFilter,
    InvalidPath,
    InvalidSyntax,
    InvalidValue,
    Mutability,
    NoTarget,
    ScimError,
)
from app.patch import Operation, apply_operations, parse_patch_request, parse_path
from scim_schemas import CORE_GROUP, CORE_USER, ENTERPRISE_USER, PATCH_OP, resource_type
from tests.helpers import patch_body as body
from tests.idp.conversation import fixture

USER = resource_type("User")
GROUP = resource_type("Group")
# Identifiers and values from RFC 7644 §3.5.2's examples.
BJENSEN = "2819c223-7f76-453a-919d-413861904646"
JSMITH = "08e1d05d-121c-4561-8b96-473d93df9210"
GROUP_ID = "acbf3ae7-8463-4692-b4fd-9b4da3f908ce"
BJENSEN_REF = f"https://example.com/v2/Users/{BJENSEN}"
JSMITH_REF = f"https://example.com/v2/Users/{JSMITH}"
OTHER = "902c246b-6245-4190-8e05-00816be7344a"
MANAGER = "26118915-6090-4610-87e4-49d8ca9f808d"
META = {
    "resourceType": "User",
    "created": "2010-01-23T04:56:22Z",
    "lastModified": "2011-05-13T04:42:34Z",
    "version": 'W/"3694e05e9dff591"',
}


def user() -> dict[str, Any]:
    return {
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "id": BJENSEN,
        "meta": dict(META),
        "externalId": "bjensen",
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": True,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
        "addresses": [
            {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"},
            {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"},
        ],
        ENTERPRISE_USER: {"employeeNumber": "701984", "department": "Tour Operations"},
    }


def group(*members: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "schemas": [CORE_GROUP],
        "id": GROUP_ID,
        "meta": {**META, "resourceType": "Group"},
        "displayName": "Tour Guides",
    }
    if members:
        resource["members"] = [{"value": m, "type": "User"} for m in members]
    return resource


def patch(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    """Parse and apply; also check that the input was not modified."""
    rtype = GROUP if resource["schemas"][0] == CORE_GROUP else USER
    snapshot = copy.deepcopy(resource)
    result = apply_operations(rtype, resource, parse_patch_request(rtype, body(*operations)))
    assert resource == snapshot, "apply_operations modified its input"
    return result


def changed(before: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`before` with top-level keys set (None: removed). `ent` stands for the enterprise URN."""
    after = copy.deepcopy(before)
    for key, value in changes.items():
        key = ENTERPRISE_USER if key == "ent" else key
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after


def member(value: str, **extra: str) -> dict[str, str]:
    return {"value": value, **extra}


# --------------------------------------------------------------------------------------------
# RFC 7644 §3.5.2.1 to §3.5.2.3: the request bodies of the RFC's examples.

RFC_CASES = [
    pytest.param(
        group(OTHER),
        [
            {
                "op": "add",
                "path": "members",
                "value": [{"display": "Babs Jensen", "$ref": BJENSEN_REF, "value": BJENSEN}],
            }
        ],
        # `display` is readOnly in our Group schema: ignored, as in a POST (RFC 7644 §3.3).
        changed(
            group(OTHER),
            members=[member(OTHER, type="User"), {"$ref": BJENSEN_REF, "value": BJENSEN}],
        ),
        id="3.5.2.1 add a member",
    ),
    pytest.param(
        changed(user(), emails=None),
        [
            {
                "op": "add",
                "value": {
                    "emails": [{"value": "babs@jensen.org", "type": "home"}],
                    "nickname": "Babs",
                },
            }
        ],
        changed(user(), emails=[{"value": "babs@jensen.org", "type": "home"}], nickName="Babs"),
        id="3.5.2.1 add without path (nickname in lower case)",
    ),
    pytest.param(
        group(BJENSEN, OTHER),
        [{"op": "remove", "path": f'members[value eq "{BJENSEN}"]'}],
        changed(group(OTHER)),
        id="3.5.2.2 remove one member",
    ),
    pytest.param(
        group(BJENSEN, OTHER),
        [{"op": "remove", "path": "members"}],
        group(),
        id="3.5.2.2 remove all members",
    ),
    pytest.param(
        changed(
            user(),
            emails=[
                {"value": "bjensen@example.com", "type": "work"},
                {"value": "bjensen@example.org", "type": "work"},
                {"value": "babs@example.com", "type": "home"},
            ],
        ),
        [{"op": "remove", "path": 'emails[type eq "work" and value ew "example.com"]'}],
        changed(
            user(),
            emails=[
                {"value": "bjensen@example.org", "type": "work"},
                {"value": "babs@example.com", "type": "home"},
            ],
        ),
        id="3.5.2.2 remove with a complex filter",
    ),
    pytest.param(
        group(OTHER),
        [
            {"op": "remove", "path": "members"},
            {
                "op": "add",
                "path": "members",
                "value": [
                    {"display": "Babs Jensen", "$ref": BJENSEN_REF, "value": BJENSEN},
                    {"display": "James Smith", "$ref": JSMITH_REF, "value": JSMITH},
                ],
            },
        ],
        changed(
            group(),
            members=[
                {"$ref": BJENSEN_REF, "value": BJENSEN},
                {"$ref": JSMITH_REF, "value": JSMITH},
            ],
        ),
        id="3.5.2.2 remove all members then add two",
    ),
    pytest.param(
        group(OTHER),
        [
            {
                "op": "replace",
                "path": "members",
                "value": [
                    {"display": "Babs Jensen", "$ref": BJENSEN_REF, "value": BJENSEN},
                    {"display": "James Smith", "$ref": JSMITH_REF, "value": JSMITH},
                ],
            }
        ],
        changed(
            group(),
            members=[
                {"$ref": BJENSEN_REF, "value": BJENSEN},
                {"$ref": JSMITH_REF, "value": JSMITH},
            ],
        ),
        id="3.5.2.3 replace all members",
    ),
    pytest.param(
        user(),
        [
            {
                "op": "replace",
                "path": 'addresses[type eq "work"]',
                "value": {
                    "type": "work",
                    "streetAddress": "911 Universal City Plaza",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "US",
                    "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
                    "primary": True,
                },
            }
        ],
        changed(
            user(),
            addresses=[
                {
                    "type": "work",
                    "streetAddress": "911 Universal City Plaza",
                    "locality": "Hollywood",
                    "region": "CA",
                    "postalCode": "91608",
                    "country": "US",
                    "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
                    "primary": True,
                },
                user()["addresses"][1],
            ],
        ),
        id="3.5.2.3 replace the value that matches a filter",
    ),
    pytest.param(
        user(),
        [
            {
                "op": "replace",
                "path": 'addresses[type eq "work"].streetAddress',
                "value": "1010 Broadway Ave",
            }
        ],
        changed(
            user(),
            addresses=[
                {"type": "work", "streetAddress": "1010 Broadway Ave", "locality": "Hollywood"},
                user()["addresses"][1],
            ],
        ),
        id="3.5.2.3 replace a sub-attribute of the matching value",
    ),
    pytest.param(
        changed(user(), emails=[{"value": "old@example.com", "type": "other"}]),
        [
            {
                "op": "replace",
                "value": {
                    "emails": [
                        {"value": "bjensen@example.com", "type": "work", "primary": True},
                        {"value": "babs@jensen.org", "type": "home"},
                    ],
                    "nickname": "Babs",
                },
            }
        ],
        changed(
            user(),
            emails=[
                {"value": "bjensen@example.com", "type": "work", "primary": True},
                {"value": "babs@jensen.org", "type": "home"},
            ],
            nickName="Babs",
        ),
        id="3.5.2.3 replace without path replaces multi-valued attributes whole",
    ),
    pytest.param(
        changed(user(), emails=[{"value": "a@example.com", "type": "work", "primary": True}]),
        [
            {
                "op": "add",
                "value": {
                    "emails": [
                        {"value": "b@example.com", "primary": True},
                        {"value": "a@example.com", "type": "work", "display": "A"},
                    ]
                },
            }
        ],
        changed(
            user(),
            emails=[
                {"value": "a@example.com", "type": "work", "display": "A"},
                {"value": "b@example.com", "primary": True},
            ],
        ),
        # Found by hypothesis: merging into the old primary kept its `primary` and it won.
        id="2.4 the value the request makes primary wins over one merged into the old primary",
    ),
]


@pytest.mark.parametrize(("before", "operations", "expected"), RFC_CASES)
def test_rfc_examples(
    before: dict[str, Any], operations: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    assert patch(before, *operations) == expected


# --------------------------------------------------------------------------------------------
# Okta and Entra ID (see the IdP notes in the README).

IDP_CASES = [
    pytest.param(
        user(),
        [{"op": "replace", "value": {"active": False}}],
        changed(user(), active=False),
        id="okta deactivate",
    ),
    pytest.param(
        changed(user(), active=False),
        [{"op": "replace", "value": {"active": True}}],
        changed(user(), active=True),
        id="okta reactivate",
    ),
    pytest.param(
        user(),
        [{"op": "replace", "value": {"password": "t1meMa$heen"}}],
        changed(user(), password="t1meMa$heen"),
        id="okta password sync",
    ),
    pytest.param(
        group(BJENSEN),
        [{"op": "replace", "value": {"id": GROUP_ID, "displayName": "Tour Guides EU"}}],
        changed(group(BJENSEN), displayName="Tour Guides EU"),
        id="okta rename carries the group's own id",
    ),
    pytest.param(
        group(BJENSEN),
        [
            {"op": "remove", "path": f'members[value eq "{BJENSEN}"]'},
            {"op": "add", "path": "members", "value": [{"value": OTHER, "display": "o@x.test"}]},
        ],
        changed(group(), members=[{"value": OTHER}]),
        id="okta remove and add members in one request",
    ),
    pytest.param(
        group(BJENSEN),
        [{"op": "add", "path": "members", "value": [{"value": BJENSEN, "display": "b@x.test"}]}],
        group(BJENSEN),
        id="okta add of an existing member is a no-op",
    ),
    pytest.param(
        group(BJENSEN),
        [{"op": "replace", "path": "members", "value": []}],
        group(),
        id="okta replace members with an empty list",
    ),
    pytest.param(
        user(),
        [{"op": "Replace", "path": "active", "value": "False"}],
        changed(user(), active=False),
        id="entra string boolean False",
    ),
    pytest.param(
        changed(user(), active=False),
        [{"op": "Replace", "path": "active", "value": "True"}],
        changed(user(), active=True),
        id="entra string boolean True",
    ),
    pytest.param(
        user(),
        [
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "babs@example.com",
            }
        ],
        changed(user(), emails=[{"value": "babs@example.com", "type": "work", "primary": True}]),
        id="entra replace the work e-mail",
    ),
    pytest.param(
        changed(user(), emails=None),
        [
            {"op": "Add", "path": 'emails[type eq "work"].value', "value": "babs@example.com"},
            {"op": "Add", "path": 'emails[type eq "work"].primary', "value": "True"},
        ],
        changed(user(), emails=[{"type": "work", "value": "babs@example.com", "primary": True}]),
        id="entra add creates the work e-mail",
    ),
    pytest.param(
        changed(user(), phoneNumbers=[{"value": "555-0100", "type": "work"}]),
        [
            {
                "op": "Replace",
                "path": 'phoneNumbers[type eq "mobile"].value',
                "value": "555-0199",
            }
        ],
        changed(
            user(),
            phoneNumbers=[
                {"value": "555-0100", "type": "work"},
                {"type": "mobile", "value": "555-0199"},
            ],
        ),
        id="entra replace creates a missing typed value",
    ),
    pytest.param(
        user(),
        [
            {
                "op": "Replace",
                "path": 'addresses[type eq "work"].country',
                "value": "US",
            }
        ],
        changed(
            user(),
            addresses=[{**user()["addresses"][0], "country": "US"}, user()["addresses"][1]],
        ),
        id="entra address country",
    ),
    pytest.param(
        user(),
        [{"op": "Replace", "path": "name.familyName", "value": "Jensen-Smith"}],
        changed(user(), name={"givenName": "Barbara", "familyName": "Jensen-Smith"}),
        id="entra name.familyName",
    ),
    pytest.param(
        user(),
        [
            {
                "op": "Replace",
                "path": f"{ENTERPRISE_USER}:department",
                "value": "Guest Services",
            }
        ],
        changed(user(), ent={"employeeNumber": "701984", "department": "Guest Services"}),
        id="entra URN-qualified department",
    ),
    pytest.param(
        user(),
        [{"op": "Add", "path": f"{ENTERPRISE_USER}:manager", "value": MANAGER}],
        changed(user(), ent={**user()[ENTERPRISE_USER], "manager": {"value": MANAGER}}),
        id="entra manager as a bare id on the URN path",
    ),
    pytest.param(
        user(),
        [{"op": "Replace", "path": "manager", "value": [{"value": MANAGER}]}],
        changed(user(), ent={**user()[ENTERPRISE_USER], "manager": {"value": MANAGER}}),
        id="entra path manager with a value list",
    ),
    pytest.param(
        changed(user(), ent={"manager": {"value": MANAGER}}),
        [{"op": "Replace", "path": f"{ENTERPRISE_USER}:manager.value", "value": OTHER}],
        changed(user(), ent={"manager": {"value": OTHER}}),
        id="entra manager.value on the URN path",
    ),
    pytest.param(
        changed(user(), ent={"manager": {"value": MANAGER}}),
        [{"op": "Remove", "path": f"{ENTERPRISE_USER}:manager"}],
        changed(user(), ent=None, schemas=[CORE_USER]),
        id="entra remove manager empties the extension",
    ),
    pytest.param(
        user(),
        [
            {
                "op": "replace",
                "value": {
                    "name.givenName": "Babs",
                    "name.familyName": "Jensen",
                    f"{ENTERPRISE_USER}:employeeNumber": "42",
                    "active": "False",
                },
            }
        ],
        changed(
            user(),
            name={"givenName": "Babs", "familyName": "Jensen"},
            ent={"employeeNumber": "42", "department": "Tour Operations"},
            active=False,
        ),
        id="entra aadOptscim062020 dotted and URN-qualified keys",
    ),
    pytest.param(
        user(),
        [{"op": "Replace", "value": {"UserName": "babs", "DisplayName": "Babs"}}],
        changed(user(), userName="babs", displayName="Babs"),
        id="entra validator PascalCase names",
    ),
    pytest.param(
        group(BJENSEN),
        [
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": OTHER}, {"$ref": None, "value": JSMITH}],
            }
        ],
        changed(
            group(BJENSEN), members=[member(BJENSEN, type="User"), member(OTHER), member(JSMITH)]
        ),
        id="entra add several members",
    ),
    pytest.param(
        group(BJENSEN, OTHER, JSMITH),
        [
            {
                "op": "Remove",
                "path": "members",
                "value": [{"$ref": None, "value": OTHER}, {"$ref": None, "value": MANAGER}],
            }
        ],
        group(BJENSEN, JSMITH),
        id="entra remove only the listed members",
    ),
    pytest.param(
        group(BJENSEN),
        [
            {
                "op": "Remove",
                "path": "members",
                "value": [{"$ref": None, "value": BJENSEN}],
            }
        ],
        group(),
        id="entra remove the last member",
    ),
]


@pytest.mark.parametrize(("before", "operations", "expected"), IDP_CASES)
def test_idp_forms(
    before: dict[str, Any], operations: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    assert patch(before, *operations) == expected


# --------------------------------------------------------------------------------------------
# The recorded requests in tests/idp/fixtures.


def test_fixture_entra_update_user() -> None:
    recorded = fixture("entra/update_user")
    expected = recorded["response"]
    before = {
        "schemas": [CORE_USER],
        "id": expected["id"],
        "meta": expected["meta"],
        "externalId": expected["externalId"],
        "userName": "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081@testuser.com",
        "name": {"givenName": "givenName", "familyName": "familyName"},
        "active": True,
        "emails": [{"value": "Test_User_1@testuser.com", "type": "work", "primary": True}],
    }
    after = patch(before, *recorded["request"]["Operations"])
    assert after["userName"] == expected["userName"]
    assert after["name"]["familyName"] == expected["name"]["familyName"]
    assert after["active"] is expected["active"]
    assert after["emails"] == expected["emails"]


def test_fixture_entra_update_group() -> None:
    recorded = fixture("entra/update_group")
    expected = recorded["response"]
    before = {**group(), "id": expected["id"], "displayName": "before"}
    after = patch(before, *recorded["request"]["Operations"])
    assert after["displayName"] == expected["displayName"]
    assert "members" not in after  # added, then removed by value array


def test_fixture_okta_update_group_membership() -> None:
    recorded = fixture("okta/update_group_membership")
    removed, added = "89bb1940-b905-4575-9e7f-6f887cfb368e", "23a35c27-23d3-4c03-b4c5-6443c09e7173"
    after = patch(group(removed), *recorded["request"]["Operations"])
    assert after["members"] == [member(added), member(removed)]


def test_fixture_okta_update_group_name() -> None:
    recorded = fixture("okta/update_group_name")
    operation = recorded["request"]["Operations"][0]
    before = {**group(), "id": operation["value"]["id"]}
    after = patch(before, *recorded["request"]["Operations"])
    assert after == {**before, "displayName": "Test SCIMv2"}


def test_fixture_okta_update_user_patch() -> None:
    recorded = fixture("okta/update_user_patch")
    after = patch(user(), *recorded["request"]["Operations"])
    assert after == changed(user(), active=False)


# --------------------------------------------------------------------------------------------
# Errors, each with its scimType (RFC 7644 §3.12).

ERROR_BODIES = [
    pytest.param([], InvalidSyntax, id="body not an object"),
    pytest.param(
        {"Operations": [{"op": "add", "path": "title", "value": "x"}]},
        InvalidSyntax,
        id="no schemas",
    ),
    pytest.param(
        {"schemas": [CORE_USER], "Operations": [{"op": "remove", "path": "title"}]},
        InvalidSyntax,
        id="wrong schema",
    ),
    pytest.param({"schemas": [PATCH_OP]}, InvalidSyntax, id="no Operations"),
    pytest.param({"schemas": [PATCH_OP], "Operations": []}, InvalidSyntax, id="empty Operations"),
    pytest.param(
        {"schemas": [PATCH_OP], "Operations": {"op": "add"}},
        InvalidSyntax,
        id="Operations not a list",
    ),
    pytest.param(body("add"), InvalidSyntax, id="operation not an object"),
    pytest.param(body({"path": "title", "value": "x"}), InvalidSyntax, id="no op"),
    pytest.param(
        body({"op": "move", "path": "title", "value": "x"}), InvalidSyntax, id="unknown op"
    ),
    pytest.param(body({"op": "add", "path": "title"}), InvalidSyntax, id="add without value"),
    pytest.param(
        body({"op": "Replace", "path": "title"}), InvalidSyntax, id="replace without value"
    ),
    pytest.param(
        body({"op": "replace", "value": "x"}), InvalidSyntax, id="path-less value not an object"
    ),
    pytest.param(body({"op": "remove"}), NoTarget, id="remove without path"),
    pytest.param(body({"op": "remove", "path": ""}), NoTarget, id="remove with empty path"),
    pytest.param(body({"op": "add", "path": 42, "value": "x"}), InvalidPath, id="path not text"),
    pytest.param(
        body({"op": "add", "path": "nickname.x", "value": "x"}),
        InvalidPath,
        id="sub-attribute of a simple attribute",
    ),
    pytest.param(
        body({"op": "add", "path": "name.middle", "value": "x"}),
        InvalidPath,
        id="unknown sub-attribute",
    ),
    pytest.param(
        body({"op": "add", "path": "shoeSize", "value": "x"}), InvalidPath, id="unknown attribute"
    ),
    pytest.param(
        body({"op": "add", "path": "urn:example:ext:1.0:User:shoeSize", "value": 1}),
        InvalidPath,
        id="unknown schema URN",
    ),
    pytest.param(
        body({"op": "remove", "path": f"{ENTERPRISE_USER}:shoeSize"}),
        InvalidPath,
        id="unknown extension attribute",
    ),
    pytest.param(
        body({"op": "remove", "path": 'emails[type eq "work"'}), InvalidPath, id="unclosed bracket"
    ),
    pytest.param(body({"op": "remove", "path": "emails]"}), InvalidPath, id="stray bracket"),
    pytest.param(body({"op": "remove", "path": "emails[]"}), InvalidPath, id="empty filter"),
    pytest.param(
        body({"op": "remove", "path": '[type eq "work"]'}),
        InvalidPath,
        id="filter without attribute",
    ),
    pytest.param(
        body({"op": "remove", "path": 'userName[value eq "x"]'}),
        InvalidPath,
        id="filter on a single-valued attribute",
    ),
    pytest.param(
        body({"op": "remove", "path": 'emails[type eq "work"].nope'}),
        InvalidPath,
        id="unknown sub-attribute after a filter",
    ),
    pytest.param(
        body({"op": "remove", "path": 'emails[type eq "work"]value'}),
        InvalidPath,
        id="no dot after the filter",
    ),
    pytest.param(
        body({"op": "remove", "path": 'emails[type eq "work"'}),
        InvalidPath,
        id="quote and bracket unbalanced",
    ),
    pytest.param(
        body({"op": "remove", "path": "emails[type qq 1]"}), InvalidFilter, id="bad filter"
    ),
    pytest.param(
        body({"op": "remove", "path": 'emails[shoeSize eq "x"]'}),
        InvalidFilter,
        id="unknown attribute inside the filter",
    ),
]


@pytest.mark.parametrize(("request_body", "error"), ERROR_BODIES)
def test_bad_requests(request_body: Any, error: type[ScimError]) -> None:
    with pytest.raises(error) as raised:
        parse_patch_request(USER, request_body)
    assert raised.value.status == 400
    assert raised.value.scim_type == error.scim_type


ERROR_CASES = [
    # readOnly (RFC 7644 §3.5.2: "a client MUST NOT modify an attribute that has mutability
    # "readOnly" or "immutable"").
    pytest.param(
        user(),
        {"op": "replace", "value": {"id": OTHER}},
        Mutability,
        id="another id in a path-less replace",
    ),
    pytest.param(
        user(), {"op": "replace", "path": "id", "value": OTHER}, Mutability, id="replace id"
    ),
    pytest.param(user(), {"op": "remove", "path": "id"}, Mutability, id="remove id"),
    pytest.param(
        user(),
        {"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"},
        Mutability,
        id="replace meta.created",
    ),
    pytest.param(
        user(),
        {"op": "add", "path": "groups", "value": [{"value": GROUP_ID}]},
        Mutability,
        id="add groups",
    ),
    pytest.param(
        group(BJENSEN),
        {"op": "replace", "path": f'members[value eq "{BJENSEN}"].display', "value": "Babs"},
        Mutability,
        id="replace members display",
    ),
    pytest.param(
        user(),
        {"op": "replace", "path": f"{ENTERPRISE_USER}:manager.displayName", "value": "Boss"},
        Mutability,
        id="replace manager.displayName",
    ),
    # immutable: may be set while unassigned, never changed.
    pytest.param(
        group(BJENSEN),
        {"op": "replace", "path": f'members[value eq "{BJENSEN}"].value', "value": OTHER},
        Mutability,
        id="change a member's value",
    ),
    pytest.param(
        group(BJENSEN),
        {"op": "replace", "path": f'members[value eq "{BJENSEN}"].type', "value": "Group"},
        Mutability,
        id="change a member's type",
    ),
    pytest.param(
        group(BJENSEN),
        {"op": "remove", "path": f'members[value eq "{BJENSEN}"].value'},
        Mutability,
        id="remove a member's value",
    ),
    # required (RFC 7644 §3.5.2.2: "If an attribute is removed or becomes unassigned and is
    # defined as a required attribute ... "mutability"").
    pytest.param(user(), {"op": "remove", "path": "userName"}, Mutability, id="remove userName"),
    pytest.param(
        user(),
        {"op": "replace", "path": "userName", "value": None},
        Mutability,
        id="replace userName with null",
    ),
    pytest.param(
        user(),
        {"op": "replace", "value": {"userName": None}},
        Mutability,
        id="path-less null userName",
    ),
    pytest.param(
        group(),
        {"op": "remove", "path": "displayName"},
        Mutability,
        id="remove a group's displayName",
    ),
    # types (every value goes through app.marshal.coerce)
    pytest.param(
        user(),
        {"op": "replace", "path": "active", "value": "yes"},
        InvalidValue,
        id="active not a boolean",
    ),
    pytest.param(
        user(),
        {"op": "replace", "path": "userName", "value": 42},
        InvalidValue,
        id="userName not a string",
    ),
    pytest.param(
        user(),
        {"op": "add", "path": "emails", "value": [{"value": 42}]},
        InvalidValue,
        id="e-mail value not a string",
    ),
    pytest.param(
        user(),
        {"op": "add", "path": "emails", "value": [{"colour": "red"}]},
        InvalidValue,
        id="unknown sub-attribute in a value",
    ),
    pytest.param(
        user(),
        {"op": "replace", "path": "name", "value": "Babs"},
        InvalidValue,
        id="complex attribute given a string",
    ),
    pytest.param(
        user(),
        {"op": "replace", "path": 'emails[type eq "work"]', "value": "x"},
        InvalidValue,
        id="value path given a string",
    ),
    pytest.param(
        user(),
        {"op": "add", "value": {"shoeSize": 42}},
        InvalidValue,
        id="unknown key in a path-less value",
    ),
    pytest.param(
        user(),
        {"op": "add", "value": {ENTERPRISE_USER: "x"}},
        InvalidValue,
        id="extension URN key not an object",
    ),
    pytest.param(
        user(),
        {
            "op": "add",
            "path": "emails",
            "value": [
                {"value": "a@example.com", "primary": True},
                {"value": "b@example.com", "primary": True},
            ],
        },
        InvalidValue,
        id="two primary values in one request",
    ),
    # noTarget (RFC 7644 §3.5.2.3 and §3.12)
    pytest.param(
        user(),
        {"op": "replace", "path": 'emails[type eq "home"]', "value": {"value": "b@x.test"}},
        NoTarget,
        id="replace a value path that matches nothing",
    ),
    pytest.param(
        user(),
        {"op": "replace", "path": 'emails[value eq "b@x.test"].type', "value": "home"},
        NoTarget,
        id="sub-attribute of nothing (filter is not type eq)",
    ),
    pytest.param(
        user(),
        {
            "op": "replace",
            "path": 'emails[type eq "home" and primary eq true].value',
            "value": "b@x.test",
        },
        NoTarget,
        id="sub-attribute of nothing (filter is not a single type eq)",
    ),
    pytest.param(
        changed(user(), emails=None),
        {"op": "replace", "path": "emails.value", "value": "b@x.test"},
        NoTarget,
        id="sub-attribute of an empty multi-valued attribute",
    ),
]


@pytest.mark.parametrize(("before", "operation", "error"), ERROR_CASES)
def test_errors(before: dict[str, Any], operation: dict[str, Any], error: type[ScimError]) -> None:
    with pytest.raises(error) as raised:
        patch(before, operation)
    assert raised.value.status == 400
    assert raised.value.scim_type == error.scim_type


def test_a_failing_operation_fails_the_whole_request_and_leaves_the_input() -> None:
    before = user()
    snapshot = copy.deepcopy(before)
    operations = parse_patch_request(
        USER,
        body(
            {"op": "replace", "path": "title", "value": "Tour Guide"},
            {"op": "remove", "path": "userName"},
        ),
    )
    with pytest.raises(Mutability):
        apply_operations(USER, before, operations)
    assert before == snapshot


# --------------------------------------------------------------------------------------------
# Behaviour where the RFC leaves room, and the rules around it.


def test_the_result_shares_nothing_with_the_input() -> None:
    before = user()
    after = patch(before, {"op": "replace", "path": "title", "value": "Tour Guide"})
    after["emails"][0]["value"] = "changed@x.test"
    after["name"]["givenName"] = "changed"
    assert before == user()


def test_envelope_keys_and_op_in_any_case() -> None:
    request = {
        "SCHEMAS": [PATCH_OP.upper()],
        "operations": [{"OP": "REPLACE", "PATH": "Title", "VALUE": "Tour Guide"}],
    }
    operations = parse_patch_request(USER, request)
    assert [(o.op, o.path.attribute.name if o.path else None) for o in operations] == [
        ("replace", "title")
    ]
    assert apply_operations(USER, user(), operations)["title"] == "Tour Guide"


@pytest.mark.parametrize(
    ("rtype", "text", "attribute", "sub", "filtered"),
    [
        (USER, "userName", "userName", None, False),
        (USER, "USERNAME", "userName", None, False),
        (USER, "name.givenName", "name", "givenName", False),
        (USER, "emails", "emails", None, False),
        (USER, 'emails[type eq "work"]', "emails", None, True),
        (USER, 'emails[type eq "work"].value', "emails", "value", True),
        (USER, 'emails[value eq "a]b"].display', "emails", "display", True),
        (USER, r'emails[value eq "a\"]b"].display', "emails", "display", True),
        (GROUP, f'members[value eq "{BJENSEN}"]', "members", None, True),
        (USER, f"{ENTERPRISE_USER}:department", "department", None, False),
        (USER, f"{ENTERPRISE_USER.lower()}:DEPARTMENT", "department", None, False),
        (USER, f"{ENTERPRISE_USER}:manager", "manager", None, False),
        (USER, f"{ENTERPRISE_USER}:manager.value", "manager", "value", False),
        (USER, "manager", "manager", None, False),
        (USER, f"{CORE_USER}:userName", "userName", None, False),
    ],
)
def test_parse_path(rtype: Any, text: str, attribute: str, sub: str | None, filtered: bool) -> None:
    path = parse_path(rtype, text)
    assert path.attribute.name == attribute
    assert (path.sub.name if path.sub else None) == sub
    assert (path.value_filter is not None) is filtered
    assert path.text == text
    assert path.target is (path.sub or path.attribute)


def test_operations_are_public_frozen_values() -> None:
    (operation,) = parse_patch_request(
        GROUP, body({"op": "Add", "path": "members", "value": [{"value": BJENSEN}]})
    )
    assert operation == Operation("add", parse_path(GROUP, "members"), [{"value": BJENSEN}])
    with pytest.raises(AttributeError):
        operation.op = "remove"  # type: ignore[misc]


def test_add_twice_is_add_once() -> None:
    once = patch(user(), {"op": "add", "path": "emails", "value": {"value": "b@x.test"}})
    twice = patch(once, {"op": "add", "path": "emails", "value": {"value": "B@X.test"}})
    assert twice == once
    assert once != user()


def test_add_sets_single_valued_and_merges_complex() -> None:
    after = patch(
        user(),
        {"op": "add", "path": "title", "value": "Guide"},
        {"op": "add", "path": "name", "value": {"middleName": "Jane", "givenName": "Babs"}},
        {"op": "add", "value": {"title": "Senior Guide", "name": {"honorificPrefix": "Ms."}}},
    )
    assert after["title"] == "Senior Guide"
    assert after["name"] == {
        "givenName": "Babs",
        "familyName": "Jensen",
        "middleName": "Jane",
        "honorificPrefix": "Ms.",
    }


def test_add_without_path_appends_multi_valued_and_merges_extension_objects() -> None:
    after = patch(
        user(),
        {
            "op": "add",
            "value": {
                "emails": [{"value": "babs@jensen.org", "type": "home"}],
                ENTERPRISE_USER: {"costCenter": "4130", "manager": {"value": MANAGER}},
                "schemas": [CORE_USER],
                "meta": {"resourceType": "Ignored"},
                "urn:lms-scim:schemas:extension:lms:2.0:User": None,
            },
        },
    )
    assert after["emails"] == [*user()["emails"], {"value": "babs@jensen.org", "type": "home"}]
    assert after[ENTERPRISE_USER] == {
        **user()[ENTERPRISE_USER],
        "costCenter": "4130",
        "manager": {"value": MANAGER},
    }
    assert after["meta"] == META


def test_add_a_known_email_with_primary_merges_into_it() -> None:
    before = changed(user(), emails=[{"value": "a@x.test", "type": "work"}])
    after = patch(
        before,
        {
            "op": "add",
            "path": "emails",
            "value": [{"value": "A@x.test", "type": "work", "primary": "True"}],
        },
    )
    assert after["emails"] == [{"value": "a@x.test", "type": "work", "primary": True}]


def test_replace_null_removes_and_add_null_changes_nothing() -> None:
    after = patch(
        user(),
        {"op": "replace", "path": "name.givenName", "value": None},
        {"op": "replace", "value": {"externalId": None, "title": None}},
        {"op": "add", "path": "active", "value": None},
        {"op": "replace", "path": "addresses", "value": []},
    )
    assert after == changed(user(), name={"familyName": "Jensen"}, externalId=None, addresses=None)


def test_okta_may_echo_unassigned_read_only_attributes() -> None:
    after = patch(user(), {"op": "replace", "value": {"groups": [], "id": BJENSEN, "title": "x"}})
    assert after == changed(user(), title="x")


def test_remove_sub_attributes_and_empty_values() -> None:
    after = patch(
        user(),
        {"op": "remove", "path": "name.givenName"},
        {"op": "remove", "path": "name.familyName"},
        {"op": "remove", "path": 'addresses[type eq "home"].streetAddress'},
        {"op": "remove", "path": 'addresses[type eq "home"].locality'},
        {"op": "remove", "path": "nickName"},  # unassigned: nothing to do
    )
    assert after == changed(user(), name=None, addresses=[user()["addresses"][0], {"type": "home"}])
    emptied = patch(after, {"op": "remove", "path": 'addresses[type eq "home"].type'})
    assert emptied == changed(user(), name=None, addresses=[user()["addresses"][0]])


def test_remove_the_last_extension_attribute_drops_the_extension_schema() -> None:
    after = patch(
        user(),
        {"op": "remove", "path": f"{ENTERPRISE_USER}:employeeNumber"},
        {
            "op": "remove",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        },
    )
    assert ENTERPRISE_USER not in after
    assert after["schemas"] == [CORE_USER]
    readded = patch(after, {"op": "add", "path": "manager", "value": MANAGER})
    assert readded["schemas"] == [CORE_USER, ENTERPRISE_USER]
    assert readded[ENTERPRISE_USER] == {"manager": {"value": MANAGER}}


def test_primary_true_on_one_value_clears_the_others() -> None:
    before = changed(
        user(),
        emails=[
            {"value": "w@x.test", "type": "work", "primary": True},
            {"value": "h@x.test", "type": "home"},
        ],
    )
    by_path = patch(
        before, {"op": "Replace", "path": 'emails[type eq "home"].primary', "value": "True"}
    )
    assert by_path["emails"] == [
        {"value": "w@x.test", "type": "work"},
        {"value": "h@x.test", "type": "home", "primary": True},
    ]
    by_add = patch(
        before,
        {
            "op": "add",
            "path": "emails",
            "value": [{"value": "o@x.test", "type": "other", "primary": True}],
        },
    )
    assert [e.get("primary") for e in by_add["emails"]] == [None, None, True]
    by_merge = patch(
        before, {"op": "replace", "path": 'emails[type eq "home"]', "value": {"primary": True}}
    )
    assert [e.get("primary") for e in by_merge["emails"]] == [None, True]


def test_immutable_values_may_be_set_while_unassigned() -> None:
    before = group()
    before["members"] = [{"value": BJENSEN}]
    after = patch(
        before, {"op": "add", "path": f'members[value eq "{BJENSEN}"].type', "value": "User"}
    )
    assert after["members"] == [{"value": BJENSEN, "type": "User"}]
    same = patch(
        after, {"op": "replace", "path": f'members[value eq "{BJENSEN}"].type', "value": "User"}
    )
    assert after == same


def test_sub_attribute_without_filter_applies_to_every_value() -> None:
    after = patch(user(), {"op": "replace", "path": "addresses.country", "value": "US"})
    assert [a["country"] for a in after["addresses"]] == ["US", "US"]


def test_filter_matching_is_case_insensitive_where_the_schema_says_so() -> None:
    before = changed(user(), emails=[{"value": "w@x.test", "type": "Work"}])
    after = patch(
        before, {"op": "replace", "path": 'emails[type eq "work"].value', "value": "v@x.test"}
    )
    assert after["emails"] == [{"value": "v@x.test", "type": "Work"}]


def test_replace_members_keeps_each_member_once() -> None:
    after = patch(
        group(OTHER),
        {
            "op": "replace",
            "path": "members",
            "value": [{"value": BJENSEN}, {"value": JSMITH}, {"value": BJENSEN, "display": "B"}],
        },
    )
    assert after["members"] == [member(BJENSEN), member(JSMITH)]


def test_path_less_keys_may_be_value_paths() -> None:
    after = patch(
        user(),
        {"op": "Add", "value": {'emails[type eq "work"].value': "babs@example.com"}},
    )
    assert after["emails"] == [{"value": "babs@example.com", "type": "work", "primary": True}]


def test_removing_a_value_path_that_matches_nothing_is_a_noop() -> None:
    before = group(BJENSEN)
    operations = parse_patch_request(
        GROUP,
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "remove", "path": f'members[value eq "{OTHER}"]'}],
        },
    )
    assert apply_operations(GROUP, before, operations) == before


def test_a_path_naming_only_an_extension_urn_patches_that_extension() -> None:
    before = user()
    operations = parse_patch_request(
        USER,
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "add", "path": ENTERPRISE_USER, "value": {"department": "Maths"}}
            ],
        },
    )
    after = apply_operations(USER, before, operations)
    assert after[ENTERPRISE_USER]["department"] == "Maths"


def test_removing_an_extension_urn_removes_its_attributes() -> None:
    before = changed(user(), ent={"department": "Maths", "employeeNumber": "7"})
    operations = parse_patch_request(
        USER, {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": ENTERPRISE_USER}]}
    )
    after = apply_operations(USER, before, operations)
    assert ENTERPRISE_USER not in after
    assert ENTERPRISE_USER not in after["schemas"]


def test_an_extension_object_may_repeat_its_schemas() -> None:
    operations = parse_patch_request(
        USER,
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {
                    "op": "replace",
                    "path": ENTERPRISE_USER,
                    "value": {"schemas": [ENTERPRISE_USER], "department": "Maths"},
                }
            ],
        },
    )
    assert apply_operations(USER, user(), operations)[ENTERPRISE_USER]["department"] == "Maths"
