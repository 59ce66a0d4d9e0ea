"""RFC 9865 cursor pagination on /Users and /Groups, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from playhouse.test_utils import count_queries

from app import cursors
from app.store.models import Group
from app.store.tenancy import DEFAULT_TENANT
from scim_schemas import LIST_RESPONSE, SEARCH_REQUEST
from tests.helpers import (
    Scim,
    assert_error,
    bulk_users,
    create_group,
    create_user,
    tampered_cursors,
)


def walk(scim: Any, path: str, **params: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow nextCursor from an empty cursor to the end; the ids seen and each page's body."""
    ids: list[str] = []
    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = scim.get(path, query_string={**params, "cursor": cursor})
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        pages.append(body)
        ids += [r["id"] for r in body["Resources"]]
        if "nextCursor" not in body:
            return ids, pages
        cursor = body["nextCursor"]
        assert len(pages) < 1000, "the walk does not end"


def index_ids(scim: Any, path: str, **params: Any) -> list[str]:
    body = scim.get(path, query_string={**params, "count": 1000}).get_json()
    return [r["id"] for r in body["Resources"]]


@pytest.fixture
def many(app: Flask) -> list[str]:
    return bulk_users(23, prefix="cur")


def test_a_cursor_walk_visits_every_user_once_in_order(scim: Any, many: list[str]) -> None:
    ids, pages = walk(scim, "/Users", count=5)
    assert ids == sorted(many)
    assert [len(p["Resources"]) for p in pages] == [5, 5, 5, 5, 3]
    for body in pages:
        assert body["schemas"] == [LIST_RESPONSE]
        assert body["totalResults"] == 23
        assert body["itemsPerPage"] == len(body["Resources"])
        assert "startIndex" not in body
        assert "previousCursor" not in body
    for body in pages[:-1]:
        cursor = body["nextCursor"]
        assert cursor
        assert all(c.isalnum() or c in "-._~" for c in cursor)  # RFC 3986 unreserved


def test_an_exact_multiple_ends_without_an_empty_page(scim: Any, many: list[str]) -> None:
    ids, pages = walk(scim, "/Users", count=23)
    assert len(pages) == 1
    assert ids == sorted(many)


def test_rfc9865_section_2_example_filter_and_count(scim: Any) -> None:
    """`GET /Users?filter=userName sw J&cursor&count=10` (RFC 9865 §2), then nextCursor."""
    for i in range(12):
        create_user(scim, f"J{i:02d}@example.com")
    create_user(scim, "kim@example.com")
    first = scim.get("/Users?filter=userName%20sw%20J&cursor&count=10")
    assert first.status_code == 200
    body = first.get_json()
    assert body["totalResults"] == 12
    assert body["itemsPerPage"] == 10
    second = scim.get(
        "/Users",
        query_string={"filter": "userName sw J", "cursor": body["nextCursor"], "count": 10},
    ).get_json()
    assert second["itemsPerPage"] == 2
    assert "nextCursor" not in second
    names = [r["userName"] for r in body["Resources"] + second["Resources"]]
    assert sorted(names) == [f"J{i:02d}@example.com" for i in range(12)]


def test_rfc9865_section_3_search_with_an_empty_cursor(scim: Any) -> None:
    """RFC 9865 §3: `cursor` and `count` in a `.search` body."""
    for name in ("Ann Smithers", "Bo Smith", "Cy Jones"):
        create_user(scim, f"{name.split()[0].lower()}@example.com", displayName=name)
    request = {
        "schemas": [SEARCH_REQUEST],
        "attributes": ["displayName", "userName"],
        "filter": 'displayName sw "smith"',
        "cursor": "",
        "count": 1,
    }
    response = scim.post("/Users/.search", request)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["totalResults"] == 0  # sw, not co: none starts with "smith"
    request["filter"] = 'displayName co "smith"'
    body = scim.post("/Users/.search", request).get_json()
    assert body["totalResults"] == 2
    assert set(body["Resources"][0]) == {"schemas", "id", "userName", "displayName"}
    nxt = scim.post("/Users/.search", {**request, "cursor": body["nextCursor"]}).get_json()
    assert "nextCursor" not in nxt
    seen = {r["displayName"] for r in body["Resources"] + nxt["Resources"]}
    assert seen == {"Ann Smithers", "Bo Smith"}


