"""`totalResults` of an unfiltered list comes from row counts kept by triggers (m0005): they
must equal `COUNT(*)` after every way users and groups come and go, rollbacks included."""

from __future__ import annotations

from typing import Any

from flask import Flask

from app.store import seed, tenancy, tenants
from app.store.models import Group, User
from app.store.paging import count_of
from scim_schemas import CORE_GROUP, CORE_USER, PATCH_OP
from tests.helpers import create_user, run, user_body


def _total(scim: Any, path: str) -> int:
    # count=1: a full first page, so totalResults cannot come from the page itself.
    return scim.get(f"{path}?count=1").get_json()["totalResults"]


def _same(app: Flask, scim: Any) -> None:
    with app.app_context():
        assert count_of(User) == User.select().count()
        assert count_of(Group) == Group.select().count()
    assert _total(scim, "/Users") == User.select().count()
    assert _total(scim, "/Groups") == Group.select().count()


def test_counts_follow_every_create_and_delete(app: Flask, scim: Any) -> None:
    _same(app, scim)
    users = [create_user(scim, f"count{i}@example.com") for i in range(3)]
    _same(app, scim)
    # A clash rolls back: nothing counted.
    assert (
        scim.post("/Users", {"schemas": [CORE_USER], "userName": "COUNT0@example.com"}).status_code
        == 409
    )
    _same(app, scim)
    with app.app_context():
        seed.bulk_create(
            {"schemas": [CORE_USER], "userName": f"seeded{i}", "active": True} for i in range(25)
        )
    _same(app, scim)
    group = scim.post(
        "/Groups",
        {"schemas": [CORE_GROUP], "displayName": "All", "members": [{"value": users[0]["id"]}]},
    ).get_json()
    _same(app, scim)
    bulk = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {
                "method": "POST",
                "path": "/Users",
                "bulkId": "a",
                "data": {"schemas": [CORE_USER], "userName": "bulk-a"},
            },
            {"method": "DELETE", "path": f"/Users/{users[1]['id']}"},
        ],
    }
    assert scim.post("/Bulk", bulk).status_code == 200
    _same(app, scim)
    assert scim.delete(f"/Users/{users[2]['id']}").status_code == 204
    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    _same(app, scim)
    # A deactivated user still counts (deactivation is not a delete).
    off = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    assert scim.patch(f"/Users/{users[0]['id']}", off).status_code == 200
    _same(app, scim)


def test_a_filtered_total_is_still_counted(scim: Any) -> None:
    for i in range(3):
        create_user(scim, f"f{i}@example.com")
    found = scim.get('/Users?count=1&filter=userName sw "f"').get_json()
    assert found["totalResults"] == 3
    found = scim.get('/Users?count=1&filter=userName sw "f1"').get_json()
    assert found["totalResults"] == 1


def test_bulk_seeding_writes_into_the_tenant_at_hand(app: Flask, scim: Any, acme: Any) -> None:
    """`seed.bulk_create` and `seed.bulk_group` under `tenancy.use`: every row they write is
    that tenant's, and its counts (m0010) follow, not the default tenant's (acme has an LMS, so
    the relay's rows are written too)."""
    run(app, "tenants", "set", "acme", "LMS_URL=https://lms.example.test")
    with app.app_context():
        acme_id = tenants.by_slug("acme").id
        before = tenants.row_counts(tenancy.DEFAULT_TENANT)
        with tenancy.use(acme_id):
            ids = seed.bulk_create((user_body(f"s{i}@example.com") for i in range(7)), batch=3)
            seed.bulk_group({"displayName": "All"}, ids[:5], batch=2)
            assert (count_of(User), count_of(Group)) == (7, 1)
        owned = tenants.row_counts(acme_id)
        assert tenants.row_counts(tenancy.DEFAULT_TENANT) == before
        assert count_of(User) == 0
    assert owned["lms_user"] == 7
    assert owned["user_value"] == 7  # one e-mail each
    assert owned["membership"] == 5
    assert owned["outbox"] == 8  # each user, and the group
    assert _total(acme, "/Users") == 7
    assert _total(acme, "/Groups") == 1
    assert _total(scim, "/Users") == 0
    assert _total(scim, "/Groups") == 0
