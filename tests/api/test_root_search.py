"""`POST /scim/v2/.search`: Users and Groups searched at once (RFC 7644 §3.4.3, §3.4.2.1).

One ListResponse over both resource types: the filter applies to each (an attribute only one of
them defines counts as unassigned on the other), one sort and one paging run across both,
`totalResults` is the sum, and each resource keeps its own `schemas` and `meta.resourceType`.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from app import auth
from app import filters as f
from scim_schemas import CORE_GROUP, CORE_USER, LIST_RESPONSE, SEARCH_REQUEST, fold, resource_type
from tests.helpers import Scim, api_examples, assert_error, create_group, create_user


def _search(scim: Scim, **request: Any) -> Any:
    return scim.post("/.search", {"schemas": [SEARCH_REQUEST], **request})


def _found(scim: Scim, **request: Any) -> dict[str, Any]:
    response = _search(scim, **request)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["schemas"] == [LIST_RESPONSE]
    assert body["itemsPerPage"] == len(body["Resources"])
    return body


def _names(body: dict[str, Any]) -> list[str]:
    return [r.get("userName") or r["displayName"] for r in body["Resources"]]


@pytest.fixture
def people(scim: Scim) -> dict[str, dict[str, Any]]:
    """Three users and three groups; Carol has no displayName, `ann` is a user and a group."""
    made = {
        "ann": create_user(scim, "ann", displayName="Ann"),
        "bob": create_user(scim, "bob", displayName="bob"),
        "carol": create_user(scim, "carol"),
    }
    made["Ann group"] = create_group(scim, "ann", made["ann"]["id"])
    made["Biology"] = create_group(scim, "Biology")
    made["Zoo"] = create_group(scim, "Zoo", made["bob"]["id"])
    return made


def test_users_and_groups_come_back_each_with_its_own_schemas(
    scim: Scim, people: dict[str, Any]
) -> None:
    body = _found(scim)
    assert body["totalResults"] == 6
    assert body["startIndex"] == 1
    by_id = {r["id"]: r for r in body["Resources"]}
    assert set(by_id) == {p["id"] for p in people.values()}
    for name in ("ann", "bob", "carol"):
        user = by_id[people[name]["id"]]
        assert user["schemas"] == [CORE_USER]
        assert user["meta"]["resourceType"] == "User"
        assert user["meta"]["location"].endswith(f"/Users/{user['id']}")
    group = by_id[people["Zoo"]["id"]]
    assert group["schemas"] == [CORE_GROUP]
    assert group["meta"]["resourceType"] == "Group"
    assert group["meta"]["location"].endswith(f"/Groups/{group['id']}")
    assert [m["value"] for m in group["members"]] == [people["bob"]["id"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # displayName: both types have it
        ('displayName sw "b"', {"bob", "Biology"}),
        # userName: only Users; a Group has no value, so eq is false and ne is true
        ('userName eq "bob"', {"bob"}),
        ('userName ne "bob"', {"ann", "carol", "Ann group", "Biology", "Zoo"}),
        ('not (userName eq "bob")', {"ann", "carol", "Ann group", "Biology", "Zoo"}),
        ("userName pr", {"ann", "bob", "carol"}),
        ("userName eq null", {"Ann group", "Biology", "Zoo"}),
        # members: only Groups
        ("members pr", {"Ann group", "Zoo"}),
        ('userName eq "carol" or displayName eq "zoo"', {"carol", "Zoo"}),
        ('emails[value eq "bob"] or members[display eq "bob"]', {"bob", "Zoo"}),
        ('meta.resourceType eq "Group" and displayName sw "a"', {"Ann group"}),
        ('displayName eq "ann"', {"ann", "Ann group"}),
        ('userName eq "bob" and members pr', set()),  # each type rules itself out
    ],
)
def test_the_filter_applies_to_each_resource_type(
    scim: Scim, people: dict[str, Any], text: str, expected: set[str]
) -> None:
    body = _found(scim, filter=text)
    ids = {r["id"] for r in body["Resources"]}
    assert ids == {people[name]["id"] for name in expected}, text
    assert body["totalResults"] == len(expected)


@pytest.mark.parametrize(
    "text", ['shoeSize eq "9"', "userName eq", 'emails[shoeSize eq "x"]', "(userName"]
)
def test_a_filter_no_resource_type_understands_is_invalid(
    scim: Scim, people: dict[str, Any], text: str
) -> None:
    assert_error(_search(scim, filter=text), 400, "invalidFilter")


@pytest.mark.parametrize("attribute", ["displayName", "userName", "meta.created", "emails"])
@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_one_sort_and_one_paging_across_both_types(
    scim: Scim, people: dict[str, Any], attribute: str, order: str
) -> None:
    """Pages of two, concatenated, are every resource once, in one order (RFC 7644
    §3.4.2.3: by the attribute, null values last in both directions); `totalResults` is the
    sum of both types' counts on every page."""
    whole = _found(scim, sortBy=attribute, sortOrder=order, count=100)["Resources"]
    pages = []
    for start in (1, 3, 5, 7):
        body = _found(scim, sortBy=attribute, sortOrder=order, startIndex=start, count=2)
        assert body["totalResults"] == 6
        assert body["startIndex"] == start
        pages += body["Resources"]
    assert [r["id"] for r in pages] == [r["id"] for r in whole]
    assert len(whole) == 6
    if attribute == "meta.created":
        return
    if attribute == "emails":  # by the primary value; Groups have none, so they come last
        assert [r["meta"]["resourceType"] for r in whole] == ["User"] * 3 + ["Group"] * 3
        values = [r["emails"][0]["value"] for r in whole[:3]]
        assert values == sorted(values, reverse=order == "descending")
        return
    present = [r for r in whole if r.get(attribute) is not None]
    missing = whole[len(present) :]
    assert all(r.get(attribute) is None for r in missing), "null values sort last"
    keys = [fold(r[attribute]) for r in present]
    assert keys == sorted(keys, reverse=order == "descending")