@pytest.mark.parametrize(
    "sort",
    [
        {"sortBy": "userName"},
        {"sortBy": "userName", "sortOrder": "descending"},
        {"sortBy": "displayName"},
        {"sortBy": "displayName", "sortOrder": "descending"},
        {"sortBy": "meta.created", "sortOrder": "descending"},
        {"sortBy": "active"},
        {"sortBy": "name.familyName", "sortOrder": "descending"},
    ],
)
def test_sorted_cursor_walks_match_index_paging(scim: Any, sort: dict[str, str]) -> None:
    """With sortBy the keyset carries the sort value: the walk visits the same users in the
    same order as one big index page, ties and nulls (last, RFC 7644 §3.4.2.3) included."""
    names = ["b", "A", "c", "a2", "B2", "d", "e", "f"]
    for i, name in enumerate(names):
        extra: dict[str, Any] = {"active": i % 3 != 0}
        if i % 2:
            extra["displayName"] = "Same" if i % 4 == 1 else name.upper()
        else:
            extra["emails"] = []
        create_user(scim, name, **extra)
    ids, _ = walk(scim, "/Users", count=3, **sort)
    assert ids == index_ids(scim, "/Users", **sort)
    assert len(set(ids)) == len(names)


def test_groups_walk_too(scim: Any) -> None:
    made = sorted(create_group(scim, f"Group {i}")["id"] for i in range(7))
    ids, pages = walk(scim, "/Groups", count=3)
    assert ids == made
    assert [p["totalResults"] for p in pages] == [7, 7, 7]
    ids, _ = walk(scim, "/Groups", count=2, sortBy="displayName", sortOrder="descending")
    assert ids == index_ids(scim, "/Groups", sortBy="displayName", sortOrder="descending")


def test_index_paging_is_unchanged(scim: Any, many: list[str]) -> None:
    body = scim.get("/Users?startIndex=21&count=5").get_json()
    assert body["startIndex"] == 21
    assert body["itemsPerPage"] == 3
    assert "nextCursor" not in body
    assert [r["id"] for r in body["Resources"]] == sorted(many)[20:]


def test_a_walk_survives_inserts_and_deletes_behind_it(scim: Any, many: list[str]) -> None:
    """Keyset paging never skips or repeats a row that stays, whatever changes before it."""
    first = scim.get("/Users?cursor&count=10").get_json()
    scim.delete(f"/Users/{many[0]}")
    bulk_users(3, prefix="aaa")  # sorts before every row already seen
    rest, _ = walk_from(scim, first["nextCursor"], count=10)
    assert [r["id"] for r in first["Resources"]] + rest == sorted(many)


def walk_from(scim: Any, cursor: str, **params: Any) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    while cursor:
        body = scim.get("/Users", query_string={**params, "cursor": cursor}).get_json()
        ids += [r["id"] for r in body["Resources"]]
        cursor = body.get("nextCursor", "")
        pages += 1
    return ids, pages


# -- bad cursors and counts --------------------------------------------------------------------


def _next(scim: Any, **params: Any) -> str:
    return scim.get("/Users", query_string={"cursor": "", "count": 2, **params}).get_json()[
        "nextCursor"
    ]


def test_tampered_and_garbage_cursors_are_invalid_cursor(scim: Any, many: list[str]) -> None:
    cursor = _next(scim)
    for bad in tampered_cursors(cursor):
        response = scim.get("/Users", query_string={"cursor": bad, "count": 2})
        assert_error(response, 400, "invalidCursor")
    body = {"schemas": [SEARCH_REQUEST], "cursor": 12}
    assert_error(scim.post("/Users/.search", body), 400, "invalidCursor")


def test_a_cursor_only_continues_its_own_query(scim: Any, many: list[str]) -> None:
    cursor = _next(scim, filter='userName sw "cur"')
    for other in (
        {"filter": 'userName sw "cu"'},
        {},
        {"filter": 'userName sw "cur"', "sortBy": "userName"},
    ):
        response = scim.get("/Users", query_string={**other, "cursor": cursor, "count": 2})
        assert_error(response, 400, "invalidCursor")
    assert_error(scim.get("/Groups", query_string={"cursor": cursor}), 400, "invalidCursor")
    ok = scim.get("/Users", query_string={"filter": 'userName sw "cur"', "cursor": cursor})
    assert ok.status_code == 200


def test_another_services_cursor_is_invalid(
    scim_with: Callable[..., Scim],
    many: list[str],
) -> None:
    mine = scim_with(secret_key="one")
    theirs = scim_with(secret_key="two")
    cursor = _next(mine)
    assert mine.get("/Users", query_string={"cursor": cursor}).status_code == 200
    assert_error(theirs.get("/Users", query_string={"cursor": cursor}), 400, "invalidCursor")


