#!/usr/bin/env python3
"""`make bench`: lms-scim under gunicorn, measured with scimbench against a ceiling app.

For each database (`--db`) and size (`--users`): a fresh database (an SQLite file in a temp
folder, or a fresh schema in PostgreSQL's `test` database), migrated and seeded with
`app.store.seed.bulk_create` (users generated exactly like scimbench's `Bench.make_users`), a
token from `app.auth.issue`, the real server started as
`gunicorn --workers 2 --worker-class gthread --threads 4 'app:create_app()'` on a free loopback
port, scimbench's phases (bench/phases.py) run against it, the workers' peak RSS read, the
server stopped by its pid, the database dropped. With `--tenants T` (T > 1) the users are
seeded into T tenants (N/T each, one token each) and every request goes to a tenant picked at
random (bench/phases.py). The ceiling app (bench/ceiling_app.py) runs
once under the same gunicorn settings with `--no-check`; ratios to it are what stay comparable
on a noisy machine. Results: a table on stdout, `bench/results/<timestamp>.json` and
`bench/results/latest.md`.

Standard library plus the project's venv. Only 127.0.0.1; every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import itertools
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import scimbench  # noqa: E402 - bench/ is put on the path just above

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
# The reads; with --tenants T > 1 the only phases, each request for a tenant picked at random
# (the writes' post-checks and the big group belong to one tenant).
TENANT_PHASES = [
    "lookup",
    "lookup_miss",
    "lookup_external_id",
    "lookup_email",
    "get",
    "list_start",
    "list_mid",
    "list_end",
    "cursor_start",
    "cursor_end",
]
# Issue 18: the look-up with an OAuth access token (a JWT from the client credentials grant)
# instead of the static token, and the token request itself.
OAUTH_PHASES = ["lookup_jwt", "oauth_token"]
CORE_PHASES = [
    *TENANT_PHASES,
    *OAUTH_PHASES,
    "big_group_lookup",
    "big_group_get",
    "put",
    "patch",
    "big_group_patch",
    "create",
    "create_password",
    "conflict",
]
GROUP_PHASES = ["groups_create", "groups_patch"]
# Run against a second server with PASSWORD_POLICY=ignore (Okta sends passwords regardless).
IGNORED_PASSWORD_PHASE = "create_password_ignored"  # noqa: S105 - a phase name
KNOWN_PHASES = [*CORE_PHASES, *GROUP_PHASES, IGNORED_PASSWORD_PHASE]
# The order the phases run in: reads first (the cursor is signed for the seeded users), then
# writes; `conflict` last.
ORDER = [*CORE_PHASES[:-1], *GROUP_PHASES, "conflict", IGNORED_PASSWORD_PHASE]
# Issue 20's targets: requests/s as a share of the ceiling's for the same phase, on SQLite
# and on PostgreSQL (`big_group_patch` is member add/remove in the 100,000-member group).
TARGETS = {
    "lookup": (0.50, 0.40),
    "get": (0.50, 0.40),
    "put": (0.35, 0.28),
    "patch": (0.35, 0.28),
    "big_group_patch": (0.35, 0.28),
    "create": (0.35, 0.28),
    "create_password_ignored": (0.35, 0.28),
    "conflict": (0.50, 0.45),
    "list_start": (0.10, 0.08),
    "cursor_start": (0.10, 0.08),
    "cursor_end": (0.10, 0.08),
}
# A look-up with an OAuth access token: at least as fast as with a static token (same case).
JWT_PHASE, STATIC_PHASE = "lookup_jwt", "lookup"
# Single-resource phases: p99 at most this many times p50.
TAIL_RATIO = 4.0
SINGLE_RESOURCE = {
    "lookup",
    "lookup_miss",
    "lookup_external_id",
    "lookup_email",
    "get",
    "lookup_jwt",
    "oauth_token",
    "big_group_lookup",
    "put",
    "patch",
    "big_group_patch",
    "create",
    "groups_create",
    "groups_patch",
    "conflict",
    "create_password_ignored",
}
# A create with a password: at least this share of the hashing bound (CPUs / one hash's time).
HASH_BOUND_TARGET = 0.80
SEED_PASSWORD = "Pw-bench-seed!9a"  # noqa: S105 - every seeded user's throwaway password
GUNICORN_SETTINGS = ["--workers", "2", "--worker-class", "gthread", "--threads", "4"]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- cleanup


class Cleanup:
    """Everything this run started or created, undone in reverse order exactly once."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Any]] = []

    def push(self, name: str, action: Any) -> str:
        self._actions.append((name, action))
        return name

    def run(self, name: str) -> None:
        for i, (n, action) in enumerate(self._actions):
            if n == name:
                del self._actions[i]
                action()
                return

    def all(self) -> None:
        while self._actions:
            name, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # cleanup must go on with the rest
                log(f"cleanup of {name} failed: {exc!r}")


CLEANUP = Cleanup()


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------- users


