"""Index paging deep into the collection (RFC 7644 §3.4.2.4), and `totalResults` without COUNT.

Deep pages are read by their ids first (a cheaper skip than OFFSET over whole rows); they must
hold exactly the rows an OFFSET would, in the same stable order, with a true total.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from playhouse.test_utils import count_queries

from app.store import seed
from scim_schemas import CORE_USER

N = 1_060


def test_deep_pages_are_the_same_slices_in_the_same_order(app: Flask, scim: Any) -> None:
    with app.app_context():
        ids = seed.bulk_create(
            {"schemas": [CORE_USER], "userName": f"deep{i:05d}", "active": True} for i in range(N)
        )
    ordered = sorted(ids)
    for start, count in ((1001, 30), (1040, 50), (N, 5), (N + 1, 5)):
        body = scim.get(f"/Users?startIndex={start}&count={count}").get_json()
        assert body["totalResults"] == N
        assert [r["id"] for r in body["Resources"]] == ordered[start - 1 : start - 1 + count]
        assert body["itemsPerPage"] == len(body["Resources"])


def test_a_short_first_page_needs_no_count_query(app: Flask, scim: Any) -> None:
    with app.app_context():
        seed.bulk_create({"schemas": [CORE_USER], "userName": f"u{i}"} for i in range(3))
    scim.get("/Users?count=1")  # the token's first use is recorded once: keep it out of the counts
    with count_queries() as short:
        body = scim.get("/Users?count=10").get_json()
    assert body["totalResults"] == 3
    with count_queries() as full:
        body = scim.get("/Users?count=2").get_json()
    assert body["totalResults"] == 3
    assert len(full.get_queries()) == len(short.get_queries()) + 1  # the COUNT


def test_a_page_costs_the_same_queries_whatever_its_size(scim: Any) -> None:
    """No N+1: a page of users with e-mails, addresses and groups is a constant number of
    queries: two, the page with every user's children (one statement, issue 20) and the COUNT."""
    ids = []
    for i in range(60):
        body = {
            "schemas": [CORE_USER],
            "userName": f"page{i:03d}",
            "emails": [{"value": f"page{i}@example.com", "type": "work", "primary": True}],
            "addresses": [{"locality": "Leeds", "type": "work"}],
        }
        ids.append(scim.post("/Users", body).get_json()["id"])
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "All"}
    assert (
        scim.post("/Groups", {**group, "members": [{"value": i} for i in ids]}).status_code == 201
    )
    counts = {}
    for size in (5, 50):
        with count_queries() as counted:
            body = scim.get(f"/Users?startIndex=2&count={size}").get_json()
        assert len(body["Resources"]) == size
        assert all(r["emails"] and r["addresses"] and r["groups"] for r in body["Resources"])
        counts[size] = len(counted.get_queries())
    assert counts[5] == counts[50] == 2


def test_a_bulk_seeded_group_reads_like_a_posted_one(app: Flask, scim: Any) -> None:
    """`seed.bulk_group` (big audiences for benchmarks and imports) writes the rows a
    POST /Groups writes: the group, its members both ways, and its place in the totals."""
    with app.app_context():
        ids = seed.bulk_create({"schemas": [CORE_USER], "userName": f"m{i:03d}"} for i in range(30))
        group_id = seed.bulk_group({"displayName": "Everyone"}, ids[:25] + ids[:3], batch=10)
    group = scim.get(f"/Groups/{group_id}").get_json()
    assert group["displayName"] == "Everyone"
    assert sorted(m["value"] for m in group["members"]) == sorted(ids[:25])
    found = scim.get("/Groups", query_string={"filter": 'displayName eq "everyone"'}).get_json()
    assert [r["id"] for r in found["Resources"]] == [group_id]
    assert scim.get("/Groups?count=0").get_json()["totalResults"] == 1
    in_group = scim.get(
        "/Users", query_string={"count": 0, "filter": f'groups.value eq "{group_id}"'}
    ).get_json()
    assert in_group["totalResults"] == 25
