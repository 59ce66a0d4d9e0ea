"""Properties of PATCH (RFC 7644 §3.5.2) over generated resources and requests."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ScimError
from app.patch import apply_operations, parse_patch_request
from scim_schemas import CORE_GROUP, CORE_USER, ENTERPRISE_USER, LMS_USER, PATCH_OP, resource_type
from scim_schemas.identity import name_problem
from tests.helpers import patch_body

USER = resource_type("User")
GROUP = resource_type("Group")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (schema URN, attribute name) of every single-valued, writable string attribute.
STRING_ATTRIBUTES = sorted(
    (a.schema, a.name)
    for a in USER.all_attributes()
    if a.type in ("string", "reference")
    and not a.multi_valued
    and a.mutability in ("readWrite", "writeOnly")
)

texts = st.text(max_size=20)
# Names a client may send (RFC 7643 §4.1.1 non-empty; no edge white space or invisible controls).
names = st.text(min_size=1, max_size=20).filter(lambda s: name_problem(s) is None)
ids = st.uuids().map(str)


def _case(name: str) -> st.SearchStrategy[str]:
    """The name in random letter case (RFC 7643 §2.1: names are case-insensitive)."""
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(
            c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True)
        )
    )


def _schemas(resource: dict[str, Any]) -> list[str]:
    return [CORE_USER, *(urn for urn in (ENTERPRISE_USER, LMS_USER) if resource.get(urn))]


@st.composite
def users(draw: st.DrawFn) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": draw(ids),
        "meta": {"resourceType": "User", "version": 'W/"1"'},
        "userName": draw(names),
    }
    for urn, name in draw(st.lists(st.sampled_from(STRING_ATTRIBUTES), unique=True)):
        target = resource if urn == CORE_USER else resource.setdefault(urn, {})
        target[name] = draw(texts)
    emails = draw(st.lists(emails_values(), max_size=4))
    if emails:
        resource["emails"] = emails
    resource["schemas"] = _schemas(resource)
    return resource


@st.composite
def emails_values(draw: st.DrawFn) -> dict[str, Any]:
    element: dict[str, Any] = {"value": draw(st.emails() | names)}
    if draw(st.booleans()):
        element["type"] = draw(st.sampled_from(["work", "home", "other", "Work"]))
    if draw(st.booleans()):
        element["display"] = draw(texts)
    return element


def _one_primary(elements: list[dict[str, Any]], index: int | None) -> list[dict[str, Any]]:
    elements = copy.deepcopy(elements)
    if index is not None and elements:
        elements[index % len(elements)]["primary"] = True
    return elements


def _apply(rtype: Any, resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    return apply_operations(rtype, resource, parse_patch_request(rtype, patch_body(*operations)))


@SETTINGS
@given(
    resource=users(),
    target=st.sampled_from(STRING_ATTRIBUTES),
    value=texts,
    op=st.sampled_from(["add", "replace", "Add", "Replace", "REPLACE"]),
    form=st.sampled_from(["path", "qualified path", "no path", "no path, qualified key"]),
    data=st.data(),
)
def test_setting_a_string_attribute_sets_that_key(
    resource: dict[str, Any],
    target: tuple[str, str],
    value: str,
    op: str,
    form: str,
    data: st.DataObject,
) -> None:
    urn, name = target
    if USER.attribute(f"{urn}:{name}").identity:
        value = data.draw(names)  # a name must be one a client may send
    key = data.draw(_case(name))
    if "qualified" in form or (urn != CORE_USER and data.draw(st.booleans())):
        key = f"{urn}:{key}"
    operation: dict[str, Any] = (
        {"op": op, "path": key, "value": value}
        if form.endswith("path") and not form.startswith("no")
        else {"op": op, "value": {key: value}}
    )
    before = copy.deepcopy(resource)
    after = _apply(USER, resource, operation)

    expected = copy.deepcopy(resource)
    (expected if urn == CORE_USER else expected.setdefault(urn, {}))[name] = value
    expected["schemas"] = _schemas(expected)
    assert after == expected
    assert resource == before


@SETTINGS
@given(
    resource=users(),
    added=st.lists(emails_values(), min_size=1, max_size=4),
    existing_primary=st.none() | st.integers(0, 3),
    added_primary=st.none() | st.integers(0, 3),
    with_path=st.booleans(),
)
def test_adding_emails_twice_equals_adding_them_once(
    resource: dict[str, Any],
    added: list[dict[str, Any]],
    existing_primary: int | None,
    added_primary: int | None,
    with_path: bool,
) -> None:
    if "emails" in resource:
        resource["emails"] = _one_primary(resource["emails"], existing_primary)
    added = _one_primary(added, added_primary)
    operation: dict[str, Any] = (
        {"op": "add", "path": "emails", "value": added}
        if with_path
        else {"op": "add", "value": {"emails": added}}
    )
    once = _apply(USER, resource, operation)
    twice = _apply(USER, once, operation)
    assert twice == once
    assert sum(1 for e in once["emails"] if e.get("primary") is True) <= 1


@SETTINGS
@given(
    existing=st.lists(ids, unique=True, max_size=5),
    added=st.lists(ids, min_size=1, max_size=5),
    overlap=st.integers(0, 5),
    entra=st.booleans(),
)
def test_adding_members_twice_equals_adding_them_once(
    existing: list[str], added: list[str], overlap: int, entra: bool
) -> None:
    group: dict[str, Any] = {"schemas": [CORE_GROUP], "id": "g", "displayName": "G"}
    if existing:
        group["members"] = [{"value": m, "type": "User"} for m in existing]
    added = added + existing[:overlap]
    value = [{"$ref": None, "value": m} if entra else {"value": m, "display": "x"} for m in added]
    operation = {"op": "Add" if entra else "add", "path": "members", "value": value}
    once = _apply(GROUP, group, operation)
    twice = _apply(GROUP, once, operation)
    assert twice == once
    values = [m["value"] for m in once["members"]]
    assert len(values) == len(set(values)) == len(set(existing) | set(added))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

PATHS = [
    "userName",
    "name",
    "name.givenName",
    "emails",
    'emails[type eq "work"]',
    'emails[type eq "work"].value',
    'emails[value co "@"].primary',
    "emails.type",
    "members",
    'members[value eq "m1"]',
    'members[value eq "m1"].display',
    f"{ENTERPRISE_USER}:manager",
    f"{ENTERPRISE_USER}:manager.value",
    "manager",
    "id",
    "meta",
    "meta.created",
    "groups",
    "active",
    "addresses.country",
    "x509Certificates",
    "displayName",
    "",
    "emails[",
    'emails[type eq "work"].',
    "urn:x:y",
]
VALUES = [
    "x",
    "True",
    True,
    None,
    [],
    {},
    [{"value": "m1"}],
    [{"value": "a@x.test", "primary": True}],
    {"value": "a@x.test", "type": "work"},
    {"givenName": "B"},
    {"id": "u1", "displayName": "D"},
]

KEYS = [
    "userName",
    "NAME",
    "name.givenName",
    "emails",
    "members",
    "displayName",
    "id",
    "meta",
    "schemas",
    "active",
    "manager",
    "groups",
    "shoeSize",
    ENTERPRISE_USER,
    f"{ENTERPRISE_USER}:department",
]
some_values = st.sampled_from(VALUES) | json_values
operations = st.one_of(
    # well-formed operations on interesting paths, so that most requests reach apply_operations
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "Add", "replace", "Replace", "remove", "Remove"]),
            "path": st.sampled_from(PATHS),
            "value": some_values,
        }
    ),
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "replace", "Replace"]),
            "value": st.dictionaries(st.sampled_from(KEYS), some_values, max_size=3),
        }
    ),
    # and anything at all
    st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "replace", "remove", "move", 1]) | json_values},
        optional={
            "path": st.sampled_from(PATHS) | st.text(max_size=15) | json_values,
            "value": some_values,
        },
    ),
)
bodies = st.fixed_dictionaries(
    {"schemas": st.just([PATCH_OP]), "Operations": st.lists(operations, min_size=1, max_size=3)}
) | st.fixed_dictionaries(
    {
        "schemas": st.just([PATCH_OP]) | json_values,
        "Operations": st.lists(operations, max_size=4) | json_values,
    }
)

BEFORE = {
    "User": {
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "id": "u1",
        "meta": {"resourceType": "User"},
        "userName": "bjensen",
        "name": {"givenName": "Barbara"},
        "emails": [{"value": "b@x.test", "type": "work", "primary": True}],
        "addresses": [{"type": "work", "locality": "Hollywood"}],
        ENTERPRISE_USER: {"manager": {"value": "u2"}},
    },
    "Group": {
        "schemas": [CORE_GROUP],
        "id": "g1",
        "meta": {"resourceType": "Group"},
        "displayName": "Guides",
        "members": [{"value": "m1", "type": "User"}],
    },
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rtype=st.sampled_from([USER, GROUP]),
    request_body=bodies | json_values | st.dictionaries(st.text(max_size=12), json_values),
)
def test_any_json_body_fails_only_with_a_scim_error(rtype: Any, request_body: Any) -> None:
    before = copy.deepcopy(BEFORE[rtype.name])
    outcome: dict[str, Any] | ScimError
    try:
        outcome = apply_operations(rtype, before, parse_patch_request(rtype, request_body))
    except ScimError as exc:
        outcome = exc
    if isinstance(outcome, ScimError):
        assert outcome.status == 400
        assert outcome.scim_type
    else:
        assert isinstance(outcome, dict)
    assert before == BEFORE[rtype.name]
