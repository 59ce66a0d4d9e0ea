"""Fixtures for the LMS relay: a simulated Moodle behind `responses`, a clock the test moves,
and a relay on that clock (the plain helpers are in tests/relay/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
from flask import Flask

from app.relay.worker import Relay
from tests.relay.harness import Clock, make_relay
from tests.relay.moodle_sim import MoodleSim


@pytest.fixture
def moodle() -> Iterator[MoodleSim]:
    sim = MoodleSim()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        sim.install(mock)
        yield sim


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def relay(app: Flask, moodle: MoodleSim, clock: Clock) -> Relay:
    return make_relay(clock)
