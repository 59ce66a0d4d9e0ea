"""The relay under test: a clock the test moves, a relay built on it, and `drain` to deliver
everything that is due; and the SCIM changes the relay tests make (join, leave, (de)activate)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from app.relay.moodle import MoodleClient
from app.relay.worker import Relay, Settings
from app.store.models import Outbox, utcnow
from tests.helpers import members, patch_ok
from tests.relay.moodle_sim import TOKEN, URL


class Clock:
    """The relay's idea of now, moved by the test (back-off and leases without sleeping)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def make_relay(clock: Clock, settings: Settings | None = None, seed: int = 7) -> Relay:
    return Relay(
        MoodleClient(URL, TOKEN, timeout=2.0),
        settings or Settings(),
        clock=clock,
        rng=random.Random(seed),
        base_delay=1.0,
        max_delay=60.0,
        max_attempts=5,
    )


def drain(relay: Relay, clock: Clock, rounds: int = 10_000) -> None:
    """Deliver until nothing is left that could ever be delivered (retries included)."""
    for _ in range(rounds):
        if relay.run_once():
            continue
        if not Outbox.select().where(Outbox.state == "pending").exists():
            return
        clock.advance(relay.max_delay + 1)  # let back-off (and any lease) run out
        relay.failures = 0
    raise AssertionError("the outbox did not drain")


def set_active(scim: Any, user_id: str, active: bool) -> None:
    """A path-less replace, as Entra ID sends it."""
    patch_ok(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": active}})


def join(scim: Any, group_id: str, user_id: str) -> None:
    patch_ok(
        scim, f"/Groups/{group_id}", {"op": "add", "path": "members", "value": members(user_id)}
    )


def leave(scim: Any, group_id: str, user_id: str) -> None:
    patch_ok(
        scim, f"/Groups/{group_id}", {"op": "remove", "path": f'members[value eq "{user_id}"]'}
    )
