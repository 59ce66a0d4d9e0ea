"""The relay under test: a clock the test moves, a relay built on it, and `drain` to deliver
everything that is due; and the SCIM changes the relay tests make (join, leave, (de)activate)."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.relay.moodle import MoodleClient
from app.relay.worker import Relay, Settings
from app.store.models import Outbox, utcnow
from tests.helpers import members, patch_ok
from tests.relay.moodle_sim import TOKEN, URL, MoodleSim

# Two Moodle sites (the `sites` fixture): the default tenant's or target's (A), and another's (B).
A_URL, B_URL = "https://lms-a.example.test", "https://lms-b.example.test"


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


@contextmanager
def one_site_hung(dispatcher: Any, hung: MoodleSim, until: Callable[[], bool]) -> Iterator[float]:
    """`hung` accepts every call and never answers; `dispatcher` runs in a thread until
    `until()` and a call is hanging at `hung` (30 s at most): yields the seconds that took.
    Afterwards the hung call is let go (it times out, and the relay keeps its change for
    later) and the dispatcher stops."""
    hung.stall = threading.Event()
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher.run, args=(stop,))
    started = time.monotonic()
    loop.start()
    try:
        while not until() and time.monotonic() - started < 30:
            time.sleep(0.01)
        took = time.monotonic() - started
        # Delivered while the other site held a call, not before its turn began.
        assert hung.hanging.wait(30)
        yield took
        assert not hung.stall.is_set()
        assert hung.calls == []
    finally:
        hung.stall.set()
        stop.set()
        loop.join(30)
    assert not loop.is_alive()


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


def looked_up(site: MoodleSim) -> list[tuple[str, list[str]]]:
    """(field, values) of each account look-up the relay made at `site`, in order."""
    return [
        (params["field"], params["values"])
        for name, params in site.calls
        if name == "core_user_get_users_by_field"
    ]


def created_auth(site: MoodleSim) -> dict[str, str]:
    """username → auth of the accounts the relay created at `site`."""
    return {
        user["username"]: user["auth"]
        for name, params in site.calls
        if name == "core_user_create_users"
        for user in params["users"]
    }
