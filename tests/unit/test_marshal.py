"""`app.marshal`: request bodies in, canonical resource dicts out (RFC 7643 §2, §3; RFC 7644 §3.3).

Table-driven: each SCIM data type's field (RFC 7643 §2.3) with the values IdPs really send and
the ones they must not; then keys (case, dots, URNs, extension objects), `schemas`, read-only,
required, `primary`, null-means-absent and the per-request limits on multi-valued attributes.
"""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from app.errors import InvalidSyntax, InvalidValue, ScimError
from app.marshal import (
    DEFAULT_LIMITS,
    Limits,
    absent,
    attribute_items,
    canonicalize,
    coerce,
    fold_keys,
    load_resource,
)
from app.marshal.fields import (
    ScimBinary,
    ScimBoolean,
    ScimDateTime,
    ScimDecimal,
    ScimInteger,
    ScimString,
    field_for,
)
from scim_schemas import CORE_GROUP, CORE_USER, ENTERPRISE_USER, LMS_USER, resource_type
from tests.helpers import attribute

USER = resource_type("User")
GROUP = resource_type("Group")
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"

REFUSED = object()  # in a table: the value is refused


def deserialized(field: Any, value: Any) -> Any:
    try:
        return field.deserialize(value)
    except ValidationError:
        return REFUSED


# -- the field of each SCIM data type (RFC 7643 §2.3) ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        # Entra ID sends booleans as strings in PATCH: "True"/"False", any case.
        ("True", True),
        ("False", False),
        ("true", True),
        ("FALSE", False),
        ("tRuE", True),
        (" true ", True),
        ("yes", REFUSED),
        ("1", REFUSED),
        ("", REFUSED),
        ("truex", REFUSED),
        (1, REFUSED),
        (0, REFUSED),
        (None, REFUSED),
        ([True], REFUSED),
    ],
)
def test_scim_boolean(value: Any, expected: Any) -> None:
    result = deserialized(ScimBoolean(), value)
    assert result is expected


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (ScimInteger(), 0, 0),
        (ScimInteger(), 42, 42),
        (ScimInteger(), -7, -7),
        (ScimInteger(), 10**20, 10**20),
        # bool is an int subclass in Python; JSON true is not a number.
        (ScimInteger(), True, REFUSED),
        (ScimInteger(), False, REFUSED),
        (ScimInteger(), 1.0, REFUSED),
        (ScimInteger(), 1.5, REFUSED),
        (ScimInteger(), "1", REFUSED),
        (ScimInteger(), None, REFUSED),
        (ScimDecimal(), 1.5, 1.5),
        (ScimDecimal(), -0.25, -0.25),
        (ScimDecimal(), 3, 3.0),
        (ScimDecimal(), 0, 0.0),
        (ScimDecimal(), True, REFUSED),
        (ScimDecimal(), "1.5", REFUSED),
        (ScimDecimal(), float("nan"), REFUSED),
        (ScimDecimal(), float("inf"), REFUSED),
        (ScimDecimal(), float("-inf"), REFUSED),
        (ScimDecimal(), 10**400, REFUSED),  # too large for a double
        (ScimDecimal(), None, REFUSED),
    ],
    ids=repr,
)
def test_scim_integer_and_decimal(field: Any, value: Any, expected: Any) -> None:
    result = deserialized(field, value)
    if expected is REFUSED:
        assert result is REFUSED
    else:
        assert result == expected
        assert type(result) is type(expected)  # an int stays an int; a decimal is a float


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2011-05-13T04:42:34Z", "2011-05-13T04:42:34Z"),
        ("2011-05-13t04:42:34z", "2011-05-13T04:42:34Z"),
        ("2011-05-13T04:42:34", "2011-05-13T04:42:34Z"),  # no offset: UTC
        ("2011-05-13T04:42:34+02:00", "2011-05-13T02:42:34Z"),
        ("2011-05-13T23:42:34-05:00", "2011-05-14T04:42:34Z"),
        ("2011-05-13T04:42:34.250Z", "2011-05-13T04:42:34.250000Z"),
        # Read leniently as ISO 8601 (IdPs map date-only fields), kept strictly.
        ("2011-05-13", "2011-05-13T00:00:00Z"),
        ("2011-05-13 04:42:34Z", "2011-05-13T04:42:34Z"),
        ("2011-05-13T04:42:34+0200", "2011-05-13T02:42:34Z"),
        ("13/05/2011 04:42", REFUSED),
        ("", REFUSED),
        (1305259354, REFUSED),  # a Unix time
        (None, REFUSED),
    ],
)
def test_scim_datetime_is_xsd_datetime_kept_in_utc(value: Any, expected: Any) -> None:
    assert deserialized(ScimDateTime(), value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("aGVsbG8=", "aGVsbG8="),  # kept as sent, not decoded
        ("", ""),
        ("TWFu", "TWFu"),
        ("aGVsbG8", REFUSED),  # padding missing
        ("aGVs bG8=", REFUSED),
        ("aGVs\nbG8=", REFUSED),  # no line breaks (RFC 7643 §2.3.6)
        ("-_-_", REFUSED),  # the URL-safe alphabet is another encoding
        ("not base64!", REFUSED),
        (5, REFUSED),
        (None, REFUSED),
    ],
)
def test_scim_binary_is_base64(value: Any, expected: Any) -> None:
    assert deserialized(ScimBinary(), value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("text", "text"), ("", ""), (5, REFUSED), (5.0, REFUSED), (True, REFUSED), (None, REFUSED)],
)
def test_scim_string_refuses_numbers_rather_than_making_text_of_them(
    value: Any, expected: Any
) -> None:
    assert deserialized(ScimString(), value) == expected


