"""Password hashing with argon2id (RFC 9106), at OWASP's minimum cost: m=19 MiB, t=2, p=1.

Passwords pushed by an IdP are hashed before any database transaction starts, never returned
(`returned: never`), never logged and never written to the audit trail.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
