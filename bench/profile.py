#!/usr/bin/env python3
"""Where a request's time goes: lms-scim's hot paths profiled in-process with pyinstrument.

It seeds a fresh SQLite database (or a PostgreSQL schema, `--db postgres`) the way `run.py`
does, then sends `--requests` requests per phase through Flask's test client — the whole app,
without gunicorn and the network — and writes, per phase, pyinstrument's call tree to
`bench/results/profile-<phase>.txt` and a summary table (mean time per request, unprofiled and
profiled, and this process's CPU time per request, which other work on the machine changes far
less than the wall clock: compare versions of the code by it on SQLite) to stdout. `/healthz`
through the same client is the baseline: what Flask and the test client cost before any SCIM
work.

    .venv/bin/python bench/profile.py                       # every phase, 10k users, SQLite
    .venv/bin/python bench/profile.py --phases lookup,patch --requests 2000
    .venv/bin/python bench/profile.py --users 100000 --tenants 100 --phases lookup,get,list

`--breakdown` also sums each call tree into the parts of a request (token check, rate limit,
tenant, audit, outbox, log line, metrics, database round trips, query building, serialisation…;
`bench/breakdown.py` says how) and counts its statements and database round trips, with the
request log on at INFO in JSON as a default install has it (written to /dev/null):

    .venv/bin/python bench/profile.py --breakdown --phases lookup,get,put,patch,create,conflict,list

With `--tenants T` the users are seeded into T tenants as `run.py --tenants` does, and each
request carries the token of its user's tenant (`list`: a page of that tenant's), so the
tenants' token and settings caches are exercised as under `run.py`; only lookup, get and list.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import breakdown  # noqa: E402 - bench/ is put on the path just above
import run as bench_run  # noqa: E402
import scimbench  # noqa: E402

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# With several tenants: the requests that name a user of the tenant whose token they carry.
TENANT_PHASES = {"healthz", "lookup", "get", "list"}


def pick_user(users: list[dict], i: int) -> dict:
    return users[(i * 7919) % len(users)]


def _requests(users: list[dict], extras: dict) -> dict[str, Callable[[Any, int], Any]]:
    """One request builder per phase: (test client, i) → response, as scimbench sends them."""
    group = extras["big_group"]
    spare = group["spare"]
    tag = str(int(time.time()))
    total = extras["users_total"]

    def pick(i: int) -> dict:
        return pick_user(users, i)

    def lookup(c: Any, i: int) -> Any:
        return c.get(
            "/scim/v2/Users", query_string={"filter": f'userName eq "{pick(i)["userName"]}"'}
        )

    def lookup_miss(c: Any, i: int) -> Any:
        name = f"nobody.{tag}.{i}@example.test"  # Okta's look-up before a create
        return c.get("/scim/v2/Users", query_string={"filter": f'userName eq "{name}"'})

    def get(c: Any, i: int) -> Any:
        return c.get(f"/scim/v2/Users/{pick(i)['id']}")

    def put(c: Any, i: int) -> Any:
        user = pick(i)
        return c.put(f"/scim/v2/Users/{user['id']}", json=scimbench.user_payload(user, False))

    def patch(c: Any, i: int) -> Any:
        body = {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "value": {"active": i % 2 == 1}}],
        }
        return c.patch(f"/scim/v2/Users/{pick(i // 2)['id']}", json=body)

    def create(password: bool) -> Callable[[Any, int], Any]:
        def send(c: Any, i: int) -> Any:
            user = {
                "userName": f"p{tag}.{password}.{i}@example.test",
                "externalId": f"x{i}",
                "given": "A",
                "family": "B",
            }
            return c.post("/scim/v2/Users", json=scimbench.user_payload(user, password))

        return send

    def conflict(c: Any, i: int) -> Any:
        return c.post("/scim/v2/Users", json=scimbench.user_payload(pick(i), True))

    def list_page(c: Any, i: int) -> Any:
        return c.get(
            "/scim/v2/Users",
            query_string={
                "startIndex": 1 + (i * 100) % max(1, min(total, len(users))),
                "count": 100,
            },
        )

    def member(c: Any, i: int) -> Any:
        user_id = spare[(i // 2) % len(spare)]
        op = (
            {"op": "add", "path": "members", "value": [{"value": user_id}]}
            if i % 2 == 0
            else {"op": "remove", "path": f'members[value eq "{user_id}"]'}
        )
        return c.patch(
            f"/scim/v2/Groups/{group['id']}", json={"schemas": [PATCH_OP], "Operations": [op]}
        )

    return {
        "healthz": lambda c, i: c.get("/healthz"),
        "lookup": lookup,
        "lookup_miss": lookup_miss,
        "get": get,
        "put": put,
        "patch": patch,
        "list": list_page,
        "big_group_patch": member,
        "create": create(False),
        "create_password": create(True),
        "conflict": conflict,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=1000, help="requests per phase")
    p.add_argument("--tenants", type=int, default=1, help="tenants the users are seeded into")
    p.add_argument("--phases", help="comma list (default all)")
    p.add_argument(
        "--breakdown", action="store_true", help="time per part of a request, and round trips"
    )
    args = p.parse_args(argv)
    if args.users % args.tenants:
        p.error("--users must be a multiple of --tenants")
    several = args.tenants > 1
    if several and args.phases and (bad := set(args.phases.split(",")) - TENANT_PHASES):
        p.error(f"with --tenants above 1 only {','.join(sorted(TENANT_PHASES))}: not {bad}")
    from pyinstrument import Profiler

    tmp = Path(tempfile.mkdtemp(prefix="lms-scim-profile-"))
    url, cleanup = bench_run.create_database(args.db, tmp, f"profile_{int(time.time())}")
    try:
        seed_args = argparse.Namespace(
            state_users=2000,
            seed_timeout=3600.0,
            batch=2000,
            seed_rng=1,
            big_group=100_000,
            spare_users=400,
            page_size=100,
        )
        state = tmp / "state.json"
        secret = "profile-secret-" + tmp.name
        prepared = bench_run.prepare(
            args.db, url, args.users, args.tenants, seed_args, state, "http://x/scim/v2", secret
        )
        users = prepared["users"]
        extras = json.loads(state.read_text())["extras"]

        from app import create_app
        from app.config import Config

        log_format = "json" if args.breakdown else "text"
        config = Config.from_env(database_url=url, secret_key=secret, log_format=log_format)
        app = create_app(config)
        import logging

        if args.breakdown:  # the default install's request log, at INFO, costs what it costs
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long
        else:
            logging.getLogger("lms_scim.request").setLevel(logging.WARNING)
        from app.store.db import database

        trips: dict[str, dict[str, float]] = {}
        parts: dict[str, Any] = {}
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {prepared['token']}"
        tokens = [t["token"] for t in extras.get("tenants", [])]

        def send_as(send: Callable[[Any, int], Any], i: int) -> Any:
            """The request, with the token of its user's tenant when there are several."""
            if tokens:
                user = pick_user(users, i)
                client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tokens[user['tenant']]}"
            return send(client, i)

        builders = _requests(users, extras)
        everything = [b for b in builders if b in TENANT_PHASES or not several]
        wanted = args.phases.split(",") if args.phases else everything
        bench_run.RESULTS.mkdir(exist_ok=True)
        rows = []
        for name in wanted:
            send = builders[name]
            n = max(10, args.requests // (20 if name == "create_password" else 1))
            for i in range(10):  # warm: caches, prepared statements, the filter shape
                send_as(send, -1 - i)
            started, cpu_started = time.perf_counter(), time.process_time()
            for i in range(n):
                response = send_as(send, i)
                if response.status_code >= 500:
                    raise RuntimeError(
                        f"{name}: {response.status_code} {response.get_data()[:200]!r}"
                    )
            plain = (time.perf_counter() - started) / n
            cpu = (time.process_time() - cpu_started) / n
            profiler = Profiler(interval=0.0002)
            counter = breakdown.RoundTrips()
            with counter.counting(database.obj):
                profiler.start()
                for i in range(n, 2 * n):
                    send_as(send, i)
                profiler.stop()
            trips[name] = counter.per_request(n)
            if args.breakdown:
                parts[name] = breakdown.attribute(profiler.last_session.root_frame())
            profiled = profiler.last_session.duration / n
            out = bench_run.RESULTS / f"profile-{name}.txt"
            out.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
            rows.append((name, n, plain * 1000, profiled * 1000, out.relative_to(ROOT), cpu * 1000))
        print(
            "| phase | requests | ms/request | CPU ms/request | ms/request profiled | call tree |"
        )
        print("|---|---:|---:|---:|---:|---|")
        for name, n, plain, profiled, out, cpu in rows:
            print(f"| {name} | {n} | {plain:.3f} | {cpu:.3f} | {profiled:.3f} | `{out}` |")
        if args.breakdown:
            print()
            print(f"Milliseconds per request by part ({args.db}, {args.users:,} users):")
            print()
            print(breakdown.table([(r[0], r[2], parts[r[0]], trips[r[0]]) for r in rows]))
    finally:
        bench_run.CLEANUP.run(cleanup)
        bench_run.CLEANUP.all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