# -- coerce: one attribute's value, or 400 invalidValue --------------------------------------------

PRIMARY_SUB = attribute("primary", "boolean", parent="things")
THINGS = attribute(
    "things",
    "complex",
    multi_valued=True,
    subs=(
        attribute("value", "string", parent="things", required=True),
        attribute("count", "integer", parent="things"),
        attribute("stamp", "string", parent="things", required=True, mutability="readOnly"),
        PRIMARY_SUB,
    ),
)
SINGLE = attribute(
    "single", "complex", subs=(attribute("value", "string", parent="single", required=True),)
)


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [
        (attribute("n", "integer"), 3, 3),
        (attribute("n", "integer"), True, REFUSED),
        (attribute("n", "integer", multi_valued=True), [1, 2], [1, 2]),
        (attribute("n", "integer", multi_valued=True), [1, True], REFUSED),
        (attribute("n", "integer", multi_valued=True), 1, REFUSED),  # not a list
        (attribute("d", "decimal"), 2, 2.0),
        (attribute("b", "boolean"), "False", False),
        (attribute("t", "dateTime"), "2011-05-13T04:42:34+01:00", "2011-05-13T03:42:34Z"),
        (attribute("x", "binary"), "aGVsbG8=", "aGVsbG8="),
        (attribute("r", "reference"), "https://example.com/Users/1", "https://example.com/Users/1"),
        (attribute("r", "reference"), 1, REFUSED),
        # Complex: sub-attribute names in any case come back in their declared case; null
        # sub-attributes and read-only ones are dropped; each sub-attribute has its own type.
        (THINGS, [{"VALUE": "a", "Count": 2}], [{"value": "a", "count": 2}]),
        (THINGS, [{"value": "a", "count": None}], [{"value": "a"}]),
        (THINGS, [{"value": "a", "stamp": "ignored"}], [{"value": "a"}]),
        (THINGS, [{"value": "a", "count": "2"}], REFUSED),
        (THINGS, [{"value": "a", "shoe": 1}], REFUSED),  # an unknown sub-attribute
        (THINGS, [{"value": "a"}, "b"], REFUSED),
        (THINGS, {"value": "a"}, REFUSED),  # multi-valued wants a list
        # Required sub-attributes (read-only ones are the server's to set).
        (THINGS, [{"count": 1}], REFUSED),
        (THINGS, [{"value": None}], REFUSED),
        (THINGS, [{"value": "a"}, {"count": 1}], REFUSED),
        (SINGLE, {"value": "x"}, {"value": "x"}),
        (SINGLE, {}, REFUSED),
        (SINGLE, [{"value": "x"}], REFUSED),
        # At most one primary (RFC 7643 §2.4), strings counted once they are booleans.
        (THINGS, [{"value": "a", "primary": True}, {"value": "b", "primary": False}], None),
        (THINGS, [{"value": "a", "primary": True}, {"value": "b", "primary": True}], REFUSED),
        (THINGS, [{"value": "a", "primary": "True"}, {"value": "b", "primary": "true"}], REFUSED),
        (THINGS, [{"value": "a", "primary": "False"}, {"value": "b", "primary": "false"}], None),
    ],
)
def test_coerce(attr: Any, value: Any, expected: Any) -> None:
    if expected is REFUSED:
        with pytest.raises(InvalidValue) as caught:
            coerce(attr, value)
        assert caught.value.scim_type == "invalidValue"
        assert attr.name in caught.value.detail  # the error names the attribute
        return
    result = coerce(attr, value)
    if expected is not None:
        assert result == expected


