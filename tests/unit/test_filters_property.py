"""Property tests for filters: the grammar round-trips, and no input escapes as anything but 400."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidFilter
from app.filters import (
    And,
    AttrRef,
    Compare,
    Expr,
    Not,
    Or,
    Present,
    ValuePath,
    matches,
    parse,
    parse_value_filter,
    render,
)
from scim_schemas import Attribute, resource_type
from tests.helpers import SCORES

USER = resource_type("User")
GROUP = resource_type("Group")

ALL_OPS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")
ROOMY = {"max_nodes": 10_000, "max_depth": 1_000, "max_length": 1_000_000}

TIMEZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


def ops_for(attribute: Attribute) -> tuple[str, ...]:
    """The operators RFC 7644 §3.4.2.2 allows on an attribute type."""
    kind = attribute.type
    if kind == "boolean":
        return ("eq", "ne")
    if kind == "binary":
        return ("eq", "ne", "co", "sw", "ew")
    if kind in ("integer", "decimal", "dateTime"):
        return ("eq", "ne", "gt", "ge", "lt", "le")
    return ALL_OPS


def values_for(attribute: Attribute) -> st.SearchStrategy[Any]:
    kind = attribute.type
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if kind == "decimal":
        return st.one_of(
            st.integers(min_value=-(10**30), max_value=10**30),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    if kind == "dateTime":
        return st.datetimes(
            min_value=datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by API
            max_value=datetime(2100, 1, 1),  # noqa: DTZ001
            timezones=TIMEZONES,
        )
    return TEXT


def compares(ref: AttrRef) -> st.SearchStrategy[Expr]:
    target = ref.target
    return st.builds(Compare, st.just(ref), st.sampled_from(ops_for(target)), values_for(target))


def leaves_for(refs: list[AttrRef], presence: list[AttrRef]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.sampled_from(refs).flatmap(compares),
        st.sampled_from(presence).map(Present),
    )


def logic(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(And, children, children),
        st.builds(Or, children, children),
        st.builds(Not, children),
    )


@cache
def inner_filter(attribute: Attribute) -> st.SearchStrategy[Expr]:
    refs = [AttrRef(attribute, sub) for sub in attribute.subs()]
    return st.recursive(leaves_for(refs, refs), logic, max_leaves=4)


def expressions(rtype: Any) -> st.SearchStrategy[Expr]:
    """Random ASTs in the normal form `parse` produces for a resource type."""
    refs: list[AttrRef] = []  # comparable: the target is never complex
    presence: list[AttrRef] = []
    complex_attributes: list[Attribute] = []
    for attribute in rtype.all_attributes():
        if attribute.returned == "never":
            continue  # password: refused in filters
        presence.append(AttrRef(attribute))
        if attribute.is_complex:
            complex_attributes.append(attribute)
            for sub in attribute.subs():
                refs.append(AttrRef(attribute, sub))
                presence.append(AttrRef(attribute, sub))
        else:
            refs.append(AttrRef(attribute))
    value_paths = st.sampled_from(complex_attributes).flatmap(
        lambda attribute: st.builds(ValuePath, st.just(AttrRef(attribute)), inner_filter(attribute))
    )
    leaves = st.one_of(leaves_for(refs, presence), value_paths)
    return st.recursive(leaves, logic, max_leaves=8)


@given(expressions(USER))
def test_user_filters_round_trip(expr: Expr) -> None:
    assert parse(render(expr), USER, **ROOMY) == expr


@given(expressions(GROUP))
def test_group_filters_round_trip(expr: Expr) -> None:
    assert parse(render(expr), GROUP, **ROOMY) == expr


@given(inner_filter(SCORES))
def test_value_filters_round_trip_with_numbers(expr: Expr) -> None:
    assert parse_value_filter(render(expr, relative=True), SCORES, USER, **ROOMY) == expr


def _parses_or_is_invalid(text: str, rtype: Any = USER) -> None:
    try:
        outcome: Expr | InvalidFilter = parse(text, rtype)
    except InvalidFilter as exc:
        outcome = exc
    if isinstance(outcome, InvalidFilter):
        assert outcome.detail
        assert outcome.status == 400
    else:
        assert isinstance(outcome, Compare | Present | And | Or | Not | ValuePath)


@given(st.text())
def test_arbitrary_text_raises_only_invalid_filter(text: str) -> None:
    _parses_or_is_invalid(text)


_WORDS = """
    userName USERNAME emails .value .type type value title meta.lastModified active name
    urn:ietf:params:scim:schemas:core:2.0:User:
    urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager
    pr and or not AND Or ( ) [ ] " "a" "\\" \\ 42 4.2 -1e3 true null
    "2011-05-13T04:42:34Z" bare @ % _ é
"""
FRAGMENTS = st.sampled_from([" ", "\t", "\n", *ALL_OPS, *_WORDS.split()])


@settings(max_examples=500)
@given(st.lists(FRAGMENTS, max_size=25).map("".join))
def test_filter_like_text_raises_only_invalid_filter(text: str) -> None:
    _parses_or_is_invalid(text)
    _parses_or_is_invalid(text, GROUP)


@given(expressions(USER), st.data())
def test_mutated_filters_raise_only_invalid_filter(expr: Expr, data: st.DataObject) -> None:
    # Near-valid text reaches deeper into the grammar than random text does.
    text = render(expr)
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    mutation = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
    if mutation == "delete":
        text = text[:at] + text[at + 1 :]
    elif mutation == "insert":
        text = text[:at] + data.draw(FRAGMENTS) + text[at:]
    else:
        text = text[:at] + text[at : at + 5] + text[at:]
    _parses_or_is_invalid(text)


@given(st.one_of(st.none(), TEXT), TEXT)
def test_ne_is_not_eq_on_single_valued_attributes(stored: str | None, operand: str) -> None:
    # RFC 7644 §3.4.2.2 "not identical": a missing title is not identical to any value.
    ref = AttrRef(USER.attribute("title"))  # type: ignore[arg-type]
    resource = {} if stored is None else {"title": stored}
    assert matches(Compare(ref, "ne", operand), resource) == (
        not matches(Compare(ref, "eq", operand), resource)
    )


@given(expressions(USER))
def test_not_negates(expr: Expr) -> None:
    resource = {"userName": "bjensen", "emails": [{"value": "a@example.com", "type": "work"}]}
    assert matches(Not(expr), resource) is (not matches(expr, resource))
