#!/usr/bin/env python3
"""scimbench plus the lookups lms-scim's IdPs send besides `userName eq`.

* `lookup_external_id`: `GET /Users?filter=externalId eq "…"` (Okta and Entra match on the
  IdP's own id once a user is linked).
* `lookup_email`: `GET /Users?filter=emails[type eq "work"].value eq "…"` (Entra's matching
  on the work e-mail; RFC 7644 §3.4.2.2 value path followed by a sub-attribute).

Every answer is checked like scimbench's `lookup`: 200, a ListResponse with exactly one
resource, the right id and userName (and for `lookup_external_id` the right externalId).

The phases issue 10 asks for beyond scimbench's:

* `create`, `create_password`: `POST /Users` of new users without and with a password (201, the
  user as sent, active, no password in the answer). `create_password_ignored` is the same
  request against a server with `PASSWORD_POLICY=ignore` (run.py starts that server).
* `cursor_start`, `cursor_end`: RFC 9865 pages of `--page-size` users, the first (`cursor=`)
  and the last (a cursor run.py signed for the position 100 users before the end).
* `big_group_lookup`: `GET /Groups?filter=displayName eq "…"&excludedAttributes=members` of a
  group run.py seeded with up to 100,000 members (one group, no members in the answer).
* `big_group_patch`: add one user to that group, then remove it again (Okta's forms), each
  answer 204 or 200; afterwards the group has exactly its seeded members.
* `big_group_get`: full `GET /Groups/{id}` of it, every member there (a few requests).

Issue 18, OAuth (one tenant):

* `lookup_jwt`: `lookup` with a JWT access token (RFC 9068) that the phase fetches once from
  `POST /oauth/token` for the client run.py registered, instead of the static token.
* `oauth_token`: `POST /oauth/token` (client credentials, HTTP Basic), 200 with a Bearer JWT.

run.py passes the big group, the OAuth client and the end cursor in the `--state` file's `extras`.

Several tenants (run.py `--tenants T`): the state's `extras.tenants` lists each tenant's token
and end cursor, and each state user carries its tenant's number. Every request of every phase
then goes to a tenant picked at random — the request carries that tenant's token, and the
user it names (a pick) is one of that tenant's — so the load is spread over all the tenants,
as many IdPs' traffic is. Answers are checked as with one tenant: `totalResults` is the
tenant's own count (every tenant has the same), a cursor is the tenant's own.

It runs exactly like scimbench.py (same options); the extra phase names are accepted in
`--phases`. scimbench.py is a verbatim copy of the team's shared harness, so the extra phases
live here, in a subclass of its `Bench`, and reuse its `run_phase`, `Client` and checks.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

import scimbench
from scimbench import (
    Bench,
    CheckError,
    check_user,
    expect_status,
    list_resources,
    okta_id,
    q,
    user_payload,
)

EXTRA_PHASES = (
    "lookup_external_id",
    "lookup_jwt",
    "oauth_token",
    "lookup_email",
    "create",
    "create_password",
    "create_password_ignored",
    "cursor_start",
    "cursor_end",
    "big_group_lookup",
    "big_group_patch",
    "big_group_get",
)
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class ProjectBench(Bench):
    """scimbench's Bench with the project's extra lookup phases (`phase_<name>`), and requests
    spread over several tenants when the state names them."""

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        # One {slug, token, end_cursor} per tenant (empty: one tenant, scimbench's own token).
        self.tenants: list[dict] = []
        self.by_tenant: dict[int, list[dict]] = {}

    def run(self) -> None:
        if self.a.state and os.path.exists(self.a.state):
            self.tenants = self.extras().get("tenants") or []
        super().run()

    def _tenant_users(self) -> dict[int, list[dict]]:
        if not self.by_tenant:
            for user in self.users:
                self.by_tenant.setdefault(user["tenant"], []).append(user)
        return self.by_tenant

    def run_phase(self, name: str, op: Callable, **kwargs: Any) -> Any:
        """scimbench's `run_phase`; with several tenants, each request first picks its tenant
        (`ctx["tenant"]`) and sends that tenant's token."""
        if not self.tenants:
            return super().run_phase(name, op, **kwargs)
        numbers = sorted(self._tenant_users())

        def in_a_tenant(ctx: dict, client: scimbench.Client, i: int) -> Any:
            number = numbers[ctx["rng"].randrange(len(numbers))]
            ctx["tenant"] = number
            client.auth = "Bearer " + self.tenants[number]["token"]
            return op(ctx, client, i)

        return super().run_phase(name, in_a_tenant, **kwargs)

    def pick(self, ctx: dict) -> dict:
        """A random user of the request's tenant."""
        if not self.tenants:
            return super().pick(ctx)
        mine = self._tenant_users()[ctx["tenant"]]
        return mine[ctx["rng"].randrange(len(mine))]

    def phase_list(self, where: str) -> None:
        # scimbench checks totalResults against the state's users: a tenant's own, here.
        if not self.tenants:
            return super().phase_list(where)
        everyone = self.users
        self.users = self._tenant_users()[min(self.by_tenant)]
        try:
            return super().phase_list(where)
        finally:
            self.users = everyone

    def _lookup_one(
        self,
        name: str,
        make_filter: Callable[[dict], str],
        check_extra: Callable | None = None,
        auth: str | None = None,
    ) -> None:
        def op(ctx, client, _i):
            if auth is not None:
                client.auth = auth
            user = self.pick(ctx)
            st, doc, raw = client.request("GET", "/Users?filter=" + q(make_filter(user)))
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            total, resources = list_resources(doc)
            if total != 1 or len(resources) != 1:
                raise CheckError(
                    "filter result count",
                    f"totalResults={total} len={len(resources)} for {make_filter(user)}",
                )
            check_user(resources[0], user, user["id"])
            if check_extra is not None:
                check_extra(resources[0], user)
            return False

        self.run_phase(name, op, duration=self.a.duration, warmup=self.a.warmup)

    def phase_lookup_external_id(self) -> None:
        def same_external_id(doc: dict, user: dict) -> None:
            if doc.get("externalId") != user["externalId"]:
                raise CheckError(
                    "wrong externalId", f"got {doc.get('externalId')!r} want {user['externalId']!r}"
                )

        self._lookup_one(
            "lookup_external_id",
            lambda u: f'externalId eq "{u["externalId"]}"',
            same_external_id,
        )

    def extras(self) -> dict:
        if not hasattr(self, "_extras"):
            with open(self.a.state) as f:
                self._extras = json.load(f).get("extras", {})
        return self._extras

    def _timed(self, name: str, op: Callable) -> None:
        self.run_phase(name, op, duration=self.a.duration, warmup=self.a.warmup)

    def _create(self, name: str, password: bool) -> None:
        tag = secrets.token_hex(3)

        def op(ctx, client, i):
            user = {
                "userName": f"n{tag}.{name}.{i:07d}@example.test",
                "externalId": okta_id(ctx["rng"]),
                "given": "Ada",
                "family": "Bench",
            }
            st, doc, raw = client.request("POST", "/Users", user_payload(user, password))
            if not self.checked:
                return True
            expect_status(st, 201, raw)
            check_user(doc, user)
            if doc.get("active") is not True or "password" in doc:
                raise CheckError("created user", "not active, or the password came back")
            return False

        self._timed(name, op)

    def phase_create(self) -> None:
        self._create("create", password=False)

    def phase_create_password(self) -> None:
        self._create("create_password", password=True)

    def phase_create_password_ignored(self) -> None:
        self._create("create_password_ignored", password=True)

    def _cursor(self, name: str, cursor: Callable[[dict], str], rows: int, more: bool) -> None:
        size = self.a.page_size

        def op(ctx, client, _i):
            path = f"/Users?count={size}&cursor={q(cursor(ctx))}"
            st, doc, raw = client.request("GET", path)
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            _total, resources = list_resources(doc)
            if len(resources) != rows or bool(doc.get("nextCursor")) != more:
                raise CheckError(
                    "cursor page",
                    f"{len(resources)} resources (want {rows}), nextCursor "
                    f"{bool(doc.get('nextCursor'))} (want {more})",
                )
            return False

        self._timed(name, op)

    def phase_cursor_start(self) -> None:
        total = self.extras()["users_total"]
        size = self.a.page_size
        self._cursor("cursor_start", lambda _ctx: "", min(size, total), total > size)

    def phase_cursor_end(self) -> None:
        end = self.extras()["end_cursor"]

        def cursor(ctx: dict) -> str:
            # Signed per tenant: another tenant's cursor is 400 invalidCursor.
            if self.tenants:
                return self.tenants[ctx["tenant"]]["end_cursor"]["cursor"]
            return end["cursor"]

        self._cursor("cursor_end", cursor, end["rows"], False)

    def phase_big_group_lookup(self) -> None:
        group = self.extras()["big_group"]
        path = "/Groups?excludedAttributes=members&filter=" + q(
            f'displayName eq "{group["displayName"]}"'
        )

        def op(_ctx, client, _i):
            st, doc, raw = client.request("GET", path)
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            total, resources = list_resources(doc)
            if total != 1 or resources[0].get("id") != group["id"] or "members" in resources[0]:
                raise CheckError("big group lookup", f"totalResults={total}")
            return False

        self._timed("big_group_lookup", op)

    def phase_big_group_patch(self) -> None:
        group = self.extras()["big_group"]
        spare = group["spare"]
        path = "/Groups/" + q(group["id"])
        per_worker = max(1, len(spare) // self.a.concurrency)

        def op(ctx, client, _i):
            # Each worker adds one of its own spare users, then removes it: never a clash.
            mine = spare[ctx["wid"] * per_worker : (ctx["wid"] + 1) * per_worker] or spare
            user_id = mine[(ctx["k"] // 2) % len(mine)]
            if ctx["k"] % 2 == 0:
                change = {"op": "add", "path": "members", "value": [{"value": user_id}]}
            else:
                change = {"op": "remove", "path": f'members[value eq "{user_id}"]'}
            st, _doc, raw = client.request(
                "PATCH", path, {"schemas": [PATCH_OP], "Operations": [change]}
            )
            if not self.checked:
                return True
            if st not in (200, 204):
                raise CheckError(f"status {st}", raw[:200].decode("utf-8", "replace"))
            return False

        result = self.run_phase(
            "big_group_patch", op, duration=self.a.duration, warmup=self.a.warmup
        )
        if self.checked:

            def verify(client, _item):
                in_group = "groups.value eq " + json.dumps(group["id"])
                st, doc, raw = client.request("GET", "/Users?count=0&filter=" + q(in_group))
                expect_status(st, 200, raw)
                members = doc.get("totalResults")
                # A worker stopped between its add and its remove leaves its user in.
                if not group["members"] <= members <= group["members"] + self.a.concurrency:
                    raise CheckError("members after add/remove", f"{members} members")

            self.post_check(result, verify, [None])

    def phase_big_group_get(self) -> None:
        group = self.extras()["big_group"]

        def op(_ctx, client, _i):
            st, doc, raw = client.request("GET", "/Groups/" + q(group["id"]))
            if not self.checked:
                return True
            expect_status(st, 200, raw)
            if len(doc.get("members") or ()) < group["members"]:
                raise CheckError("members", f"{len(doc.get('members') or ())} members")
            return False

        self.run_phase("big_group_get", op, count=3, concurrency=1, duration=120)

    def _post_token(self, conn: http.client.HTTPConnection, creds: dict) -> tuple[int, bytes]:
        """`POST /oauth/token` (client credentials, HTTP Basic) on a keep-alive connection."""
        pair = f"{creds['client_id']}:{creds['client_secret']}".encode()
        headers = {
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        conn.request("POST", "/oauth/token", body=b"grant_type=client_credentials", headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def _oauth(self) -> dict:
        """The bench client's credentials (run.py); the ceiling run has none."""
        found = self.extras().get("oauth") if self.a.state else None
        return found or {"client_id": "ceiling", "client_secret": "ceiling"}

    def phase_lookup_jwt(self) -> None:
        """`lookup` with an access token from the client credentials grant (one JWT, fetched
        before the phase) instead of the static token."""
        auth = None
        if "oauth" in (self.extras() if self.a.state else {}):
            split = urllib.parse.urlsplit(self.a.base)
            conn = http.client.HTTPConnection(split.hostname, split.port, timeout=self.a.timeout)
            try:
                status, raw = self._post_token(conn, self._oauth())
            finally:
                conn.close()
            if status != 200:
                raise SystemExit(f"lookup_jwt: the token request answered {status}: {raw[:200]!r}")
            auth = "Bearer " + json.loads(raw)["access_token"]
        self._lookup_one("lookup_jwt", lambda u: f'userName eq "{u["userName"]}"', auth=auth)

    def phase_oauth_token(self) -> None:
        """`POST /oauth/token` with HTTP Basic client authentication: 200 and a Bearer token."""
        creds = self._oauth()
        split = urllib.parse.urlsplit(self.a.base)

        def op(ctx, _client, _i):
            conn = ctx.get("conn")
            if conn is None:
                conn = ctx["conn"] = http.client.HTTPConnection(
                    split.hostname, split.port, timeout=self.a.timeout
                )
            try:
                status, raw = self._post_token(conn, creds)
            except (OSError, http.client.HTTPException):
                conn.close()
                ctx["conn"] = None
                raise
            if not self.checked:
                return True
            expect_status(status, 200, raw)
            body = json.loads(raw)
            if body.get("token_type") != "Bearer" or body.get("access_token", "").count(".") != 2:
                raise CheckError("token response", raw[:200].decode("utf-8", "replace"))
            return False

        self._timed("oauth_token", op)

    def phase_lookup_email(self) -> None:
        self._lookup_one(
            "lookup_email", lambda u: f'emails[type eq "work"].value eq "{u["userName"]}"'
        )


def main(argv: list[str] | None = None) -> int:
    """scimbench's command line, with ProjectBench and the extra phase names."""
    # Only this process's copy of the module is touched: scimbench.main() builds `Bench` and
    # validates --phases against ALL_PHASES, and neither can be passed in.
    scimbench.ALL_PHASES.extend(p for p in EXTRA_PHASES if p not in scimbench.ALL_PHASES)
    scimbench.Bench = ProjectBench
    return scimbench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