def test_field_for_is_built_once_per_attribute() -> None:
    name = USER.attribute("name")
    assert name is not None
    assert field_for(name) is field_for(name)


# -- absent, fold_keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        ([], True),
        ({}, True),
        ("", False),
        (0, False),
        (False, False),
        ([None], False),
        ({"value": None}, False),
    ],
)
def test_absent_is_null_empty_array_or_empty_object(value: Any, expected: bool) -> None:
    """RFC 7643 §2.5: unassigned is null, [] or {} — but "", 0 and false are values."""
    assert absent(value) is expected


def test_fold_keys_folds_string_keys_and_drops_others() -> None:
    assert fold_keys({"UserName": 1, "SCHEMAS": 2, "Operations": 3, 5: 4}) == {
        "username": 1,
        "schemas": 2,
        "operations": 3,
    }


# -- attribute_items and canonicalize: keys -------------------------------------------------------


def test_attribute_items_opens_extension_objects_and_skips_schemas() -> None:
    body = {
        "schemas": [CORE_USER],
        "userName": "a",
        ENTERPRISE_USER.upper(): {"Department": "d", "SCHEMAS": [ENTERPRISE_USER]},
        LMS_USER: None,  # Entra ID: an extension with nothing in it
        "name.givenName": "g",
    }
    assert list(attribute_items(USER, body)) == [
        ("userName", "a"),
        (f"{ENTERPRISE_USER}:Department", "d"),
        ("name.givenName", "g"),
    ]
    assert list(attribute_items(USER, {"op": "x", "path": "y"}, frozenset({"op"}))) == [
        ("path", "y")
    ]


@pytest.mark.parametrize(
    "body",
    [{ENTERPRISE_USER: "d"}, {ENTERPRISE_USER: ["d"]}, {5: "x"}, {None: "x"}],
    ids=repr,
)
def test_attribute_items_refuses_what_cannot_be_an_attribute(body: dict[Any, Any]) -> None:
    with pytest.raises(InvalidValue):
        list(attribute_items(USER, body))


CANONICAL = [
    ({"USERNAME": "a"}, {"userName": "a"}),
    (
        {"name.GIVENNAME": "g", "Name.familyName": "f"},
        {"name": {"givenName": "g", "familyName": "f"}},
    ),
    # URN-qualified core attributes are the core attributes (Entra ID's aadOptscim062020).
    ({f"{CORE_USER}:displayName": "d"}, {"displayName": "d"}),
    ({f"{CORE_USER.upper()}:name.givenName": "g"}, {"name": {"givenName": "g"}}),
    # Extension attributes, qualified or in the extension's object, nest under its URN.
    ({f"{ENTERPRISE_USER}:department": "d"}, {ENTERPRISE_USER: {"department": "d"}}),
    (
        {f"{ENTERPRISE_USER.lower()}:MANAGER.value": "m"},
        {ENTERPRISE_USER: {"manager": {"value": "m"}}},
    ),
    (
        {ENTERPRISE_USER: {"department": "d"}, f"{ENTERPRISE_USER}:costCenter": "c"},
        {ENTERPRISE_USER: {"department": "d", "costCenter": "c"}},
    ),
    # A dotted key and the object it belongs to meet in one object.
    (
        {"name": {"givenName": "g"}, "name.familyName": "f"},
        {"name": {"givenName": "g", "familyName": "f"}},
    ),
    (
        {"name.familyName": "f", "name": {"givenName": "g"}},
        {"name": {"familyName": "f", "givenName": "g"}},
    ),
    # canonicalize renames; it does not validate values or drop anything.
    ({"emails": "anything", "meta": {"x": 1}}, {"emails": "anything", "meta": {"x": 1}}),
]


@pytest.mark.parametrize(("body", "expected"), CANONICAL, ids=lambda v: str(v)[:50])
def test_canonicalize(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert canonicalize(USER, body) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"shoeSize": "9"},  # silently dropping it would lose data
        {"department": "d"},  # an enterprise attribute without its URN
        {f"{ENTERPRISE_USER}:shoeSize": "9"},
        {ENTERPRISE_USER: {"userName": "a"}},
        {"urn:example:unknown:2.0:User:x": "y"},
        {"name.nickName": "n"},
        {"emails.value": "x"},  # a sub-attribute of a multi-valued attribute
        {"name": "x", "name.givenName": "g"},
        {f"{ENTERPRISE_USER}:manager.nope": "x"},
    ],
    ids=repr,
)
def test_canonicalize_refuses_unknown_and_misplaced_names(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue) as caught:
        canonicalize(USER, body)
    assert caught.value.scim_type == "invalidValue"