def generate_users(n: int, prefix: str, seed_rng: int) -> Iterator[dict[str, str]]:
    """The users scimbench's `Bench.make_users(n)` makes, one at a time (no list of n)."""
    rng = scimbench.random.Random(seed_rng)
    given, family = scimbench.GIVEN, scimbench.FAMILY
    for i in range(n):
        yield {
            "userName": f"{prefix}.user{i:07d}@example.test",
            "externalId": scimbench.okta_id(rng),
            "given": given[i % len(given)],
            "family": family[(i // len(given)) % len(family)],
        }


def check_generator(prefix: str, seed_rng: int) -> None:
    """Fail fast if the shared harness ever generates users differently from us."""
    fake = SimpleNamespace(a=SimpleNamespace(seed_rng=seed_rng, prefix=prefix), run_tag="x")
    theirs = scimbench.Bench.make_users(fake, 300)
    if theirs != list(generate_users(300, prefix, seed_rng)):
        sys.exit("bench/run.py generate_users no longer matches scimbench's Bench.make_users")


class Resources:
    """Store-ready resources for scimbench's Okta-like POST payloads.

    A POST runs `marshal.load_resource` and adds the LMS defaults (userType, timezone) before
    `users.create`. Doing that for a million users costs ~0.3 ms each, so resources are built
    from a template instead, and the template is checked against the real path on the first
    200 users and every 997th after; a mismatch switches to the real path for the rest.
    """

    def __init__(self, config: Any) -> None:
        from app import marshal
        from scim_schemas import resource_type

        self._load = marshal.load_resource
        self._type = resource_type("User")
        self._defaults = {
            "userType": config.default_user_type,
            "timezone": config.default_timezone,
        }
        self.exact = False
        self.checked = 0

    def real(self, user: dict[str, str]) -> dict[str, Any]:
        resource = self._load(self._type, scimbench.user_payload(user, password=False))
        for key, value in self._defaults.items():
            resource.setdefault(key, value)
        return resource

    def fast(self, user: dict[str, str]) -> dict[str, Any]:
        return {
            "externalId": user["externalId"],
            "userName": user["userName"],
            "name": {"familyName": user["family"], "givenName": user["given"]},
            "displayName": f"{user['given']} {user['family']}",
            "locale": "en-US",
            "active": True,
            "emails": [{"value": user["userName"], "type": "work", "primary": True}],
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            **self._defaults,
        }

    def build(self, i: int, user: dict[str, str]) -> dict[str, Any]:
        if self.exact:
            return self.real(user)
        resource = self.fast(user)
        if i < 200 or i % 997 == 0:
            self.checked += 1
            real = self.real(user)
            if real != resource:
                log(f"template differs from marshal.load_resource ({real!r}); using the real path")
                self.exact = True
                return real
        return resource


# --------------------------------------------------------------------------- databases


def pg_connect() -> Any:
    import psycopg2

    connection = psycopg2.connect(connect_timeout=10, **PG)
    connection.autocommit = True
    return connection


def create_database(kind: str, tmp: Path, tag: str) -> tuple[str, str]:
    """A fresh, empty database: (DATABASE_URL, cleanup name)."""
    if kind == "sqlite":
        path = tmp / f"{tag}.db"

        def remove() -> None:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").unlink()

        return f"sqlite:///{path}", CLEANUP.push(f"db:{tag}", remove)
    schema = f"bench_{tag}".lower()  # search_path folds unquoted names to lower case
    with contextlib.closing(pg_connect()) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with contextlib.closing(pg_connect()) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    url = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    return url, CLEANUP.push(f"db:{tag}", drop)


def database_size(kind: str, url: str) -> int | None:
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///")
        return sum(
            os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}")
        )
    schema = url.rsplit("%3D", 1)[1]
    with contextlib.closing(pg_connect()) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (schema,),
        )
        return int(cursor.fetchone()[0])


def end_cursor(ids: list[str], page_size: int, config: Any, tenant_id: int) -> dict[str, Any]:
    """An RFC 9865 cursor for the last page of a tenant's /Users in its default order (by id),
    signed as the server signs its `nextCursor`s (the digest names the tenant, as
    `app.scim.listing` makes it): walking a million users there takes 10,000 pages."""
    from app import cursors

    ordered = sorted(ids)
    rows = min(page_size, len(ordered) - 1)
    position = (None, ordered[-rows - 1])
    digest = cursors.query_digest(tenant_id, "User", "", None, False)
    key = cursors.derive_key(config.secret_key)
    token = cursors.encode(position, digest, key, config.cursor_timeout_seconds)
    return {"cursor": token, "rows": rows}


def hash_seconds(rounds: int = 8) -> float:
    """The time of one password hash as the server computes it (argon2id, app.passwords)."""
    from app import passwords

    hasher = passwords.Hasher()
    hasher.hash("warm-up")
    started = time.perf_counter()
    for i in range(rounds):
        hasher.hash(f"Pw-{i}-bench!")
    return (time.perf_counter() - started) / rounds


def tenant_slug(number: int, tenants: int) -> str:
    """`t0001`, `t0002`, … (wider past 9,999 tenants): the slug of the number-th tenant."""
    return f"t{number + 1:0{max(4, len(str(tenants)))}d}"