@pytest.mark.parametrize("sort", [{"sortBy": "displayName"}, {"sortBy": "meta.created"}, {}])
def test_a_cursor_walks_both_types(
    scim: Scim, people: dict[str, Any], sort: dict[str, str]
) -> None:
    """RFC 9865 cursors work at the root too: every resource exactly once, in sort order."""
    seen: list[str] = []
    body = _found(scim, cursor="", count=4, **sort)
    while True:
        assert "startIndex" not in body
        assert body["totalResults"] == 6
        seen += [r["id"] for r in body["Resources"]]
        if "nextCursor" not in body:
            break
        body = _found(scim, cursor=body["nextCursor"], count=4, **sort)
    whole = _found(scim, **sort)["Resources"]
    assert seen == [r["id"] for r in whole]
    assert len(seen) == 6


def test_count_zero_and_pages_past_the_end_still_count_both_types(
    scim: Scim, people: dict[str, Any]
) -> None:
    for request in ({"count": 0}, {"startIndex": 7, "count": 2}, {"startIndex": 50}):
        body = _found(scim, **request)
        assert body["totalResults"] == 6, request
        assert body["Resources"] == []
    body = _found(scim, filter='displayName sw "b"', count=0)
    assert body["totalResults"] == 2


def test_attributes_apply_to_each_type_as_far_as_it_has_them(
    scim: Scim, people: dict[str, Any]
) -> None:
    """RFC 7644 §3.4.3 and §3.9: `attributes: [userName]` leaves a group with only what is
    always returned; a name neither type has is 400 invalidValue."""
    body = _found(scim, attributes=["userName"], filter='displayName sw "a"')
    by_id = {r["id"]: r for r in body["Resources"]}
    assert by_id[people["ann"]["id"]] == {
        "schemas": [CORE_USER],
        "id": people["ann"]["id"],
        "userName": "ann",
    }
    assert by_id[people["Ann group"]["id"]] == {
        "schemas": [CORE_GROUP],
        "id": people["Ann group"]["id"],
    }
    body = _found(scim, excludedAttributes=["members", "emails"], filter='displayName eq "ann"')
    assert all("members" not in r and "emails" not in r for r in body["Resources"])
    assert {r["displayName"] for r in body["Resources"]} == {"Ann", "ann"}
    assert_error(_search(scim, attributes=["shoeSize"]), 400, "invalidValue")


def test_sorting_by_what_no_type_has_is_refused(scim: Scim) -> None:
    assert_error(_search(scim, sortBy="shoeSize"), 400, "invalidValue")


def test_a_read_only_token_may_search_the_root(app: Flask) -> None:
    with app.app_context():
        secret = auth.issue("reader", read_only=True)
    reader = Scim(app.test_client(), secret)
    assert _search(reader).status_code == 200


# -- property: the root search selects what the reference evaluator selects -----------------

USER, GROUP = resource_type("User"), resource_type("Group")
WORDS = ["a", "A", "ab", "bio", "é", "", "zoo"]


def _ref(rtype: Any, path: str) -> f.AttrRef:
    resolved = rtype.resolve(path)
    assert resolved is not None, path
    return f.AttrRef(resolved.attribute, resolved.sub)


def _leaves() -> st.SearchStrategy[f.Expr]:
    """Comparisons on attributes of both types, of one, or of the other: the evaluator reads
    each from the resource's own dict, where an attribute its type lacks is simply missing."""
    paths = [
        (USER, "displayName"),
        (GROUP, "displayName"),
        (USER, "userName"),
        (USER, "title"),
        (USER, "emails.value"),
        (GROUP, "members.display"),
        (GROUP, "externalId"),
    ]
    refs = st.sampled_from(paths).map(lambda p: _ref(*p))
    ops = st.sampled_from(["eq", "ne", "co", "sw", "gt"])
    members = GROUP.attribute("members")
    inner = st.builds(
        f.Compare, st.just(f.AttrRef(members, members.sub("display"))), ops, st.sampled_from(WORDS)
    )
    return st.one_of(
        st.builds(f.Compare, refs, ops, st.sampled_from(WORDS)),
        st.builds(f.Present, refs),
        st.builds(f.ValuePath, st.just(f.AttrRef(members)), inner),
    )


ROOT_FILTERS = st.recursive(
    _leaves(),
    lambda children: st.one_of(
        st.builds(f.And, children, children),
        st.builds(f.Or, children, children),
        st.builds(f.Not, children),
    ),
    max_leaves=5,
)


def test_the_root_search_agrees_with_the_reference_evaluator(
    scim: Scim, people: dict[str, Any]
) -> None:
    stored = [
        scim.get(f"/{'Groups' if name[0].isupper() else 'Users'}/{made['id']}").get_json()
        for name, made in people.items()
    ]
    create_user(scim, "dora", displayName="A", title="bio")
    stored.append(_found(scim, filter='userName eq "dora"')["Resources"][0])

    @api_examples(80)
    @given(ROOT_FILTERS)
    def agree(expr: f.Expr) -> None:
        text = f.render(expr)
        expected = {r["id"] for r in stored if f.matches(expr, r)}
        body = _found(scim, filter=text, count=100)
        assert {r["id"] for r in body["Resources"]} == expected, text
        assert body["totalResults"] == len(expected), text

    agree()
