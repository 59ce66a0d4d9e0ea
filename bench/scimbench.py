#!/usr/bin/env python3
# Copied unchanged from the team's shared bench (/work/shared/bench); edit it there.
"""scimbench - a server-agnostic SCIM 2.0 (RFC 7643/7644) load and correctness harness.

It drives /Users and /Groups the way an IdP such as Okta does, checks every
response, and reports requests/s, p50/p95/p99 latency and wrong answers per
phase.  A phase with wrong answers is marked WRONG and gets no score: a fast
server that answers wrongly must not win.

Usage:
  scimbench.py --base http://127.0.0.1:8000/scim/v2 --token T --users N \
               [--concurrency C] [--duration S] [--json OUT]

Phases (in order; pick a subset with --phases):
  seed          POST /Users for N users (count-bounded, not time-bounded)
  lookup        GET /Users?filter=userName eq "..." for random existing users
  lookup_miss   same for a userName that does not exist (Okta's pre-create check)
  get           GET /Users/{id}
  put           PUT /Users/{id} (profile replace)
  patch         PATCH /Users/{id} active false / true (PatchOp replace)
  list_start    GET /Users?startIndex=1&count=100
  list_mid      GET /Users?startIndex=total/2&count=100
  list_end      GET /Users?startIndex=total-99&count=100
  groups_create POST /Groups with members [] (Okta group push), then one PATCH
                add of --group-size members per group (reported as groups_fill)
  groups_patch  PATCH add one member / remove it again (each worker owns a group)
  conflict      POST an existing userName; 409 expected

Safety: only loopback targets are accepted (127.0.0.0/8, ::1, localhost);
every timed phase stops at --duration seconds or --max-requests requests,
whichever comes first, and the seed stops at N users or --seed-timeout.

Pure Python standard library (http.client + threads): no dependency needed.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import ipaddress
import itertools
import json
import math
import os
import platform
import random
import socket
import string
import sys
import threading
import time
import urllib.parse

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

ALL_PHASES = [
    "seed", "lookup", "lookup_miss", "get", "put", "patch",
    "list_start", "list_mid", "list_end", "groups_create", "groups_patch",
    "conflict",
]

GIVEN = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken",
         "Dennis", "Frances", "John", "Radia", "Leslie", "Niklaus", "Tim", "Shafi"]
FAMILY = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton",
          "Thompson", "Ritchie", "Allen", "McCarthy", "Perlman", "Lamport", "Wirth",
          "Berners-Lee", "Goldwasser"]


class CheckError(Exception):
    """A response that was received but is wrong."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


# --------------------------------------------------------------------------- HTTP

