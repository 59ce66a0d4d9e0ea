"""A filter within `FILTER_MAX_NODES` and `FILTER_MAX_DEPTH` runs, on SQLite and PostgreSQL.

Issue 15 §4: a long `or` chain once compiled to SQL nested as deep as the chain was long, and
SQLite's parser refused it ("parser stack overflow"), which reached the client as 503 "database
unavailable". Chains are now combined as balanced trees, and a filter a database still refuses
as too complex (only possible with raised limits) is 400 `invalidFilter`, never a 503.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import peewee
import pytest
from flask import Flask
from hypothesis import example, given
from hypothesis import strategies as st

from app import filters as f
from app.config import Config
from app.errors import InvalidFilter
from app.store.db import database, filter_refusals, is_postgres
from scim_schemas import CORE_USER, resource_type
from tests.helpers import Scim, api_examples, assert_error, create_group, create_user

USER = resource_type("User")
MAX_NODES, MAX_DEPTH = Config.filter_max_nodes, Config.filter_max_depth


def _chain(word: str, terms: list[str]) -> str:
    return f" {word} ".join(terms)


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return {r["id"] for r in response.get_json()["Resources"]}


def test_a_long_or_chain_runs(scim: Scim) -> None:
    """100 `userName eq` terms (199 nodes): SQLite refused 81 and more with a 503."""
    alice, bob = create_user(scim, "u7"), create_user(scim, "u99")
    create_user(scim, "other")
    text = _chain("or", [f'userName eq "u{i}"' for i in range(100)])
    assert _ids(scim.get("/Users", query_string={"filter": text})) == {alice["id"], bob["id"]}


def test_a_long_and_chain_runs(scim: Scim) -> None:
    """100 terms joined by `and` (199 nodes)."""
    kept = create_user(scim, "kept")
    create_user(scim, "u42")
    text = _chain("and", [f'userName ne "u{i}"' for i in range(100)])
    assert _ids(scim.get("/Users", query_string={"filter": text})) == {kept["id"]}


def test_a_long_chain_inside_a_value_path_runs(scim: Scim) -> None:
    """90 terms inside `emails[...]` (180 nodes) bind to one e-mail row."""
    found = create_user(scim, "u89@x")
    create_user(scim, "nobody@x")
    text = "emails[" + _chain("or", [f'value eq "u{i}@x"' for i in range(90)]) + "]"
    assert _ids(scim.get("/Users", query_string={"filter": text})) == {found["id"]}


def test_a_long_or_chain_of_group_names_runs(scim: Scim) -> None:
    group = create_group(scim, "g99")
    text = _chain("or", [f'displayName eq "g{i}"' for i in range(100)])
    assert _ids(scim.get("/Groups", query_string={"filter": text})) == {group["id"]}


def _nested(depth: int) -> str:
    """`userName eq "u1" or (userName eq "u1" and (…))`, `depth` levels: matches u1 only."""
    text = term = 'userName eq "u1"'
    for level in range(depth):
        text = f"{term} {'and' if level % 2 else 'or'} ({text})"
    return text


def test_a_filter_the_database_refuses_is_invalid_filter_not_503(
    scim_with: Callable[..., Scim],
) -> None:
    """With the limits raised, a filter nested 40 deep is past SQLite's parser stack: 400
    `invalidFilter` (it was 503 "database unavailable"). PostgreSQL runs it."""
    deep = scim_with(filter_max_depth=100, filter_max_nodes=1000)
    user = create_user(deep, "u1")
    response = deep.get("/Users", query_string={"filter": _nested(40)})
    if is_postgres():
        assert _ids(response) == {user["id"]}
    else:
        body = assert_error(response, 400, "invalidFilter")
        assert "too complex" in body["detail"]
    # The connection is still good for the next request.
    assert _ids(deep.get("/Users", query_string={"filter": _nested(4)})) == {user["id"]}


def test_only_too_complex_refusals_become_invalid_filter(app: Flask) -> None:
    """`filter_refusals` on each database's real refusal: SQLite's parser stack, PostgreSQL's
    SQLSTATE 54001 (here with `max_stack_depth` lowered for the transaction, the only way a
    statement gets that deep in a test). Other database errors pass through unchanged."""
    deep = "SELECT " + "(1 = 1 AND " * 3000 + "1 = 1" + ")" * 3000
    with app.app_context(), database.atomic():
        if is_postgres():
            database.execute_sql("SET LOCAL max_stack_depth = '100kB'")
        with pytest.raises(InvalidFilter, match="too complex"), filter_refusals():
            database.execute_sql(deep)
    with (
        app.app_context(),
        pytest.raises(peewee.DatabaseError) as raised,
        filter_refusals(),
    ):
        database.execute_sql("SELECT * FROM no_such_table")
    assert not isinstance(raised.value, InvalidFilter)


# -- property: every filter within the limits runs, and selects what the reference selects ----

EMAILS = USER.attribute("emails")
WORDS = ["a", "A", "b_c", "é", "work", ""]


def _ref(path: str) -> f.AttrRef:
    resolved = USER.resolve(path)
    assert resolved is not None, path
    return f.AttrRef(resolved.attribute, resolved.sub)


def _leaf(element: bool) -> st.SearchStrategy[f.Expr]:
    """One comparison: on the user, or (`element`) on one e-mail inside `emails[...]`."""
    if element:
        subs = st.sampled_from(["value", "type"]).map(lambda s: f.AttrRef(EMAILS, EMAILS.sub(s)))
        return st.one_of(
            st.builds(f.Compare, subs, st.sampled_from(["eq", "ne", "co", "sw"]), _words()),
            st.builds(f.Present, subs),
        )
    paths = st.sampled_from(["userName", "title", "name.givenName", "emails.value"]).map(_ref)
    return st.one_of(
        st.builds(f.Compare, paths, st.sampled_from(["eq", "ne", "co", "ew", "gt"]), _words()),
        st.builds(f.Compare, st.just(_ref("active")), st.just("eq"), st.booleans()),
        st.builds(f.Present, paths),
    )


def _words() -> st.SearchStrategy[str]:
    return st.sampled_from(WORDS)


@st.composite
def _within(
    draw: st.DrawFn, nodes: int, depth: int, element: bool = False, avoid: type | None = None
) -> f.Expr:
    """A filter of at most `nodes` nodes nested at most `depth` levels, as the parser counts
    them (`app.filters.build.Builder.add`, `app.filters.parser._depth`), that goes on until
    one of the two is spent: each chain has one operand (the spine) that takes the remaining
    depth and what its siblings leave of the nodes. `avoid`: the operator of the enclosing
    chain, which an operand must not repeat (it would join that chain)."""
    if nodes < 2 or depth < 2:
        return draw(_leaf(element))
    kinds = ["not"] + ([] if element else ["path"]) + (["chain"] * 4 if nodes >= 3 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "not":
        return f.Not(draw(_within(nodes - 1, depth - 1, element)))
    if kind == "path":
        return f.ValuePath(f.AttrRef(EMAILS), draw(_within(nodes - 1, depth - 1, True)))
    op = draw(st.sampled_from([k for k in (f.And, f.Or) if k is not avoid]))
    widest = (nodes + 1) // 2
    count = draw(st.one_of(st.integers(2, min(3, widest)), st.integers(2, widest)))
    budget = nodes - (count - 1)  # the operators
    spine = draw(st.integers(0, count - 1))
    shares = [1] * count
    shares[spine] = draw(st.integers(1, budget - (count - 1)))
    for index in range(count):
        if index != spine:
            spare = budget - sum(shares)
            shares[index] += draw(st.integers(0, spare)) if spare else 0
    operands = [
        draw(
            _within(
                share, depth - 1 if i == spine else draw(st.integers(1, depth - 1)), element, op
            )
        )
        for i, share in enumerate(shares)
    ]
    expr = operands[0]
    for operand in operands[1:]:
        expr = op(expr, operand)  # left-deep, as the parser builds a chain
    return expr


def _chain_of(op: type, leaves: list[f.Expr]) -> f.Expr:
    expr = leaves[0]
    for leaf in leaves[1:]:
        expr = op(expr, leaf)
    return expr


def _deepest() -> f.Expr:
    """`not (… or (… and (… emails[not (…)])))`: exactly FILTER_MAX_DEPTH levels."""
    value = f.AttrRef(EMAILS, EMAILS.sub("value"))
    expr: f.Expr = f.Not(f.Compare(value, "co", "a"))
    expr = f.ValuePath(f.AttrRef(EMAILS), f.Or(f.Compare(value, "sw", "w"), expr))
    for level in range(MAX_DEPTH - 5):
        op = f.And if level % 2 else f.Or
        expr = op(f.Compare(_ref("title"), "ne", "a"), expr)
    return f.Not(expr)


_USER_NAMES = [f.Compare(_ref("userName"), "eq", f"u{i}") for i in range(MAX_NODES // 2)]
_EMAIL_VALUES = [
    f.Compare(f.AttrRef(EMAILS, EMAILS.sub("value")), "eq", f"u{i}@x") for i in range(99)
]


def _stored_users(scim: Scim) -> list[dict[str, Any]]:
    rng = random.Random(15)
    stored = []
    for n in range(10):
        body: dict[str, Any] = {"schemas": [CORE_USER], "userName": f"u{n}", "active": n % 2 == 0}
        if rng.random() < 0.6:
            body["title"] = rng.choice(WORDS)
        if rng.random() < 0.6:
            body["name"] = {"givenName": rng.choice(WORDS)}
        body["emails"] = [
            {"value": f"{rng.choice(WORDS)}{n}.{i}@x", "type": rng.choice(["work", "home"])}
            for i in range(rng.randrange(3))
        ]
        response = scim.post("/Users", body)
        assert response.status_code == 201, response.get_json()
        stored.append(response.get_json())
    return stored


def test_every_filter_within_the_limits_runs(scim_with: Callable[..., Scim]) -> None:
    """Random filters up to FILTER_MAX_NODES nodes and FILTER_MAX_DEPTH levels: each parses
    under the default limits, and the database answers 200 with the users the reference
    evaluator selects, on SQLite and PostgreSQL. (The length limit is raised: it is not the
    subject, and 200 nodes of long names exceed 4096 characters.)"""
    scim = scim_with(filter_max_length=100_000)
    stored = _stored_users(scim)

    @api_examples(100)
    @given(
        st.tuples(
            st.one_of(st.just(MAX_NODES), st.integers(1, MAX_NODES)),
            st.one_of(st.just(MAX_DEPTH), st.integers(1, MAX_DEPTH)),
        ).flatmap(lambda limits: _within(*limits))
    )
    @example(_chain_of(f.Or, _USER_NAMES))
    @example(_chain_of(f.And, [f.Not(leaf) for leaf in _USER_NAMES[:66]]))
    @example(f.ValuePath(f.AttrRef(EMAILS), _chain_of(f.Or, _EMAIL_VALUES)))
    @example(_deepest())
    def runs(expr: f.Expr) -> None:
        text = f.render(expr)
        parsed = f.parse(text, USER, max_length=100_000)  # within the default node/depth limits
        expected = {u["id"] for u in stored if f.matches(parsed, u)}
        assert _ids(scim.get("/Users", query_string={"filter": text})) == expected, text

    runs()