def test_an_expired_cursor_is_expired_cursor(app: Flask, scim: Any, many: list[str]) -> None:
    key = cursors.derive_key(app.secret_key)
    position = cursors.decode(_next(scim), _digest(scim), key)
    old = cursors.encode(position, _digest(scim), key, timeout=60, now=time.time() - 61)
    response = scim.get("/Users", query_string={"cursor": old, "count": 2})
    assert_error(response, 400, "expiredCursor")
    fresh = cursors.encode(position, _digest(scim), key, timeout=60)
    assert scim.get("/Users", query_string={"cursor": fresh, "count": 2}).status_code == 200


def _digest(_scim: Any) -> str:
    """The digest of the default tenant's `GET /Users` without filter or sort (see
    `app.scim.listing`)."""
    return cursors.query_digest(DEFAULT_TENANT, "User", "", None, False)


def test_cursor_timeout_is_configured_and_advertised(
    scim_with: Callable[..., Scim],
) -> None:
    client = scim_with(cursor_timeout_seconds=120, max_page_size=50, default_page_size=20)
    pagination = client.get("/ServiceProviderConfig").get_json()["pagination"]
    assert pagination == {
        "cursor": True,
        "index": True,
        "defaultPaginationMethod": "index",
        "defaultPageSize": 20,
        "maxPageSize": 50,
        "cursorTimeout": 120,
    }


@pytest.mark.parametrize("count", ["0", "-1", "x", "1.5", ""])
def test_bad_counts_are_invalid_count(scim: Any, many: list[str], count: str) -> None:
    if count == "":  # absent: the default page size
        body = scim.get("/Users?cursor&count=").get_json()
        assert body["itemsPerPage"] == 23
        return
    assert_error(scim.get(f"/Users?cursor&count={count}"), 400, "invalidCount")


def test_count_above_the_maximum_is_served_as_the_maximum(
    scim_with: Callable[..., Scim],
    many: list[str],
) -> None:
    client = scim_with(max_page_size=4)
    body = client.get("/Users?cursor&count=100").get_json()
    assert body["itemsPerPage"] == 4
    assert "nextCursor" in body
    body = client.post("/Users/.search", {"schemas": [SEARCH_REQUEST], "cursor": "", "count": True})
    assert_error(body, 400, "invalidCount")


def test_start_index_and_cursor_together_are_refused(scim: Any) -> None:
    assert_error(scim.get("/Users?cursor&startIndex=2"), 400, "invalidValue")


# -- a deep page costs what the first page costs -----------------------------------------------


def _page_queries(scim: Any, query: dict[str, Any]) -> list[str]:
    with count_queries() as counted:
        response = scim.get("/Users", query_string=query)
    assert response.status_code == 200
    # Token checks are cached for TOKEN_CACHE_SECONDS; leave them out of the comparison.
    return [r.msg[0] for r in counted.get_queries() if "api_token" not in r.msg[0]]


@pytest.mark.parametrize("sort", [{}, {"sortBy": "userName", "sortOrder": "descending"}])
def test_a_deep_cursor_page_issues_the_same_queries_as_the_first(
    scim: Any, sort: dict[str, str]
) -> None:
    bulk_users(300, prefix="deep")
    scim.get("/Users?count=0")  # the token is verified and cached before counting
    query = {**sort, "count": 10}
    cursor = ""
    for _ in range(25):  # 250 users in
        cursor = scim.get("/Users", query_string={**query, "cursor": cursor}).get_json()[
            "nextCursor"
        ]
    first = _page_queries(scim, {**query, "cursor": ""})
    deep = _page_queries(scim, {**query, "cursor": cursor})
    assert len(deep) == len(first)
    assert not [sql for sql in first + deep if "OFFSET" in sql.upper()]
    assert any('"id" >' in sql or '"id" <' in sql for sql in deep)  # the keyset seek
    index = _page_queries(scim, {**query, "startIndex": 251})
    assert any("OFFSET" in sql.upper() for sql in index)  # what cursor paging avoids


def test_an_empty_collection_is_one_page_without_a_cursor(scim: Any) -> None:
    body = scim.get("/Groups?cursor").get_json()
    assert body["totalResults"] == 0
    assert body["Resources"] == []
    assert "nextCursor" not in body
    assert Group.select().count() == 0
