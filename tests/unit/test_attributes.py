"""`app.attributes`: `attributes` / `excludedAttributes` (RFC 7644 §3.9) and `returned`
(RFC 7643 §7) — which attributes of a resource a response carries.

Table-driven over the User schema (core, enterprise and LMS extensions), and over a synthetic
resource type for what the real schemas do not have (`returned: request`, sub-attributes with a
`returned` of their own).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import scim_schemas
from app.attributes import Projection, split_list
from app.errors import InvalidValue
from scim_schemas import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    LMS_USER,
    ResourceType,
    resource_type,
)

USER = resource_type("User")
GROUP = resource_type("Group")

ALICE: dict[str, Any] = {
    "schemas": [CORE_USER, ENTERPRISE_USER, LMS_USER],
    "id": "u1",
    "externalId": "okta-1",
    "meta": {"resourceType": "User", "version": 'W/"1"'},
    "userName": "alice",
    "name": {"givenName": "Alice", "familyName": "Liddell"},
    "emails": [{"value": "a@example.com", "type": "work", "primary": True}, {"value": "b@x"}],
    "password": "never returned",
    ENTERPRISE_USER: {
        "employeeNumber": "7",
        "department": "Maths",
        "manager": {"value": "m1", "displayName": "Red Queen"},
    },
    LMS_USER: {"branch": "Oxford"},
}

ENTERPRISE = ALICE[ENTERPRISE_USER]


def projected(attributes: list[str] | None, excluded: list[str] | None) -> dict[str, Any]:
    return Projection(USER, attributes, excluded).apply(copy.deepcopy(ALICE))


# -- split_list: the two ways the parameters arrive ----------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, []),
        ("", []),
        ("userName", ["userName"]),
        ("userName,name.givenName", ["userName", "name.givenName"]),
        (" userName , emails ,, ", ["userName", "emails"]),  # spaces and empty items dropped
        (f"{ENTERPRISE_USER}:department,id", [f"{ENTERPRISE_USER}:department", "id"]),
        ([], []),
        (["userName", " emails ", ""], ["userName", "emails"]),  # a .search body's JSON list
    ],
)
def test_split_list(given: Any, expected: list[str]) -> None:
    assert split_list(given) == expected


@pytest.mark.parametrize("given", [5, ["userName", 5], {"userName": True}, ("userName",), [None]])
def test_split_list_refuses_what_is_not_names(given: Any) -> None:
    with pytest.raises(InvalidValue):
        split_list(given)


# -- attributes ---------------------------------------------------------------------------------

ONLY_CORE = [CORE_USER]

ATTRIBUTES = [
    # id is returned always; the rest only when named.
    (["userName"], {"schemas": ONLY_CORE, "id": "u1", "userName": "alice"}),
    (["id"], {"schemas": ONLY_CORE, "id": "u1"}),
    # Names in any case, dotted sub-attributes.
    (
        ["USERNAME", "Name.GivenName"],
        {"schemas": ONLY_CORE, "id": "u1", "userName": "alice", "name": {"givenName": "Alice"}},
    ),
    (["name.givenName", "name"], {"schemas": ONLY_CORE, "id": "u1", "name": ALICE["name"]}),
    (["name", "name.givenName"], {"schemas": ONLY_CORE, "id": "u1", "name": ALICE["name"]}),
    # A sub-attribute of a multi-valued attribute: taken from each value, empty values dropped.
    (
        ["emails.value"],
        {
            "schemas": ONLY_CORE,
            "id": "u1",
            "emails": [{"value": "a@example.com"}, {"value": "b@x"}],
        },
    ),
    (["emails.type"], {"schemas": ONLY_CORE, "id": "u1", "emails": [{"type": "work"}]}),
    (["meta.version"], {"schemas": ONLY_CORE, "id": "u1", "meta": {"version": 'W/"1"'}}),
    # returned: never, even when asked for.
    (["password"], {"schemas": ONLY_CORE, "id": "u1"}),
    # An extension: all of it by its URN, or attributes by URN-qualified name; `schemas` lists
    # the extensions the response holds.
    (
        [ENTERPRISE_USER],
        {"schemas": [CORE_USER, ENTERPRISE_USER], "id": "u1", ENTERPRISE_USER: ENTERPRISE},
    ),
    (
        [ENTERPRISE_USER.upper()],
        {"schemas": [CORE_USER, ENTERPRISE_USER], "id": "u1", ENTERPRISE_USER: ENTERPRISE},
    ),
    (
        [f"{ENTERPRISE_USER}:department"],
        {
            "schemas": [CORE_USER, ENTERPRISE_USER],
            "id": "u1",
            ENTERPRISE_USER: {"department": "Maths"},
        },
    ),
    (
        [f"{ENTERPRISE_USER.upper()}:MANAGER.displayName", f"{LMS_USER}:branch", "userName"],
        {
            "schemas": [CORE_USER, ENTERPRISE_USER, LMS_USER],
            "id": "u1",
            "userName": "alice",
            ENTERPRISE_USER: {"manager": {"displayName": "Red Queen"}},
            LMS_USER: {"branch": "Oxford"},
        },
    ),
    # Named but without a value: nothing to return.
    (["title", f"{ENTERPRISE_USER}:costCenter"], {"schemas": ONLY_CORE, "id": "u1"}),
]


@pytest.mark.parametrize(("attributes", "expected"), ATTRIBUTES, ids=lambda v: str(v)[:60])
def test_attributes_returns_only_what_is_named(
    attributes: list[str], expected: dict[str, Any]
) -> None:
    assert projected(attributes, None) == expected


def test_attributes_wins_over_excluded_attributes() -> None:
    """RFC 7644 §3.9: excludedAttributes has effect only without attributes."""
    assert projected(["userName"], ["userName"]) == {
        "schemas": ONLY_CORE,
        "id": "u1",
        "userName": "alice",
    }


# -- excludedAttributes ---------------------------------------------------------------------------


def _without(*keys: str, **replaced: Any) -> dict[str, Any]:
    expected = {k: v for k, v in copy.deepcopy(ALICE).items() if k not in (*keys, "password")}
    expected.update(replaced)
    return expected


EXCLUDED = [
    ([], _without()),  # no parameter: everything but returned: never
    (["emails"], _without("emails")),
    (["EMAILS", "Meta"], _without("emails", "meta")),
    (["name.givenName"], _without(name={"familyName": "Liddell"})),
    # The sub-attribute from each value; a value left empty goes.
    (["emails.value"], _without(emails=[{"type": "work", "primary": True}])),
    # returned: always cannot be excluded.
    (["id"], _without()),
    (["password"], _without()),
    ([ENTERPRISE_USER], {**_without(ENTERPRISE_USER), "schemas": [CORE_USER, LMS_USER]}),
    (
        [f"{ENTERPRISE_USER}:department", f"{LMS_USER}:branch"],
        {
            **_without(LMS_USER),
            "schemas": [CORE_USER, ENTERPRISE_USER],
            ENTERPRISE_USER: {"employeeNumber": "7", "manager": ENTERPRISE["manager"]},
        },
    ),
]


@pytest.mark.parametrize(("excluded", "expected"), EXCLUDED, ids=lambda v: str(v)[:60])
def test_excluded_attributes_leaves_out_what_is_named(
    excluded: list[str], expected: dict[str, Any]
) -> None:
    assert projected(None, excluded) == expected


# -- unknown names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "shoeSize",
        "department",  # an enterprise attribute, not URN-qualified
        "name.nickName",
        "emails.nope",
        "emails.value.extra",
        "schemas",
        f"{ENTERPRISE_USER}:userName",
        "urn:example:unknown:2.0:User:x",
        "",
    ],
)
@pytest.mark.parametrize("parameter", ["attributes", "excluded"])
def test_unknown_names_are_invalid_value(name: str, parameter: str) -> None:
    attributes, excluded = ([name], None) if parameter == "attributes" else (None, [name])
    with pytest.raises(InvalidValue) as caught:
        Projection(USER, attributes, excluded)
    assert caught.value.scim_type == "invalidValue"


# -- wants: whether a top-level attribute needs loading at all --------------------------------


@pytest.mark.parametrize(
    ("attributes", "excluded", "urn", "name", "wanted"),
    [
        (None, None, CORE_USER, "emails", True),
        (None, None, CORE_USER, "password", False),
        (None, None, CORE_USER, "nope", False),
        (["userName"], None, CORE_USER, "userName", True),
        (["userName"], None, CORE_USER, "emails", False),
        (["userName"], None, CORE_USER, "id", True),
        (["emails.value"], None, CORE_USER, "emails", True),
        ([ENTERPRISE_USER], None, ENTERPRISE_USER, "manager", True),
        ([ENTERPRISE_USER], None, CORE_USER, "name", False),
        (None, ["emails"], CORE_USER, "emails", False),
        (None, ["emails.value"], CORE_USER, "emails", True),
        (None, [LMS_USER], LMS_USER, "branch", False),
        (None, [LMS_USER], ENTERPRISE_USER, "department", True),
    ],
)
def test_wants(attributes: Any, excluded: Any, urn: str, name: str, wanted: bool) -> None:
    assert Projection(USER, attributes, excluded).wants(urn, name) is wanted


def test_a_projection_without_parameters_on_a_plain_type_returns_the_resource_itself() -> None:
    group = {
        "schemas": [CORE_GROUP],
        "id": "g1",
        "displayName": "Physics",
        "members": [{"value": "u1"}],
    }
    projection = Projection(GROUP)
    assert projection.trivial
    assert projection.apply(group) is group
    # User has `password` (returned: never): never trivial, the password always goes.
    assert not Projection(USER).trivial
    assert "password" not in Projection(USER).apply(copy.deepcopy(ALICE))


def test_apply_leaves_its_input_untouched() -> None:
    source = copy.deepcopy(ALICE)
    for attributes, excluded in ((["emails.value"], None), (None, ["name.givenName"])):
        Projection(USER, attributes, excluded).apply(source)
    assert source == ALICE


# -- returned: request, and sub-attributes with a `returned` of their own ------------------------

THING = "urn:example:params:scim:schemas:Thing"
THING_EXT = "urn:example:params:scim:schemas:extension:Thing"


def _attr(name: str, returned: str = "default", **more: Any) -> dict[str, Any]:
    return {"name": name, "type": more.pop("type", "string"), "returned": returned, **more}


def _thing_type() -> ResourceType:
    docs = {
        THING: {
            "id": THING,
            "attributes": [
                _attr("label"),
                _attr("secret", "never"),
                _attr("token", "request"),
                _attr("code", "always"),
                _attr(
                    "detail",
                    type="complex",
                    subAttributes=[_attr("a"), _attr("b", "request"), _attr("c", "never")],
                ),
            ],
        },
        THING_EXT: {"id": THING_EXT, "attributes": [_attr("note"), _attr("hidden", "request")]},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scim_schemas, "_schema_docs", lambda: docs)
        return ResourceType(
            {
                "name": "Thing",
                "endpoint": "/Things",
                "schema": THING,
                "schemaExtensions": [{"schema": THING_EXT, "required": False}],
            }
        )


THING_TYPE = _thing_type()
A_THING = {
    "schemas": [THING, THING_EXT],
    "id": "t1",
    "label": "l",
    "secret": "s",
    "token": "t",
    "code": "c",
    "detail": {"a": 1},
    THING_EXT: {"note": "n", "hidden": "h"},
}
BOTH = [THING, THING_EXT]
# Without parameters: returned: default and always, not never or request.
THING_DEFAULT = {
    "schemas": BOTH,
    "id": "t1",
    "label": "l",
    "code": "c",
    "detail": {"a": 1},
    THING_EXT: {"note": "n"},
}


@pytest.mark.parametrize(
    ("attributes", "excluded", "expected"),
    [
        (None, None, THING_DEFAULT),
        (None, ["label"], {k: v for k, v in THING_DEFAULT.items() if k != "label"}),
        (None, ["code"], THING_DEFAULT),  # returned: always
        (["label"], None, {"schemas": [THING], "id": "t1", "label": "l", "code": "c"}),
        (["TOKEN"], None, {"schemas": [THING], "id": "t1", "token": "t", "code": "c"}),
        (["secret"], None, {"schemas": [THING], "id": "t1", "code": "c"}),
        (
            [f"{THING_EXT}:hidden"],
            None,
            {"schemas": BOTH, "id": "t1", "code": "c", THING_EXT: {"hidden": "h"}},
        ),
        (["label"], ["token"], {"schemas": [THING], "id": "t1", "label": "l", "code": "c"}),
    ],
)
def test_returned_always_never_request_and_default(
    attributes: Any, excluded: Any, expected: dict[str, Any]
) -> None:
    assert Projection(THING_TYPE, attributes, excluded).apply(copy.deepcopy(A_THING)) == expected


def test_a_type_with_a_request_attribute_is_never_trivial() -> None:
    projection = Projection(THING_TYPE)
    assert not projection.trivial
    assert "token" not in projection.apply(copy.deepcopy(A_THING))


SUB_RETURNED = {"schemas": [THING], "id": "t1", "detail": {"a": 1, "b": 2, "c": 3}}


@pytest.mark.parametrize("attributes", [None, ["detail"], ["detail.c"]])
def test_a_sub_attribute_returned_never_is_never_returned(attributes: Any) -> None:
    result = Projection(THING_TYPE, attributes).apply(copy.deepcopy(SUB_RETURNED))
    assert "c" not in result.get("detail", {})


def test_a_sub_attribute_returned_request_is_returned_only_when_named() -> None:
    result = Projection(THING_TYPE).apply(copy.deepcopy(SUB_RETURNED))
    assert result["detail"] == {"a": 1}


def test_naming_a_sub_attribute_returned_request_returns_it() -> None:
    result = Projection(THING_TYPE, ["detail.b"]).apply(copy.deepcopy(SUB_RETURNED))
    assert result == {"schemas": [THING], "id": "t1", "detail": {"b": 2}}


def test_excluding_one_sub_attribute_drops_it_and_those_not_returned_by_default() -> None:
    # `b` (returned: request) is not named and `c` (never) never goes: nothing is left.
    result = Projection(THING_TYPE, None, ["detail.a"]).apply(copy.deepcopy(SUB_RETURNED))
    assert result == {"schemas": [THING], "id": "t1"}
    kept = Projection(THING_TYPE, None, ["detail.b"]).apply(copy.deepcopy(SUB_RETURNED))
    assert kept["detail"] == {"a": 1}
