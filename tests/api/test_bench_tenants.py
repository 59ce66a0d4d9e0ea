"""bench/run.py's seeding (`seed_store`), small: with `--tenants T` each tenant gets its own
N/T users and big group, and its token sees those and nothing of the others' — what the
multi-tenant bench measures must be T separate tenants, not one."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from flask import Flask, testing

from app import runtime
from app.store import tenancy, tenants
from app.store.models import Group, Membership, User
from tests.helpers import Scim


def options(**changes: Any) -> argparse.Namespace:
    # As bench/run.py's defaults, smaller: batches that end inside a tenant, a sample of 12.
    values = {
        "state_users": 12,
        "batch": 7,
        "seed_timeout": 60.0,
        "big_group": 30,
        "spare_users": 400,
        "seed_rng": 1,
    }
    return argparse.Namespace(**{**values, **changes})


def seeded(app: Flask, bench_run: ModuleType, n: int, count: int) -> dict[str, Any]:
    with app.app_context():
        return bench_run.seed_store(n, count, options(), runtime.of(app).config)


def listed(scim: Scim) -> tuple[int, set[str]]:
    page = scim.get("/Users?count=100").get_json()
    return page["totalResults"], {u["id"] for u in page["Resources"]}


def test_each_bench_tenant_holds_its_users_and_its_token_sees_only_them(
    app: Flask, client: testing.FlaskClient, scim: Scim, bench_run: ModuleType
) -> None:
    out = seeded(app, bench_run, 60, 3)
    made = out["tenants"]
    assert [t["slug"] for t in made] == ["t0001", "t0002", "t0003"]
    with app.app_context():
        assert {t.slug for t in tenants.all_tenants()} >= {"t0001", "t0002", "t0003"}
    assert len({u["userName"] for u in out["users"]}) == len(out["users"]) == 12
    for number, tenant in enumerate(made):
        own = Scim(client, tenant["token"])
        assert listed(own) == (20, set(tenant["ids"]))
        with tenancy.use(tenant["id"]):
            assert User.select().where(User.id.in_(tenant["ids"])).count() == 20
            group = Group.get_by_id(tenant["big_group"]["id"])
            assert group.memberships.count() == tenant["big_group"]["members"] == 10
        sampled = [u for u in out["users"] if u["tenant"] == number]
        assert sampled
        assert {u["id"] for u in sampled} <= set(tenant["ids"])
        other = made[(number + 1) % 3]
        assert own.get(f"/Users/{other['ids'][0]}").status_code == 404
        stranger = next(u for u in out["users"] if u["tenant"] != number)
        found = own.get(f'/Users?filter=userName eq "{stranger["userName"]}"').get_json()
        assert found["totalResults"] == 0
        mine = own.get(f'/Users?filter=userName eq "{sampled[0]["userName"]}"').get_json()
        assert [u["id"] for u in mine["Resources"]] == [sampled[0]["id"]]
    # The default tenant keeps nothing of theirs.
    assert listed(scim) == (0, set())
    with app.app_context(), tenancy.everywhere():
        assert Membership.select().count() == 30


def test_one_bench_tenant_is_the_default_one(
    app: Flask, client: testing.FlaskClient, bench_run: ModuleType
) -> None:
    out = seeded(app, bench_run, 24, 1)
    (tenant,) = out["tenants"]
    assert (tenant["id"], tenant["slug"]) == (tenancy.DEFAULT_TENANT, None)
    assert listed(Scim(client, tenant["token"])) == (24, set(tenant["ids"]))
    assert all("tenant" not in u for u in out["users"])
