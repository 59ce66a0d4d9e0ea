#!/usr/bin/env python3
"""scimbench plus the lookups lms-scim's IdPs send besides `userName eq`.

* `lookup_external_id`: `GET /Users?filter=externalId eq "…"` (Okta and Entra match on the
  IdP's own id once a user is linked).
* `lookup_email`: `GET /Users?filter=emails[type eq "work"].value eq "…"` (Entra's matching
  on the work e-mail; RFC 7644 §3.4.2.2 value path followed by a sub-attribute).

Every answer is checked like scimbench's `lookup`: 200, a ListResponse with exactly one
resource, the right id and userName (and for `lookup_external_id` the right externalId).

It runs exactly like scimbench.py (same options); the extra phase names are accepted in
`--phases`. scimbench.py is a verbatim copy of the team's shared harness, so the extra phases
live here, in a subclass of its `Bench`, and reuse its `run_phase`, `Client` and checks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import scimbench
from scimbench import Bench, CheckError, check_user, expect_status, list_resources, q

EXTRA_PHASES = ("lookup_external_id", "lookup_email")


class ProjectBench(Bench):
    """scimbench's Bench with the project's extra lookup phases (`phase_<name>`)."""

    def _lookup_one(
        self, name: str, make_filter: Callable[[dict], str], check_extra: Callable | None = None
    ) -> None:
        def op(ctx, client, _i):
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
