"""Password hashing with argon2id (RFC 9106), at OWASP's minimum cost: m=19 MiB, t=2, p=1.

Passwords pushed by an IdP are hashed before any database transaction starts, never returned
(`returned: never`), never logged and never written to the audit trail.

Each hash needs 19 MiB and a core for ~20 ms. At most `HASH_CONCURRENCY` hashes (default 1)
run at once in a process: a gunicorn worker per core then hashes as fast as the machine can,
while four threads hashing at once would only share the same cores — and hold 76 MiB.
"""

from __future__ import annotations

import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_slots = threading.BoundedSemaphore(1)


def set_concurrency(slots: int) -> None:
    """How many hashes may run at once in this process (`HASH_CONCURRENCY`)."""
    global _slots
    _slots = threading.BoundedSemaphore(max(1, slots))


def hash_password(password: str) -> str:
    with _slots:
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        with _slots:
            return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
