"""app.ratelimit.LazyMemoryStorage: limits' fixed windows without an expiry thread per hit.
The attributes of limits' MemoryStorage it relies on (`storage`, `expirations`, `locks`, `get`)
are exercised here, so an upgrade of limits that changes them fails this test, not production."""

from __future__ import annotations

import threading
import time

import limits
import pytest
from limits.strategies import FixedWindowRateLimiter

from app import ratelimit
from app.ratelimit import LazyMemoryStorage


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit.time, "time", fake.time)
    monkeypatch.setattr("limits.storage.memory.time.time", fake.time)
    return fake


def test_a_fixed_window_counts_refuses_and_starts_again(clock: Clock) -> None:
    window = FixedWindowRateLimiter(LazyMemoryStorage("memory://"))
    three = limits.parse("3/minute")
    assert [window.hit(three, "k") for _ in range(4)] == [True, True, True, False]
    assert not window.test(three, "k")
    stats = window.get_window_stats(three, "k")
    assert (stats.remaining, stats.reset_time) == (0, clock.now + 60)
    assert window.test(three, "other")  # keys are apart
    clock.now += 60
    assert window.test(three, "k")
    assert window.hit(three, "k")


def test_no_thread_is_started_by_a_hit(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    window = FixedWindowRateLimiter(LazyMemoryStorage("memory://"))
    started: list[threading.Thread] = []
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread))
    one = limits.parse("100/second")
    for _ in range(3):
        time.sleep(0.015)  # longer than the library's 10 ms expiry timer lives
        window.hit(one, "k")
    assert started == []


def test_windows_nobody_reads_again_are_swept(clock: Clock) -> None:
    storage = LazyMemoryStorage("memory://")
    window = FixedWindowRateLimiter(storage)
    item = limits.parse("5/second")
    for n in range(100):
        window.hit(item, f"address-{n}")
    assert len(storage.storage) == 100
    clock.now += LazyMemoryStorage.SWEEP_SECONDS + 1
    window.hit(item, "fresh")
    assert set(storage.storage) == {item.key_for("fresh")}
    assert set(storage.expirations) == {item.key_for("fresh")}


def test_the_app_uses_it_for_memory_and_limits_own_storage_otherwise() -> None:
    from app.config import Config

    memory = ratelimit.RateLimits(Config.from_env(ratelimit_storage_uri="memory://"))
    assert type(memory.window.storage) is LazyMemoryStorage
    redis = ratelimit.RateLimits(Config.from_env(ratelimit_storage_uri="redis://127.0.0.1:6379"))
    assert type(redis.window.storage).__name__ == "RedisStorage"