# -- load_resource: a whole POST/PUT body ---------------------------------------------------------


def test_load_resource_returns_the_canonical_resource() -> None:
    body = {
        "SCHEMAS": [CORE_USER.upper(), ENTERPRISE_USER, LMS_USER],
        "USERNAME": "alice",
        "Name.GivenName": "Alice",
        "name": {"familyName": "Liddell"},
        "active": "True",
        "emails": [{"Value": "a@example.com", "PRIMARY": "true"}, {"value": "b@example.com"}],
        f"{ENTERPRISE_USER}:employeeNumber": "7",
        ENTERPRISE_USER.lower(): {"department": "Maths", "schemas": [ENTERPRISE_USER]},
        f"{LMS_USER}:hireDate": "2011-05-13T04:42:34+02:00",
    }
    assert load_resource(USER, body) == {
        "schemas": [CORE_USER, ENTERPRISE_USER, LMS_USER],
        "userName": "alice",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "active": True,
        "emails": [{"value": "a@example.com", "primary": True}, {"value": "b@example.com"}],
        ENTERPRISE_USER: {"employeeNumber": "7", "department": "Maths"},
        LMS_USER: {"hireDate": "2011-05-13T02:42:34Z"},
    }


def test_read_only_attributes_sent_by_a_client_are_dropped() -> None:
    """RFC 7644 §3.3 — Okta sends `groups` and `meta` back on PUT."""
    body = {
        "schemas": [CORE_USER],
        "id": "chosen-by-the-client",
        "meta": {"version": 'W/"9"', "resourceType": "User"},
        "userName": "alice",
        "groups": [{"value": "g1", "display": "Physics"}],
        ENTERPRISE_USER: {"manager": {"value": "m1", "displayName": "Red Queen"}},
        LMS_USER: {"enrolments": [{"courseId": "101", "role": "student"}]},
    }
    assert load_resource(USER, body) == {
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "userName": "alice",
        ENTERPRISE_USER: {"manager": {"value": "m1"}},
    }
    group = {"displayName": "Physics", "members": [{"value": "u1", "display": "Alice"}]}
    assert load_resource(GROUP, group)["members"] == [{"value": "u1"}]


def test_null_and_empty_values_are_absent() -> None:
    """Entra ID sends null for attributes it has no value for."""
    body = {
        "userName": "alice",
        "title": None,
        "emails": [],
        "name": {"givenName": None, "familyName": "Liddell"},
        "addresses": None,
        ENTERPRISE_USER: {},
        LMS_USER: None,
        "password": "",  # Entra ID: no password
        "nickName": "",  # an empty string is a value
    }
    assert load_resource(USER, body) == {
        "schemas": [CORE_USER],
        "userName": "alice",
        "name": {"familyName": "Liddell"},
        "nickName": "",
    }
    assert load_resource(USER, {"userName": "a", "password": "S3cret!"})["password"] == "S3cret!"


@pytest.mark.parametrize(
    ("rtype", "body", "error", "in_detail"),
    [
        (USER, ["not", "an", "object"], InvalidSyntax, "JSON object"),
        (USER, None, InvalidSyntax, "JSON object"),
        (USER, {}, InvalidValue, "userName"),
        (USER, {"userName": None}, InvalidValue, "userName"),
        (USER, {"userName": []}, InvalidValue, "userName"),
        (USER, {"schemas": [CORE_USER], "name": {"givenName": "A"}}, InvalidValue, "userName"),
        (GROUP, {"members": []}, InvalidValue, "displayName"),
        (USER, {"userName": 5}, InvalidValue, "userName"),
        (USER, {"userName": "a", "shoeSize": 9}, InvalidValue, "shoeSize"),
        (USER, {"userName": "a", "active": 1}, InvalidValue, "active"),
        (USER, {"userName": "a", "emails": "a@example.com"}, InvalidValue, "emails"),
        (USER, {"userName": "a", "emails": [{"value": "x", "bogus": 1}]}, InvalidValue, "bogus"),
        (
            USER,
            {
                "userName": "a",
                "emails": [{"value": "a", "primary": True}, {"value": "b", "primary": "True"}],
            },
            InvalidValue,
            "primary",
        ),
        (USER, {"userName": "a", f"{LMS_USER}:hireDate": "13/05/2011"}, InvalidValue, "hireDate"),
        (USER, {"userName": "a", "x509Certificates": [{"value": "x y"}]}, InvalidValue, "x509"),
        (USER, {"userName": "a", ENTERPRISE_USER: "Maths"}, InvalidValue, ENTERPRISE_USER),
    ],
    ids=lambda v: str(v)[:40],
)
def test_load_resource_refuses(
    rtype: Any, body: Any, error: type[ScimError], in_detail: str
) -> None:
    with pytest.raises(error) as caught:
        load_resource(rtype, body)
    assert in_detail in caught.value.detail


