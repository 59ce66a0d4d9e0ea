"""Per-process caches that learn of changes made anywhere within TOKEN_CACHE_SECONDS, at the cost
of one query per TOKEN_CACHE_SECONDS per process, however many entries they hold.

Every entry is tagged with the cache generation (`app.store.generation`, moved by triggers on
every change to tokens, tenants and OAuth clients) read before it was loaded. `Freshness` reads
the counter again at most once per `seconds`; while it has not moved, every entry stays good —
a thousand tenants' tokens and settings cost one query per interval instead of two reloads per
tenant. When it moves, entries loaded before are loaded again on their next use. A change made
by this process clears the caches at once, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

# No cache grows past this many entries: a flood of distinct keys empties it instead.
MAX_ENTRIES = 10_000


class Freshness:
    """The latest cache generation this process has seen, asked of the database at most once
    per `seconds`; None when caching is off (`seconds` 0)."""

    def __init__(self, seconds: float, read: Callable[[], int]) -> None:
        self.seconds = seconds
        self._read = read
        self._lock = threading.Lock()
        self._value: int | None = None
        self._checked = float("-inf")

    def generation(self) -> int | None:
        if self.seconds <= 0:
            return None
        if time.monotonic() - self._checked < self.seconds:
            return self._value
        with self._lock:  # one reader asks; the others wait for its answer
            if time.monotonic() - self._checked >= self.seconds:
                self._value = self._read()
                self._checked = time.monotonic()
            return self._value


K = TypeVar("K")
V = TypeVar("V")


class FreshCache(Generic[K, V]):
    """Values loaded once and kept while the cache generation stands still: tenants' settings
    and state, OAuth clients' state."""

    def __init__(self, freshness: Freshness) -> None:
        self.freshness = freshness
        self._lock = threading.Lock()
        self._held: dict[K, tuple[int, V]] = {}

    def get(self, key: K, load: Callable[[], V]) -> V:
        generation = self.freshness.generation()
        if generation is None:
            return load()
        # Read without the lock: one dict look-up is atomic, and every request makes several.
        held = self._held.get(key)
        if held is not None and held[0] == generation:
            return held[1]
        value = load()
        with self._lock:
            if len(self._held) >= MAX_ENTRIES:
                self._held.clear()
            self._held[key] = (generation, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