def check_loopback(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        sys.exit(f"cannot resolve {host!r}: {exc}")
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if not addr.is_loopback:
            sys.exit(f"refusing non-loopback target {host!r} ({addr}); scimbench "
                     "only load-tests servers on this machine")


class Client:
    """One keep-alive HTTP/1.1 connection (one per worker thread)."""

    def __init__(self, base: str, token: str, timeout: float):
        u = urllib.parse.urlsplit(base)
        if u.scheme != "http":
            raise SystemExit("only http:// base URLs are supported")
        self.host = u.hostname
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.auth = "Bearer " + token
        self.conn = None
        self.used = False

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.used = False

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body=None):
        """Return (status, parsed_json_or_None, raw_bytes)."""
        data = None
        headers = {"Authorization": self.auth, "Accept": "application/scim+json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/scim+json"
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            reused = self.used
            try:
                self.conn.request(method, self.prefix + path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                self.used = True
                if resp.will_close:
                    self.close()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError, http.client.CannotSendRequest,
                    http.client.BadStatusLine) as exc:
                # An idle keep-alive connection closed by the server: retry once
                # on a fresh connection.  A fresh connection failing is an error.
                self.close()
                if attempt == 1 or not reused:
                    raise
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return resp.status, parsed, raw


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


# --------------------------------------------------------------------------- stats

def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


class PhaseResult:
    def __init__(self, name: str):
        self.name = name
        self.lat = []          # seconds, one per measured request
        self.ok = 0
        self.errors = 0
        self.unverified = 0    # accepted but not checkable (e.g. 204 on PATCH)
        self.kinds = collections.Counter()
        self.samples = []
        self.t0 = None
        self.t1 = None
        self.lock = threading.Lock()
        self.notes = []

    def add(self, latency, err: CheckError | None, unverified=False):
        with self.lock:
            self.lat.append(latency)
            if err is None:
                self.ok += 1
                if unverified:
                    self.unverified += 1
            else:
                self.errors += 1
                self.kinds[err.kind] += 1
                if len(self.samples) < 5:
                    self.samples.append(" ".join(f"{err.kind}: {err.detail}".split())[:300])

    def add_post_error(self, err: CheckError):
        """A wrong answer found by a verification request after the phase (not timed)."""
        with self.lock:
            self.errors += 1
            self.kinds[err.kind] += 1
            if len(self.samples) < 5:
                self.samples.append(" ".join(f"post-check {err.kind}: {err.detail}".split())[:300])

    def summary(self, checked: bool):
        lat = sorted(self.lat)
        n = len(lat)
        wall = (self.t1 - self.t0) if (self.t0 and self.t1) else 0.0
        ms = lambda v: None if v is None else round(v * 1000.0, 3)
        status = "ok" if self.errors == 0 else "WRONG"
        if not checked:
            status = "unchecked"
        if n == 0:
            status = "no-data" if self.errors == 0 else "WRONG"
        rps = n / wall if wall > 0 else 0.0
        ok_rps = self.ok / wall if wall > 0 else 0.0
        return {
            "requests": n,
            "ok": self.ok,
            "ok_pct": round(100.0 * self.ok / n, 2) if n else 0.0,
            "errors": self.errors,
            "unverified": self.unverified,
            "error_kinds": dict(self.kinds),
            "error_samples": self.samples,
            "wall_s": round(wall, 3),
            "rps": round(rps, 1),
            "ok_rps": round(ok_rps, 1),
            "score_rps": round(ok_rps, 1) if (status == "ok") else None,
            "p50_ms": ms(percentile(lat, 50)),
            "p95_ms": ms(percentile(lat, 95)),
            "p99_ms": ms(percentile(lat, 99)),
            "mean_ms": ms(sum(lat) / n) if n else None,
            "max_ms": ms(lat[-1]) if n else None,
            "status": status,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- payloads

def okta_id(rng: random.Random) -> str:
    return "00u" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(17))


def user_payload(u: dict, password: bool, given=None):
    body = {
        "schemas": [USER_SCHEMA],
        "userName": u["userName"],
        "name": {"givenName": given or u["given"], "familyName": u["family"]},
        "emails": [{"primary": True, "value": u["userName"], "type": "work"}],
        "displayName": f"{given or u['given']} {u['family']}",
        "locale": "en-US",
        "externalId": u["externalId"],
        "groups": [],
        "active": True,
    }
    if password:
        body["password"] = u.get("password") or "Pw-" + u["externalId"][3:13] + "!9a"
    return body


# --------------------------------------------------------------------------- checks

def expect_status(status, want, raw):
    if isinstance(want, int):
        want = (want,)
    if status not in want:
        raise CheckError(f"status {status} (want {'/'.join(map(str, want))})",
                         raw[:200].decode("utf-8", "replace"))


def same_user_name(a, b):
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def check_user(doc, u, id_=None):
    if not isinstance(doc, dict):
        raise CheckError("body not a JSON object")
    if id_ is not None and str(doc.get("id")) != str(id_):
        raise CheckError("wrong id", f"got {doc.get('id')!r} want {id_!r}")
    if not doc.get("id"):
        raise CheckError("missing id")
    if not same_user_name(doc.get("userName"), u["userName"]):
        raise CheckError("wrong userName", f"got {doc.get('userName')!r} want {u['userName']!r}")
    if "password" in doc:
        raise CheckError("password returned", "password must be returned=never")


def list_resources(doc):
    if not isinstance(doc, dict):
        raise CheckError("body not a JSON object")
    if LIST_SCHEMA not in (doc.get("schemas") or []):
        raise CheckError("missing ListResponse schema")
    tr = doc.get("totalResults")
    if not isinstance(tr, int):
        raise CheckError("missing totalResults")
    res = doc.get("Resources")
    if res is None:
        res = []
    if not isinstance(res, list):
        raise CheckError("Resources not a list")
    return tr, res


# --------------------------------------------------------------------------- runner

class Bench:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed_rng)
        self.users = []          # dicts: id, userName, externalId, given, family
        self.groups = []         # dicts: id, displayName, base_members(list of user ids)
        self.results = collections.OrderedDict()
        self.checked = not args.no_check
        self.total = None
        self.run_tag = "%06x" % random.SystemRandom().getrandbits(24)

    # ---- generic phase runner -------------------------------------------------
    def run_phase(self, name, op, *, count=None, duration=None, warmup=0.0,
                  concurrency=None, worker_init=None):
        """op(ctx, client, i) performs ONE measured request and raises CheckError
        if it is wrong; it returns True when the answer could not be verified.
        Bounded: count requests (if given) and duration seconds (if given)."""
        a = self.a
        C = concurrency or a.concurrency
        res = PhaseResult(name)
        counter = itertools.count()
        limit = count if count is not None else a.max_requests
        start = time.monotonic()
        deadline = start + (duration if duration is not None else a.seed_timeout)
        measure_from = start + warmup
        stop = threading.Event()
        first_measured = [None]
        last_done = [start]
        mlock = threading.Lock()

        def worker(wid):
            client = Client(a.base, a.token, a.timeout)
            ctx = {"wid": wid, "rng": random.Random(a.seed_rng * 1000 + wid + sum(map(ord, name))),
                   "k": 0}
            if worker_init:
                worker_init(ctx)
            try:
                while not stop.is_set():
                    now = time.monotonic()
                    if now >= deadline:
                        break
                    i = next(counter)
                    if i >= limit:
                        break
                    t0 = time.perf_counter()
                    err = None
                    unver = False
                    try:
                        unver = bool(op(ctx, client, i))
                    except CheckError as e:
                        err = e
                    except (OSError, http.client.HTTPException) as e:
                        err = CheckError("transport " + type(e).__name__, str(e))
                        client.close()
                    except Exception as e:  # a bug or an answer the op could not digest
                        err = CheckError("unexpected " + type(e).__name__, repr(e))
                    lat = time.perf_counter() - t0
                    ctx["k"] += 1
                    if time.monotonic() >= measure_from or count is not None:
                        with mlock:
                            if first_measured[0] is None:
                                first_measured[0] = time.monotonic() - lat
                            last_done[0] = max(last_done[0], time.monotonic())
                        res.add(lat, err, unver)
            finally:
                client.close()

        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(C)]
        for t in threads:
            t.start()
        hard_deadline = deadline + a.timeout + 5
        for t in threads:
            t.join(max(0.0, hard_deadline - time.monotonic()))
        stop.set()
        res.t0 = first_measured[0] or start
        res.t1 = last_done[0]
        self.results[name] = res
        s = res.summary(self.checked)
        if not a.quiet:
            print(f"  {name:<14} {s['requests']:>7} req  {s['rps']:>8.1f} req/s  "
                  f"p50 {fmt(s['p50_ms'])}  p99 {fmt(s['p99_ms'])} ms  "
                  f"errors {s['errors']}  [{s['status']}]", file=sys.stderr, flush=True)
        return res

    # ---- phases -------------------------------------------------------------------
    def make_users(self, n):
        rng = random.Random(self.a.seed_rng)
        prefix = self.a.prefix or ("b" + self.run_tag)
        out = []
        for i in range(n):
            out.append({
                "userName": f"{prefix}.user{i:07d}@example.test",
                "externalId": okta_id(rng),
                "given": GIVEN[i % len(GIVEN)],
                "family": FAMILY[(i // len(GIVEN)) % len(FAMILY)],
            })
        return out

    def phase_seed(self):
        a = self.a
        todo = self.make_users(a.users)
        created = [None] * len(todo)

        def op(ctx, c, i):
            u = todo[i]
            st, doc, raw = c.request("POST", "/Users", user_payload(u, a.password))
            if not self.checked:
                created[i] = dict(u, id=(doc or {}).get("id") or str(i + 1))
                return True
            expect_status(st, 201, raw)
            check_user(doc, u)
            if doc.get("active") is not True:
                raise CheckError("active not true")
            created[i] = dict(u, id=str(doc["id"]))
            return False

        self.run_phase("seed", op, count=len(todo), duration=a.seed_timeout,
                       concurrency=a.seed_concurrency or a.concurrency)
        self.users = [u for u in created if u is not None]
        if a.state:
            with open(a.state, "w") as f:
                json.dump({"base": a.base, "users": self.users}, f)

    def post_check(self, res, fn, items):
        """Untimed verification GETs after a phase; wrong answers count as phase errors."""
        c = Client(self.a.base, self.a.token, self.a.timeout)
        done = 0
        try:
            for item in items:
                try:
                    fn(c, item)
                except CheckError as e:
                    res.add_post_error(e)
                except (OSError, http.client.HTTPException) as e:
                    res.add_post_error(CheckError("transport " + type(e).__name__, str(e)))
                    c.close()
                done += 1
        finally:
            c.close()
        res.notes.append(f"post-check GETs: {done}")

    def pick(self, ctx):
        return self.users[ctx["rng"].randrange(len(self.users))]

    def phase_lookup(self):
        def op(ctx, c, i):
            u = self.pick(ctx)
            st, doc, raw = c.request("GET", "/Users?filter=" + q(f'userName eq "{u["userName"]}"'))
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            tr, res = list_resources(doc)
            if tr != 1 or len(res) != 1:
                raise CheckError("filter result count", f"totalResults={tr} len={len(res)} for {u['userName']}")
            check_user(res[0], u, u["id"])
            return False
        self.run_phase("lookup", op, duration=self.a.duration, warmup=self.a.warmup)

    def phase_lookup_miss(self):
        def op(ctx, c, i):
            name = f"nobody.{self.run_tag}.{ctx['wid']}.{i}@example.test"
            st, doc, raw = c.request("GET", "/Users?filter=" + q(f'userName eq "{name}"'))
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            tr, res = list_resources(doc)
            if tr != 0 or res:
                raise CheckError("filter miss not empty", f"totalResults={tr} len={len(res)}")
            return False
        self.run_phase("lookup_miss", op, duration=self.a.duration, warmup=self.a.warmup)

    def phase_get(self):
        def op(ctx, c, i):
            u = self.pick(ctx)
            st, doc, raw = c.request("GET", "/Users/" + q(u["id"]))
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            check_user(doc, u, u["id"])
            return False
        self.run_phase("get", op, duration=self.a.duration, warmup=self.a.warmup)

    def phase_put(self):
        def op(ctx, c, i):
            u = self.pick(ctx)
            given = f"{u['given']}{self.run_tag}{ctx['wid']}x{i}"
            st, doc, raw = c.request("PUT", "/Users/" + q(u["id"]), user_payload(u, False, given))
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            check_user(doc, u, u["id"])
            got = (doc.get("name") or {}).get("givenName")
            if got != given:
                raise CheckError("PUT not applied", f"givenName {got!r} want {given!r}")
            return False
        self.run_phase("put", op, duration=self.a.duration, warmup=self.a.warmup)

    def phase_patch(self):
        last = {}

        def op(ctx, c, i):
            # even ops: deactivate a fresh random user; odd ops: reactivate it
            if ctx["k"] % 2 == 0:
                ctx["u"] = self.pick(ctx)
                active = False
            else:
                active = True
            u = ctx["u"]
            body = {"schemas": [PATCH_SCHEMA],
                    "Operations": [{"op": "replace", "value": {"active": active}}]}
            st, doc, raw = c.request("PATCH", "/Users/" + q(u["id"]), body)
            if st in (200, 204):
                last[ctx["wid"]] = (u, active)
            if not self.checked:
                return True
            expect_status(st, (200, 204), raw)
            if st == 204:
                return True
            check_user(doc, u, u["id"])
            if doc.get("active") is not active:
                raise CheckError("PATCH not applied", f"active={doc.get('active')!r} want {active}")
            return False
        r = self.run_phase("patch", op, duration=self.a.duration, warmup=self.a.warmup)
        # verify the final state of each worker's last user (catches a 204 that did nothing)
        if self.checked:
            def verify(c, item):
                u, active = item
                st, doc, raw = c.request("GET", "/Users/" + q(u["id"]))
                expect_status(st, 200, raw)
                check_user(doc, u, u["id"])
                if doc.get("active") is not active:
                    raise CheckError("PATCH not applied (post-check GET)",
                                     f"active={doc.get('active')!r} want {active}")
            self.post_check(r, verify, list(last.values()))

    def probe_total(self):
        c = Client(self.a.base, self.a.token, self.a.timeout)
        try:
            st, doc, raw = c.request("GET", "/Users?startIndex=1&count=1")
        finally:
            c.close()
        if isinstance(doc, dict) and isinstance(doc.get("totalResults"), int):
            return doc["totalResults"]
        return len(self.users)

    def phase_list(self, where):
        a = self.a
        if self.total is None:
            self.total = self.probe_total()
        total = self.total
        page = a.page_size
        if where == "start":
            start = 1
        elif where == "mid":
            start = max(1, total // 2)
        else:
            start = max(1, total - page + 1)
        want_len = max(0, min(page, total - start + 1))
        res_obj = None

        def op(ctx, c, i):
            st, doc, raw = c.request("GET", f"/Users?startIndex={start}&count={page}")
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            tr, res = list_resources(doc)
            if tr != total:
                raise CheckError("totalResults changed", f"{tr} != {total}")
            if tr < len(self.users):
                raise CheckError("totalResults < seeded users", f"{tr} < {len(self.users)}")
            if len(res) != want_len:
                raise CheckError("page length", f"got {len(res)} want {want_len} at startIndex={start}")
            if doc.get("startIndex") not in (None, start):
                raise CheckError("startIndex echoed wrong", f"{doc.get('startIndex')} != {start}")
            ipp = doc.get("itemsPerPage")
            if ipp is not None and ipp != len(res):
                raise CheckError("itemsPerPage != len(Resources)", f"{ipp} != {len(res)}")
            ids = set()
            for r in res:
                if not isinstance(r, dict) or not r.get("id") or not r.get("userName"):
                    raise CheckError("resource without id/userName")
                ids.add(str(r["id"]))
            if len(ids) != len(res):
                raise CheckError("duplicate ids in page")
            return False
        res_obj = self.run_phase("list_" + where, op, duration=a.duration, warmup=a.warmup)
        res_obj.notes.append(f"totalResults={total} startIndex={start} count={page}")

    def phase_groups(self):
        a = self.a
        G = max(a.groups, a.concurrency)
        size = min(a.group_size, max(0, len(self.users) - 1))
        grng = random.Random(a.seed_rng + 7)
        specs = []
        for g in range(G):
            members = grng.sample(range(len(self.users)), size) if size else []
            specs.append({"displayName": f"bench-{self.run_tag}-group-{g:04d}",
                          "base": [self.users[m]["id"] for m in members]})
        created = [None] * G

        def op_create(ctx, c, i):
            sp = specs[i]
            body = {"schemas": [GROUP_SCHEMA], "displayName": sp["displayName"], "members": []}
            st, doc, raw = c.request("POST", "/Groups", body)
            if not self.checked:
                created[i] = dict(sp, id=(doc or {}).get("id") or str(i + 1))
                return True
            expect_status(st, 201, raw)
            if not isinstance(doc, dict) or not doc.get("id"):
                raise CheckError("missing id")
            if doc.get("displayName") != sp["displayName"]:
                raise CheckError("wrong displayName", f"{doc.get('displayName')!r}")
            if doc.get("members"):
                raise CheckError("members not empty on create")
            created[i] = dict(sp, id=str(doc["id"]))
            return False
        self.run_phase("groups_create", op_create, count=G, duration=a.seed_timeout)
        self.groups = [g for g in created if g is not None]
        if not self.groups:
            return

        def check_members(doc, must_have, must_not=(), exact_len=None):
            if not isinstance(doc, dict):
                raise CheckError("body not a JSON object")
            if "members" not in doc:
                return True  # 200 without members: cannot verify
            vals = {str(m.get("value")) for m in (doc.get("members") or []) if isinstance(m, dict)}
            missing = [m for m in must_have if str(m) not in vals]
            if missing:
                raise CheckError("member missing after add", f"{len(missing)} missing, e.g. {missing[0]}")
            bad = [m for m in must_not if str(m) in vals]
            if bad:
                raise CheckError("member still present after remove", str(bad[0]))
            if exact_len is not None and len(vals) != exact_len:
                raise CheckError("member count", f"{len(vals)} != {exact_len}")
            return False

        def op_fill(ctx, c, i):
            g = self.groups[i]
            body = {"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": m} for m in g["base"]]}]}
            st, doc, raw = c.request("PATCH", "/Groups/" + q(g["id"]), body)
            if not self.checked:
                return True
            expect_status(st, (200, 204), raw)
            if st == 204:
                return True
            return check_members(doc, g["base"], exact_len=len(set(g["base"])))
        def verify_group(c, item):
            g, must_have, must_not, n = item
            st, doc, raw = c.request("GET", "/Groups/" + q(g["id"]))
            expect_status(st, 200, raw)
            if not isinstance(doc, dict) or "members" not in doc and n:
                raise CheckError("GET group without members (post-check)")
            check_members(doc, must_have, must_not, exact_len=n)

        if size:
            rf = self.run_phase("groups_fill", op_fill, count=len(self.groups), duration=a.seed_timeout)
            if self.checked:
                self.post_check(rf, verify_group,
                                [(g, g["base"], (), len(set(g["base"]))) for g in self.groups[:5]])

        n_groups = len(self.groups)
        glast = {}

        def init(ctx):
            ctx["g"] = self.groups[ctx["wid"] % n_groups]
            base = set(ctx["g"]["base"])
            ctx["extra"] = ([u["id"] for u in self.users if u["id"] not in base][:10000]
                            or [u["id"] for u in self.users])

        def op_patch(ctx, c, i):
            g = ctx["g"]
            if ctx["k"] % 2 == 0:
                m = ctx["rng"].choice(ctx["extra"])
                ctx["m"] = m
                ops = [{"op": "add", "path": "members", "value": [{"value": m}]}]
                adding = True
            else:
                m = ctx["m"]
                if a.remove_style == "filter":
                    ops = [{"op": "remove", "path": f'members[value eq "{m}"]'}]
                else:
                    ops = [{"op": "remove", "path": "members", "value": [{"value": m}]}]
                adding = False
            st, doc, raw = c.request("PATCH", "/Groups/" + q(g["id"]),
                                     {"schemas": [PATCH_SCHEMA], "Operations": ops})
            if st in (200, 204):
                glast[ctx["wid"]] = (g, [m] if adding else [], [] if adding else [m],
                                     len(set(g["base"])) + (1 if adding else 0))
            if not self.checked:
                return True
            expect_status(st, (200, 204), raw)
            if st == 204:
                return True
            n = len(set(g["base"])) + (1 if adding else 0)
            if adding:
                return check_members(doc, [m], exact_len=n)
            return check_members(doc, [], [m], exact_len=n)

        if "groups_patch" not in self.phases:
            return
        # each worker owns one group: concurrency capped at the number of groups
        rp = self.run_phase("groups_patch", op_patch, duration=a.duration, warmup=a.warmup,
                            concurrency=min(a.concurrency, n_groups), worker_init=init)
        if self.checked:
            self.post_check(rp, verify_group, list(glast.values()))

    def phase_conflict(self):
        a = self.a
        hit = []

        def op(ctx, c, i):
            u = self.pick(ctx)
            dup = dict(u, externalId=okta_id(ctx["rng"]))
            st, doc, raw = c.request("POST", "/Users", user_payload(dup, a.password))
            if not self.checked:
                return True
            if len(hit) < 20:
                hit.append(u)
            expect_status(st, 409, raw)
            return False
        r = self.run_phase("conflict", op, duration=a.duration, warmup=a.warmup)
        if self.checked and hit:
            # the rejected POSTs must not have created duplicates
            c = Client(a.base, a.token, a.timeout)
            try:
                for u in hit[:10]:
                    st, doc, raw = c.request("GET", "/Users?filter=" + q(f'userName eq "{u["userName"]}"'))
                    try:
                        expect_status(st, 200, raw)
                        tr, res = list_resources(doc)
                        if tr != 1:
                            raise CheckError("duplicate created by conflicting POST",
                                             f"{u['userName']} totalResults={tr}")
                    except CheckError as e:
                        r.add_post_error(e)
            finally:
                c.close()

    # ---- driver ---------------------------------------------------------------------
    def run(self):
        a = self.a
        phases = a.phases.split(",") if a.phases else list(ALL_PHASES)
        self.phases = phases
        bad = [p for p in phases if p not in ALL_PHASES]
        if bad:
            sys.exit(f"unknown phase(s): {bad}; known: {ALL_PHASES}")
        if "seed" in phases:
            self.phase_seed()
        else:
            if not a.state or not os.path.exists(a.state):
                sys.exit("without the seed phase, --state FILE from an earlier seeding run is needed")
            with open(a.state) as f:
                self.users = json.load(f)["users"][: a.users]
        if not self.users:
            print("no users available (seed failed?): later phases skipped", file=sys.stderr)
            return
        self.warm()
        for p in phases:
            if p == "seed":
                continue
            if p.startswith("list_"):
                self.phase_list(p[5:])
            elif p == "groups_create":
                self.phase_groups()
            elif p == "groups_patch":
                if "groups_create" not in phases:
                    print("  groups_patch needs groups_create; skipped", file=sys.stderr)
            else:
                getattr(self, "phase_" + p)()

    def warm(self):
        c = Client(self.a.base, self.a.token, self.a.timeout)
        try:
            for _ in range(min(20, self.a.warm_requests)):
                c.request("GET", "/Users/" + q(self.users[0]["id"]))
        except (OSError, http.client.HTTPException):
            pass
        finally:
            c.close()

    def report(self):
        a = self.a
        out = {
            "tool": "scimbench/1",
            "label": a.label,
            "base": a.base,
            "users_requested": a.users,
            "users_available": len(self.users),
            "concurrency": a.concurrency,
            "duration_s": a.duration,
            "warmup_s": a.warmup,
            "page_size": a.page_size,
            "password_in_post": a.password,
            "remove_style": a.remove_style,
            "checked": self.checked,
            "started_at": self.started_at,
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                     "platform": platform.platform()},
            "argv": sys.argv[1:],
            "phases": {n: r.summary(self.checked) for n, r in self.results.items()},
        }
        out["argv"] = redact(sys.argv[1:])
        out["valid"] = all(p["status"] == "ok" for p in out["phases"].values())
        return out


