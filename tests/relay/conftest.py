"""Fixtures for the LMS relay: a simulated Moodle behind `responses`, a relay with a clock the
test moves, and `drain` to deliver everything that is due."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import pytest
import responses
from flask import Flask

from app.relay.moodle import MoodleClient
from app.relay.worker import Relay, Settings
from app.store.models import utcnow
from tests.relay.moodle_sim import TOKEN, URL, MoodleSim


class Clock:
    """The relay's idea of now, moved by the test (back-off and leases without sleeping)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def moodle() -> Iterator[MoodleSim]:
    sim = MoodleSim()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        sim.install(mock)
        yield sim


@pytest.fixture
def clock() -> Clock:
    return Clock()


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


@pytest.fixture
def relay(app: Flask, moodle: MoodleSim, clock: Clock) -> Relay:
    return make_relay(clock)


def drain(relay: Relay, clock: Clock, rounds: int = 10_000) -> None:
    """Deliver until nothing is left that could ever be delivered (retries included)."""
    from app.store.models import Outbox

    for _ in range(rounds):
        if relay.run_once():
            continue
        if not Outbox.select().where(Outbox.state == "pending").exists():
            return
        clock.advance(relay.max_delay + 1)  # let back-off (and any lease) run out
        relay.failures = 0
    raise AssertionError("the outbox did not drain")
