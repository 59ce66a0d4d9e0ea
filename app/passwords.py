"""Password hashing with argon2id (RFC 9106), at OWASP's minimum cost: m=19 MiB, t=2, p=1.

Passwords pushed by an IdP are hashed before any database transaction starts, never returned
(`returned: never`), never logged and never written to the audit trail.

Each hash needs 19 MiB and a core for ~20 ms. A `Hasher` runs at most `HASH_CONCURRENCY` hashes
(default 1) at once; `create_app` makes one per app, so a gunicorn worker per core hashes as fast
as the machine can, while four threads hashing at once would only share the same cores — and
hold 76 MiB. `/admin` sign-ins have a `Hasher` of their own that waits briefly for its one slot
and then gives up (`Runtime.sign_in_hasher`): a flood of sign-ins never queues SCIM writes
behind it, nor holds the worker's threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import Unavailable

_ARGON2 = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class Hasher:
    """argon2id hashing and verification with at most `concurrency` running at once; with
    `wait`, a call that found no free slot within `wait` seconds raises `Unavailable`."""

    def __init__(self, concurrency: int = 1, wait: float | None = None) -> None:
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._wait = wait

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait):
            raise Unavailable("Too busy to check a password; try again in a moment.", retry_after=1)
        try:
            yield
        finally:
            self._slots.release()

    def hash(self, password: str) -> str:
        with self._slot():
            return _ARGON2.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            with self._slot():
                return _ARGON2.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