# -- schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtype", "schemas", "expected"),
    [
        (USER, None, [CORE_USER]),  # left out: the core schema
        (USER, [CORE_USER], [CORE_USER]),
        (USER, [CORE_USER.upper()], [CORE_USER]),
        # An extension named without data is not listed back (RFC 7643 §3: only those used).
        (USER, [CORE_USER, ENTERPRISE_USER, LMS_USER], [CORE_USER]),
        # Entra ID's group schema URN, which defines nothing we store: tolerated, in any case.
        (GROUP, [CORE_GROUP, ADSCIM_GROUP], [CORE_GROUP]),
        (GROUP, [CORE_GROUP, ADSCIM_GROUP.lower()], [CORE_GROUP]),
        (USER, [CORE_USER, 5], InvalidSyntax),
        (USER, CORE_USER, InvalidSyntax),
        (USER, {"0": CORE_USER}, InvalidSyntax),
        (USER, [], InvalidValue),  # the core schema must be there
        (USER, [ENTERPRISE_USER], InvalidValue),
        (USER, [CORE_USER, CORE_GROUP], InvalidValue),  # another type's schema
        (USER, [CORE_USER, "urn:example:unknown"], InvalidValue),
        (GROUP, [ADSCIM_GROUP], InvalidValue),
    ],
    ids=lambda v: str(v)[:50],
)
def test_schemas(rtype: Any, schemas: Any, expected: Any) -> None:
    body = {"userName": "a"} if rtype is USER else {"displayName": "g"}
    if schemas is not None:
        body["Schemas"] = schemas
    if isinstance(expected, type):
        with pytest.raises(expected):
            load_resource(rtype, body)
    else:
        assert load_resource(rtype, body)["schemas"] == expected


# -- limits on multi-valued attributes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "rtype", "path", "count", "allowed"),
    [
        (DEFAULT_LIMITS, USER, "emails", 100, True),
        (DEFAULT_LIMITS, USER, "emails", 101, False),
        (DEFAULT_LIMITS, GROUP, "members", 1000, True),
        (DEFAULT_LIMITS, GROUP, "members", 1001, False),
        (Limits(multi_values=2, members=5), USER, "emails", 2, True),
        (Limits(multi_values=2, members=5), USER, "emails", 3, False),
        (Limits(multi_values=2, members=5), USER, "phoneNumbers", 3, False),
        # Group members have their own bound, above the others'.
        (Limits(multi_values=2, members=5), GROUP, "members", 5, True),
        (Limits(multi_values=2, members=5), GROUP, "members", 6, False),
    ],
)
def test_limits_check(limits: Limits, rtype: Any, path: str, count: int, allowed: bool) -> None:
    attr = rtype.attribute(path)
    values = [{"value": f"v{i}"} for i in range(count)]
    if allowed:
        limits.check(attr, values)
    else:
        with pytest.raises(InvalidValue) as caught:
            limits.check(attr, values)
        assert f"{count} values" in caught.value.detail


def test_limits_check_only_counts_lists_of_multi_valued_attributes() -> None:
    tight = Limits(multi_values=1, members=1)
    tight.check(USER.attribute("userName"), "x" * 1000)
    tight.check(USER.attribute("name"), {"givenName": "a", "familyName": "b"})
    tight.check(USER.attribute("emails"), "not a list: coerce refuses it")


def test_load_resource_applies_its_limits() -> None:
    body = {"userName": "a", "emails": [{"value": f"{i}@example.com"} for i in range(3)]}
    assert len(load_resource(USER, body)["emails"]) == 3
    with pytest.raises(InvalidValue):
        load_resource(USER, body, Limits(multi_values=2))
    members = {"displayName": "g", "members": [{"value": f"u{i}"} for i in range(3)]}
    assert len(load_resource(GROUP, members, Limits(multi_values=1, members=3))["members"]) == 3
    with pytest.raises(InvalidValue):
        load_resource(GROUP, members, Limits(multi_values=5, members=2))