def oauth_client() -> dict[str, str]:
    """An OAuth client of the tenant at hand (as `lms-scim clients create bench` makes one):
    its client_id and secret, for the `lookup_jwt` and `oauth_token` phases."""
    from app.auth import new_secret
    from app.store import oauth_clients

    secret, prefix, digest = new_secret()
    identifier = "lmsscim-client-" + secrets.token_hex(8)
    oauth_clients.create("bench", identifier, prefix, digest, read_only=False, token_lifetime=3600)
    return {"client_id": identifier, "client_secret": secret}


def seed_store(n: int, tenants: int, args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """Seed n users and the big group, issue the token, in the app's database (connected).

    One tenant: everything in the default tenant, as a single-organisation install has it.
    T tenants: T new tenants `t0001`… (`app.store.tenants.create`), each with the next N/T users
    of the one generator (so userNames stay distinct across tenants), a big group of
    `--big-group`/T of them (as many memberships in all as with one tenant) and a token of its
    own. Returns `prefix`; `tenants`, per tenant its `id`, `slug`, `token`, user `ids` (in
    seeding order) and `big_group`; `users`, the sample for scimbench's state (each with its
    `id` and, with several tenants, its tenant's number as `tenant`); and the seed figures.
    """
    from app import passwords
    from app.auth import issue
    from app.store import seed, tenancy
    from app.store import tenants as tenant_store

    per = n // tenants
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    if tenants == 1:
        owners: list[tuple[int, str | None]] = [(tenancy.DEFAULT_TENANT, None)]
    else:
        owners = []
        for number in range(tenants):
            slug = tenant_slug(number, tenants)
            owners.append((tenant_store.create(slug, f"Bench tenant {number + 1}").id, slug))
        figures["tenants_s"] = round(time.perf_counter() - started, 3)

    prefix = f"b{secrets.token_hex(3)}"
    # Every tenant gets some of the sampled users, however many tenants there are.
    every = max(1, min(math.ceil(n / args.state_users), per))
    sample: list[tuple[int, dict[str, str]]] = []
    resources = Resources(config)
    deadline = time.monotonic() + args.seed_timeout

    def feed() -> Iterator[dict[str, Any]]:
        for i, user in enumerate(generate_users(n, prefix, args.seed_rng)):
            if i % every == 0:
                sample.append((i, user))
            if i % args.batch == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"seeding stopped at --seed-timeout after {i}")
                if i and i % (10 * args.batch) == 0 and n >= 100_000:
                    log(f"  seeded {i:,} / {n:,}")
            yield resources.build(i, user)

    password_hash = passwords.Hasher().hash(SEED_PASSWORD)
    started = time.perf_counter()
    source = feed()
    made: list[dict[str, Any]] = []
    for tenant_id, slug in owners:
        with tenancy.use(tenant_id):
            ids = seed.bulk_create(
                itertools.islice(source, per),
                batch=args.batch,
                password_hash=password_hash,
                unique_emails=config.unique_emails,
            )
        if len(ids) != per:
            raise RuntimeError(f"bulk_create returned {len(ids)} ids for {per} users")
        made.append({"id": tenant_id, "slug": slug, "ids": ids})
    figures["seed_s"] = round(time.perf_counter() - started, 3)
    figures["seed_users_per_s"] = round(n / figures["seed_s"], 1)
    figures["template_checks"] = resources.checked
    figures["template_exact_fallback"] = resources.exact

    spare = min(args.spare_users, max(1, per // 10))
    size = max(0, min(args.big_group // tenants, per - spare))
    big_name = f"{prefix} everyone"
    started = time.perf_counter()
    for tenant in made:
        with tenancy.use(tenant["id"]):
            tenant["big_group"] = {
                "id": seed.bulk_group({"displayName": big_name}, tenant["ids"][:size]),
                "displayName": big_name,
                "members": size,
                "spare": tenant["ids"][per - spare :],
            }
            tenant["token"] = issue("bench")
    with tenancy.use(made[0]["id"]):
        made[0]["oauth"] = oauth_client()
    figures["big_group_members"] = size * tenants
    figures["big_group_seed_s"] = round(time.perf_counter() - started, 3)
    users = []
    for i, user in sample:
        number, at = divmod(i, per)
        users.append(dict(user, id=made[number]["ids"][at]))
        if tenants > 1:
            users[-1]["tenant"] = number
    return {"prefix": prefix, "tenants": made, "users": users, "figures": figures}


def prepare(
    kind: str,
    url: str,
    n: int,
    tenants: int,
    args: argparse.Namespace,
    state: Path,
    base: str,
    secret: str,
) -> dict:
    """Migrate, seed n users (in `tenants` tenants) and the big group, analyse, issue the
    token(s); write scimbench's --state file (with the big group, a cursor signed with the
    server's `secret` and, for several tenants, each tenant's token and end cursor)."""
    from app import create_app
    from app.config import Config
    from app.store import migrations
    from app.store.db import database

    config = Config.from_env(database_url=url, secret_key=secret)
    create_app(config)  # points the store at `url`, with the same settings as the server
    db = database.obj
    out: dict[str, Any] = {}
    try:
        with db.connection_context():
            started = time.perf_counter()
            migrations.upgrade(db)
            out["migrate_s"] = round(time.perf_counter() - started, 3)

            seeded = seed_store(n, tenants, args, config)
            out.update(seeded["figures"])
            made = seeded["tenants"]
            first = made[0]
            extras: dict[str, Any] = {
                # What one token sees: its tenant's users.
                "users_total": n // tenants,
                "big_group": first["big_group"],
                "end_cursor": end_cursor(first["ids"], args.page_size, config, first["id"]),
                "oauth": first["oauth"],
            }
            if tenants > 1:
                extras["tenants"] = [
                    {
                        "slug": t["slug"],
                        "token": t["token"],
                        "end_cursor": end_cursor(t["ids"], args.page_size, config, t["id"]),
                    }
                    for t in made
                ]

            started = time.perf_counter()
            # PostgreSQL: what autovacuum does after a big import (the visibility map lets
            # index-only scans skip the heap); SQLite: the planner's statistics.
            db.execute_sql("VACUUM ANALYZE" if kind == "postgres" else "ANALYZE")
            out["analyze_s"] = round(time.perf_counter() - started, 3)
            if kind == "sqlite":
                db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")

        users, token = seeded["users"], first["token"]
        del seeded, made, first
        with state.open("w") as f:
            json.dump({"base": base, "users": users, "extras": extras}, f)
        out["state_users"] = len(users)
    finally:
        if hasattr(db, "close_all"):
            db.close_all()
        elif not db.is_closed():
            db.close()
    out["db_bytes"] = database_size(kind, url)
    return {"seed": out, "token": token, "users": users}


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A gunicorn master started by us, stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(
        self, name: str, app: str, cwd: Path, env: dict[str, str], log_path: Path, port: int
    ):
        self.name, self.port, self.log_path = name, port, log_path
        gunicorn = Path(sys.executable).with_name("gunicorn")
        command = [str(gunicorn), "--bind", f"127.0.0.1:{self.port}", *GUNICORN_SETTINGS, app]
        self.log_file = log_path.open("wb")
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        self.cleanup = CLEANUP.push(f"server:{name}:{self.proc.pid}", self.stop)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/scim/v2"

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                    if response.status < 500:
                        return
                finally:
                    connection.close()
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def get(self, path: str, token: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                # the command name is in parentheses and may contain spaces: split after it
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid:
                    pids.append(int(entry.name))
        return sorted(pids)

    @staticmethod
    def status_kb(pid: int, field: str) -> int | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return None

    def memory(self) -> dict[str, Any]:
        """Peak (VmHWM) and current (VmRSS) resident memory of the master and each worker, MiB."""

        def mib(kb: int | None) -> float | None:
            return None if kb is None else round(kb / 1024, 1)

        workers = [
            {
                "pid": pid,
                "peak_mib": mib(self.status_kb(pid, "VmHWM")),
                "rss_mib": mib(self.status_kb(pid, "VmRSS")),
            }
            for pid in self.worker_pids()
        ]
        return {
            "master_peak_mib": mib(self.status_kb(self.proc.pid, "VmHWM")),
            "workers": workers,
            "max_worker_peak_mib": max((w["peak_mib"] or 0 for w in workers), default=None),
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for 20 s: SIGKILL {self.proc.pid}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log_file.close()

    def close(self) -> None:
        CLEANUP.run(self.cleanup)

    def tail(self, lines: int = 30) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# --------------------------------------------------------------------------- scimbench


def run_scimbench(
    server: Server,
    token: str,
    state: Path,
    n_state: int,
    phase_list: list[str],
    args: argparse.Namespace,
    out: Path,
    *,
    check: bool,
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(BENCH / "phases.py"),
        "--base",
        server.base,
        "--users",
        str(n_state),
        "--state",
        str(state),
        "--json",
        str(out),
        "--phases",
        ",".join(phase_list),
        "--concurrency",
        str(args.concurrency),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--group-size",
        str(args.group_size),
        "--page-size",
        str(args.page_size),
        "--seed-timeout",
        "300",
        "--seed-rng",
        str(args.seed_rng),
        "--label",
        server.name,
    ]
    if not check:
        command.append("--no-check")
    timed = sum(1 for p in phase_list if p != "groups_create")
    timeout = timed * (args.duration + args.warmup + 35) + 2 * 300 + 60
    env = {**os.environ, "SCIMBENCH_TOKEN": token}
    result = subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode not in (0, 2) or not out.exists():
        raise RuntimeError(f"scimbench failed ({result.returncode}):\n{result.stdout[-3000:]}")
    return json.loads(out.read_text())


def write_ceiling_state(path: Path, n: int) -> None:
    users = [dict(u, id=str(i + 1)) for i, u in enumerate(generate_users(n, "ceiling", 1))]
    extras = {  # the same requests, answered with a fixed body
        "users_total": n,
        "big_group": {"id": "1", "displayName": "everyone", "members": 0, "spare": ["1", "2"]},
        "end_cursor": {"cursor": "ceiling", "rows": 100},
    }
    path.write_text(json.dumps({"base": "ceiling", "users": users, "extras": extras}))


# --------------------------------------------------------------------------- report


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def short(case: dict[str, Any]) -> str:
    """`sqlite 1,000,000`, or `sqlite 1,000,000 in 1,000 tenants`."""
    tenants = case.get("tenants", 1)
    return f"{case['db']} {case['users']:,}" + (f" in {tenants:,} tenants" if tenants > 1 else "")


def loads(result: dict[str, Any]) -> str:
    parts = []
    for name, item in [("ceiling", result.get("ceiling") or {})] + [
        (short(c), c) for c in result["cases"]
    ]:
        if item.get("loadavg_before"):
            after = (item.get("loadavg_after") or [None])[0]
            parts.append(f"{name} {item['loadavg_before'][0]:.1f}/{fmt(after)}")
    return ", ".join(parts) or "-"


def tables(result: dict[str, Any]) -> str:
    ceiling = (result.get("ceiling") or {}).get("phases", {})
    lines = [
        f"# lms-scim bench {result['started_at']}",
        "",
        f"{result['host']['cpus']} CPUs, gunicorn {' '.join(GUNICORN_SETTINGS)}, "
        f"C={result['args']['concurrency']}, {result['args']['duration']} s per phase "
        f"(+{result['args']['warmup']} s warm-up), load generator on the same machine.",
        "",
        f"Load average (1 min) before/after each measurement: {loads(result)}. Anything "
        "well above 0 before a measurement means another process shared the CPUs.",
        "",
        "| db | users | tenants | phase | req/s | p50 ms | p95 ms | p99 ms | vs ceiling | target "
        "| status |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    notes = []
    for case in result["cases"]:
        for name, s in (case.get("scimbench") or {}).get("phases", {}).items():
            top = ceiling.get(name, {}).get("rps")
            ratio = s["ok_rps"] / top if top and s["status"] == "ok" else None
            status = {"ok": "OK", "WRONG": "WRONG"}.get(s["status"], s["status"])
            lines.append(
                f"| {case['db']} | {case['users']:,} | {case.get('tenants', 1):,} | {name} | "
                f"{s['ok_rps']:.1f} | "
                f"{fmt(s['p50_ms'], '.2f')} | {fmt(s['p95_ms'], '.2f')} | "
                f"{fmt(s['p99_ms'], '.2f')} | {fmt(ratio, '.2f')} | "
                f"{target_cell(name, ratio, s, case, result)} | {status} |"
            )
            if s["errors"]:
                kinds = "; ".join(f"{v} x {k}" for k, v in s["error_kinds"].items())
                sample = (s["error_samples"] or [""])[0]
                notes.append(f"- {short(case)} {name}: {kinds}. e.g. `{sample}`")
        if case.get("error"):
            notes.append(f"- {short(case)}: run failed: `{case['error'][:300]}`")
    if ceiling:
        lines += [
            "",
            "Ceiling (bare Flask, fixed body, `--no-check`, same gunicorn settings):",
            "",
            "| phase | req/s | p50 ms | p99 ms |",
            "|---|---:|---:|---:|",
        ]
        for name, s in ceiling.items():
            lines.append(
                f"| {name} | {s['rps']:.1f} | {fmt(s['p50_ms'], '.2f')} | "
                f"{fmt(s['p99_ms'], '.2f')} |"
            )
    lines += [
        "",
        "| db | users | tenants | seed s | users/s | ANALYZE s | db MiB | worker peak RSS MiB "
        "(VmHWM) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in result["cases"]:
        seed, memory = case.get("seed") or {}, case.get("memory") or {}
        size = seed.get("db_bytes")
        peaks = ", ".join(fmt(w["peak_mib"]) for w in memory.get("workers", [])) or "-"
        lines.append(
            f"| {case['db']} | {case['users']:,} | {case.get('tenants', 1):,} | "
            f"{fmt(seed.get('seed_s'))} | "
            f"{fmt(seed.get('seed_users_per_s'), ',.0f')} | {fmt(seed.get('analyze_s'), '.2f')} | "
            f"{fmt(size / 2**20 if size else None)} | {peaks} |"
        )
    lines += hashing_lines(result) + scaling_lines(result) + tenancy_lines(result, ceiling)
    if notes:
        lines += ["", "Wrong answers and failures:", "", *notes]
    return "\n".join(lines) + "\n"


def hash_bound(case: dict[str, Any], result: dict[str, Any]) -> float | None:
    """Creates with a password per second that hashing alone allows: CPUs / one hash."""
    seconds = case.get("hash_s")
    return result["host"]["cpus"] / seconds if seconds else None


def target_cell(
    name: str, ratio: float | None, s: dict[str, Any], case: dict[str, Any], result: dict
) -> str:
    """Issue 20's target for the phase and whether this run met it (plus, for a single-resource
    phase, whether its p99 stays within TAIL_RATIO x its p50)."""
    cells = []
    if name == "create_password":
        bound = hash_bound(case, result)
        if bound:
            share = s["ok_rps"] / bound
            mark = "met" if share >= HASH_BOUND_TARGET else "MISSED"
            cells.append(f"≥{HASH_BOUND_TARGET:.0%} of hash bound: {share:.0%} {mark}")
    elif name == JWT_PHASE:
        static = ((case.get("scimbench") or {}).get("phases") or {}).get(STATIC_PHASE)
        if static and static["ok_rps"]:
            share = s["ok_rps"] / static["ok_rps"]
            cells.append(f"≥ {STATIC_PHASE}: {share:.2f}x {'met' if share >= 1 else 'MISSED'}")
    elif (targets := TARGETS.get(name)) is not None and ratio is not None:
        target = targets[case["db"] == "postgres"]
        cells.append(f"≥{target:.2f} {'met' if ratio >= target else 'MISSED'}")
    if name in SINGLE_RESOURCE and s.get("p50_ms") and s.get("p99_ms"):
        tail = s["p99_ms"] / s["p50_ms"]
        cells.append(f"p99 {tail:.1f}x p50 {'met' if tail <= TAIL_RATIO else 'MISSED'}")
    return "; ".join(cells) or "-"


def hashing_lines(result: dict[str, Any]) -> list[str]:
    rows = [c for c in result["cases"] if c.get("hash_s")]
    if not rows:
        return []
    lines = [
        "",
        "Hashing bound (argon2id as app.passwords hashes: m=19 MiB, t=2, p=1, timed in the run):",
        "",
        "| db | users | one hash ms | bound req/s (CPUs / hash) |",
        "|---|---:|---:|---:|",
    ]
    for case in rows:
        lines.append(
            f"| {case['db']} | {case['users']:,} | {case['hash_s'] * 1000:.1f} | "
            f"{hash_bound(case, result):.1f} |"
        )
    return lines


def scaling_lines(result: dict[str, Any]) -> list[str]:
    """Each phase's requests/s at the smallest size over the largest (target: ≤ 1.5x)."""
    lines: list[str] = []
    for db, tenants in dict.fromkeys((c["db"], c.get("tenants", 1)) for c in result["cases"]):
        cases = sorted(
            (
                c
                for c in result["cases"]
                if c["db"] == db and c.get("tenants", 1) == tenants and c.get("scimbench")
            ),
            key=lambda c: c["users"],
        )
        if len(cases) < 2:
            continue
        small, large = cases[0], cases[-1]
        where = f" in {tenants:,} tenants" if tenants > 1 else ""
        lines += [
            "",
            f"{db}{where}: {small['users']:,} → {large['users']:,} users (slow-down = req/s at "
            f"{small['users']:,} ÷ req/s at {large['users']:,}; target ≤ 1.5x):",
            "",
            "| phase | req/s small | req/s large | slow-down | p50 ms small | p50 ms large |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        big = large["scimbench"]["phases"]
        for name, s in small["scimbench"]["phases"].items():
            other = big.get(name)
            if not other or not other["ok_rps"]:
                continue
            slow = s["ok_rps"] / other["ok_rps"]
            mark = "" if slow <= 1.5 else " MISSED"
            lines.append(
                f"| {name} | {s['ok_rps']:.1f} | {other['ok_rps']:.1f} | {slow:.2f}x{mark} | "
                f"{fmt(s['p50_ms'], '.2f')} | {fmt(other['p50_ms'], '.2f')} |"
            )
    return lines


# Issue 16: T tenants of N/T users cost the same per request as one tenant of N users.
TENANCY_TOLERANCE = 0.90


def tenancy_lines(result: dict[str, Any], ceiling: dict[str, Any]) -> list[str]:
    """Per database and size: each phase with one tenant and with T, side by side."""
    lines: list[str] = []
    done = [c for c in result["cases"] if c.get("scimbench")]
    for db, n in dict.fromkeys((c["db"], c["users"]) for c in done):
        same = {c.get("tenants", 1): c for c in done if c["db"] == db and c["users"] == n}
        one = same.get(1)
        for tenants, many in sorted(same.items()):
            if one is None or tenants == 1:
                continue
            lines += [
                "",
                f"{db}, {n:,} users: 1 tenant of {n:,} against {tenants:,} tenants of "
                f"{n // tenants:,} (each request for a random tenant; T ÷ 1 = req/s with "
                f"{tenants:,} tenants ÷ req/s with one; below {TENANCY_TOLERANCE:.2f}: SLOWER):",
                "",
                "| phase | req/s 1 | req/s T | T ÷ 1 | p50 ms 1 | p50 ms T | p99 ms 1 | p99 ms T "
                "| vs ceiling 1 | vs ceiling T |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            theirs = many["scimbench"]["phases"]
            for name, s in one["scimbench"]["phases"].items():
                other = theirs.get(name)
                if not other or not s["ok_rps"]:
                    continue
                share = other["ok_rps"] / s["ok_rps"]
                mark = "" if share >= TENANCY_TOLERANCE else " SLOWER"
                top = ceiling.get(name, {}).get("rps")
                lines.append(
                    f"| {name} | {s['ok_rps']:.1f} | {other['ok_rps']:.1f} | {share:.2f}{mark} | "
                    f"{fmt(s['p50_ms'], '.2f')} | {fmt(other['p50_ms'], '.2f')} | "
                    f"{fmt(s['p99_ms'], '.2f')} | {fmt(other['p99_ms'], '.2f')} | "
                    f"{fmt(s['ok_rps'] / top if top else None, '.2f')} | "
                    f"{fmt(other['ok_rps'] / top if top else None, '.2f')} |"
                )
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", help="comma list of sqlite,postgres (default both)")
    p.add_argument("--users", help="comma list of sizes (default 10000,1000000)")
    p.add_argument(
        "--tenants",
        help="comma list of tenant counts (default 1): with T > 1 the users are seeded into T "
        "tenants t0001… (N/T each, a token each) and each request goes to a random one; reads "
        "only: " + ",".join(TENANT_PHASES),
    )
    p.add_argument("--duration", type=float, help="seconds per timed phase (default 8)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per phase")
    p.add_argument("--concurrency", type=int, default=4, help="scimbench client threads")
    p.add_argument("--group-size", type=int, default=50, help="members per group (groups phases)")
    p.add_argument("--phases", help="comma list (default all): " + ",".join(ORDER))
    p.add_argument("--quick", action="store_true", help="10k users, sqlite, 3 s per phase")
    p.add_argument("--no-ceiling", dest="ceiling", action="store_false", help="skip the ceiling")
    p.add_argument("--batch", type=int, default=2000, help="users per bulk_create transaction")
    p.add_argument(
        "--state-users",
        type=int,
        default=100_000,
        help="at most this many seeded users (evenly spread) go to scimbench's --state file",
    )
    p.add_argument("--seed-timeout", type=float, default=3600.0, help="time cap for one seed")
    p.add_argument(
        "--big-group", type=int, default=100_000, help="members of the big group (default 100k)"
    )
    p.add_argument(
        "--spare-users", type=int, default=400, help="users kept out of the big group to add"
    )
    p.add_argument("--page-size", type=int, default=100, help="count= of list and cursor pages")
    p.add_argument("--seed-rng", type=int, default=1, help="RNG seed (users and picks)")
    args = p.parse_args(argv)
    args.db = (args.db or ("sqlite" if args.quick else "sqlite,postgres")).split(",")
    sizes = args.users or ("10000" if args.quick else "10000,1000000")
    args.users = [int(x.replace("_", "")) for x in sizes.split(",")]
    args.tenants = [int(x.replace("_", "")) for x in (args.tenants or "1").split(",")]
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    if bad := [d for d in args.db if d not in ("sqlite", "postgres")]:
        p.error(f"unknown --db {bad}")
    if any(n < 1 for n in args.users):
        p.error("--users must be positive")
    if any(t < 1 for t in args.tenants):
        p.error("--tenants must be positive")
    if bad := [(n, t) for n in args.users for t in args.tenants if n % t]:
        p.error(f"--users must be a multiple of --tenants (each tenant gets N/T): {bad}")
    several = max(args.tenants) > 1
    # The same phases for every case of a run, so one tenant and T compare like for like.
    wanted = args.phases.split(",") if args.phases else list(TENANT_PHASES if several else ORDER)
    if bad := [x for x in wanted if x not in KNOWN_PHASES]:
        p.error(f"unknown phase(s) {bad}; known: {','.join(ORDER)}")
    if several and (bad := [x for x in wanted if x not in TENANT_PHASES]):
        p.error(f"with --tenants above 1 only {','.join(TENANT_PHASES)} run; not {bad}")
    args.phase_list = [x for x in ORDER if x in wanted]
    return args


def label(case: dict[str, Any]) -> str:
    """`sqlite 1,000,000 users`, or `… in 1,000 tenants`."""
    tenants = case.get("tenants", 1)
    where = f" in {tenants:,} tenants" if tenants > 1 else ""
    return f"{case['db']} {case['users']:,} users{where}"


def run_case(
    kind: str, n: int, tenants: int, args: argparse.Namespace, tmp: Path, stamp: str
) -> dict[str, Any]:
    case: dict[str, Any] = {"db": kind, "users": n, "tenants": tenants}
    case["loadavg_before"] = os.getloadavg()
    name = label(case)
    tag = f"{stamp}_{kind}_{n}_{tenants}_{os.getpid()}"
    url, db_cleanup = create_database(kind, tmp, tag)
    try:
        log(f"{name}: migrate + seed")
        state = tmp / f"{tag}.state.json"
        port = free_port()
        secret = secrets.token_urlsafe(32)
        base = f"http://127.0.0.1:{port}/scim/v2"
        prepared = prepare(kind, url, n, tenants, args, state, base, secret)
        case["seed"] = prepared["seed"]
        seed = case["seed"]
        log(
            f"{name}: seeded in {seed['seed_s']:.1f} s "
            f"({seed['seed_users_per_s']:,.0f}/s), ANALYZE {seed['analyze_s']:.1f} s, "
            f"{(seed['db_bytes'] or 0) / 2**20:.0f} MiB"
        )
        # As `make run` and the Procfile's release step do; also applies migrations that
        # appeared while a long seed ran (the server imports the code as it is now).
        started = time.perf_counter()
        upgrade = subprocess.run(
            [str(Path(sys.executable).with_name("lms-scim")), "db", "upgrade"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if upgrade.returncode != 0:
            raise RuntimeError(f"lms-scim db upgrade failed:\n{upgrade.stderr[-2000:]}")
        seed["upgrade_before_start_s"] = round(time.perf_counter() - started, 2)
        case["hash_s"] = hash_seconds()
        env = {"DATABASE_URL": url, "SECRET_KEY": secret}
        server = Server(
            f"lms-scim {kind} {n} {tenants}",
            "app:create_app()",
            ROOT,
            env,
            tmp / f"{tag}.server.log",
            port,
        )
        try:
            server.wait_ready("/healthz")
            phase_list = list(args.phase_list)
            has_groups = server.get("/scim/v2/Groups?count=1", prepared["token"]) == 200
            case["groups_supported"] = has_groups
            if not has_groups:
                phase_list = [p for p in phase_list if p not in GROUP_PHASES]
            ignored = IGNORED_PASSWORD_PHASE in phase_list
            phase_list = [p for p in phase_list if p != IGNORED_PASSWORD_PHASE]
            log(f"{name}: scimbench {','.join(phase_list)}")
            case["phases_run"] = phase_list
            case["scimbench"] = run_scimbench(
                server,
                prepared["token"],
                state,
                prepared["seed"]["state_users"],
                phase_list,
                args,
                tmp / f"{tag}.result.json",
                check=True,
            )
            case["memory"] = server.memory()
            case["loadavg_after"] = os.getloadavg()
            case["server_log_tail"] = server.tail(20)
        finally:
            server.close()
        if ignored:
            # The same creates, with passwords, against PASSWORD_POLICY=ignore.
            port = free_port()
            server = Server(
                f"lms-scim {kind} {n} PASSWORD_POLICY=ignore",
                "app:create_app()",
                ROOT,
                {**env, "PASSWORD_POLICY": "ignore"},
                tmp / f"{tag}.ignore.log",
                port,
            )
            try:
                server.wait_ready("/healthz")
                log(f"{name}: scimbench {IGNORED_PASSWORD_PHASE}")
                extra = run_scimbench(
                    server,
                    prepared["token"],
                    state,
                    prepared["seed"]["state_users"],
                    [IGNORED_PASSWORD_PHASE],
                    args,
                    tmp / f"{tag}.ignore.json",
                    check=True,
                )
                case["scimbench"]["phases"].update(extra["phases"])
                case["phases_run"].append(IGNORED_PASSWORD_PHASE)
            finally:
                server.close()
    except Exception as exc:  # one failed case must not lose the others' results
        log(f"{name}: FAILED: {exc!r}")
        case["error"] = repr(exc)
    finally:
        CLEANUP.run(db_cleanup)
    return case


def run_ceiling(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    state = tmp / "ceiling.state.json"
    write_ceiling_state(state, 1000)
    server = Server(
        "ceiling",
        "ceiling_app:app",
        BENCH,
        {"BENCH_TOKEN": token},
        tmp / "ceiling.log",
        free_port(),
    )
    try:
        server.wait_ready("/scim/v2/Users")
        log(f"ceiling: scimbench --no-check {','.join(args.phase_list)}")
        before = os.getloadavg()
        out = run_scimbench(
            server, token, state, 1000, args.phase_list, args, tmp / "ceiling.json", check=False
        )
        return {**out, "loadavg_before": before, "loadavg_after": os.getloadavg()}
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    atexit.register(CLEANUP.all)
    check_generator("check", args.seed_rng)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="lms-scim-bench-"))
    CLEANUP.push("tmp", lambda: shutil.rmtree(tmp, ignore_errors=True))
    result: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: v for k, v in vars(args).items()},
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "cases": [],
    }
    started = time.monotonic()
    try:
        if args.ceiling:
            result["ceiling"] = run_ceiling(args, tmp)
        for kind in args.db:
            for n in args.users:
                for tenants in args.tenants:
                    result["cases"].append(run_case(kind, n, tenants, args, tmp, stamp))
    finally:
        CLEANUP.all()
    result["total_s"] = round(time.monotonic() - started, 1)
    text = tables(result)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(result, indent=1))
    (RESULTS / "latest.md").write_text(text)
    (RESULTS / "latest.json").write_text(out.read_text())
    print(text)
    log(f"done in {result['total_s']:.0f} s: {out.relative_to(ROOT)}, bench/results/latest.md")
    failed = any(c.get("error") for c in result["cases"])
    wrong = any(
        s["status"] != "ok"
        for c in result["cases"]
        for s in (c.get("scimbench") or {}).get("phases", {}).values()
    )
    return 1 if failed else 2 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
