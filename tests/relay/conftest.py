"""Fixtures for the LMS relay: a simulated Moodle behind `responses`, a clock the test moves,
and a relay on that clock (the plain helpers are in tests/relay/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import responses
from flask import Flask

from app.config import Config
from app.relay.worker import Relay
from tests.relay.harness import A_URL, B_URL, Clock, make_relay
from tests.relay.moodle_sim import TOKEN, URL, MoodleSim


@pytest.fixture
def config(config: Config) -> Config:
    """The relay is opt-in: here the default tenant's environment names the simulated Moodle,
    so its changes are queued (tests of a tenant without an LMS say so themselves)."""
    return replace(config, lms_url=URL, lms_token=TOKEN)


@pytest.fixture
def moodle() -> Iterator[MoodleSim]:
    sim = MoodleSim()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        sim.install(mock)
        yield sim


@pytest.fixture
def sites() -> Iterator[tuple[MoodleSim, MoodleSim]]:
    """Two Moodle sites: A (the default tenant's, or its default target's) and B (acme's, or
    another target's)."""
    site_a, site_b = MoodleSim(url=A_URL), MoodleSim(url=B_URL)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        site_a.install(mock)
        site_b.install(mock)
        yield site_a, site_b


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def relay(app: Flask, moodle: MoodleSim, clock: Clock) -> Relay:
    return make_relay(clock)
