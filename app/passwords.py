"""Password hashing with argon2id (RFC 9106), at OWASP's minimum cost: m=19 MiB, t=2, p=1.

Passwords pushed by an IdP are hashed before any database transaction starts, never returned
(`returned: never`), never logged and never written to the audit trail.

Each hash needs 19 MiB and a core for ~20 ms. A `Hasher` runs at most `HASH_CONCURRENCY` hashes
(default 1) at once; `create_app` makes one per app, so a gunicorn worker per core hashes as fast
as the machine can, while four threads hashing at once would only share the same cores — and
hold 76 MiB.
"""

from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_ARGON2 = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class Hasher:
    """argon2id hashing and verification with at most `concurrency` running at once."""

    def __init__(self, concurrency: int = 1) -> None:
        self._slots = threading.BoundedSemaphore(max(1, concurrency))

    def hash(self, password: str) -> str:
        with self._slots:
            return _ARGON2.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            with self._slots:
                return _ARGON2.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