def redact(argv):
    res, hide = [], False
    for x in argv:
        if hide:
            res.append("***")
            hide = False
            continue
        if x == "--token":
            hide = True
        elif x.startswith("--token="):
            x = "--token=***"
        res.append(x)
    return res


def fmt(v):
    return "    -" if v is None else f"{v:7.2f}"


def print_table(out):
    print(f"\nscimbench  {out['label'] or out['base']}  users={out['users_available']}  "
          f"C={out['concurrency']}  duration={out['duration_s']}s  checked={out['checked']}")
    hdr = f"{'phase':<14} {'req':>7} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}  status"
    print(hdr)
    print("-" * len(hdr))
    for name, s in out["phases"].items():
        print(f"{name:<14} {s['requests']:>7} {s['rps']:>9.1f} {fmt(s['p50_ms']):>8} "
              f"{fmt(s['p95_ms']):>8} {fmt(s['p99_ms']):>8} {s['errors']:>7}  {s['status']}")
        if s["errors"]:
            for k, v in s["error_kinds"].items():
                print(f"{'':<14}   {v} x {k}")
            for smp in s["error_samples"][:2]:
                print(f"{'':<14}   e.g. {smp}")
        if s["unverified"] and out["checked"]:
            print(f"{'':<14}   {s['unverified']} answers accepted unverified (e.g. 204)")
    print("valid (every phase correct):", out["valid"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="SCIM base URL, e.g. http://127.0.0.1:8000/scim/v2")
    p.add_argument("--token", default=os.environ.get("SCIMBENCH_TOKEN", ""),
                   help="bearer token (or env SCIMBENCH_TOKEN)")
    p.add_argument("--users", type=int, required=True, help="N users to seed / use")
    p.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per timed phase (default 10)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds at the start of each timed phase not measured (default 1)")
    p.add_argument("--max-requests", type=int, default=100000,
                   help="request cap per timed phase (default 100000)")
    p.add_argument("--json", help="write the full result as JSON to this file")
    p.add_argument("--phases", help="comma list, default all: " + ",".join(ALL_PHASES))
    p.add_argument("--state", help="save seeded users here (with seed) / load them (without seed)")
    p.add_argument("--prefix", help="userName prefix (default: random per run)")
    p.add_argument("--seed-concurrency", type=int, help="client threads for the seed (default --concurrency)")
    p.add_argument("--seed-timeout", type=float, default=3600.0, help="time cap for seed/create phases")
    p.add_argument("--page-size", type=int, default=100, help="count= for list phases (default 100)")
    p.add_argument("--groups", type=int, default=20, help="groups to create (>= concurrency)")
    p.add_argument("--group-size", type=int, default=50, help="members added to each group before groups_patch")
    p.add_argument("--remove-style", choices=["filter", "value"], default="filter",
                   help='filter: path members[value eq "id"] (RFC 7644/Okta); '
                        "value: path members + value [{value:id}] (Azure AD style)")
    p.add_argument("--no-password", dest="password", action="store_false",
                   help="leave password out of POST payloads")
    p.add_argument("--no-check", action="store_true",
                   help="do not check answers (only for a fixed-body ceiling server; phases show 'unchecked')")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    p.add_argument("--seed-rng", type=int, default=1, help="RNG seed for payloads and picks")
    p.add_argument("--warm-requests", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--label", default="", help="free text label stored in the JSON")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    host = urllib.parse.urlsplit(args.base).hostname or ""
    check_loopback(host)
    if args.users < 1:
        p.error("--users must be >= 1")
    b = Bench(args)
    b.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    b.run()
    out = b.report()
    print_table(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if out["valid"] else 2


if __name__ == "__main__":
    sys.exit(main())
