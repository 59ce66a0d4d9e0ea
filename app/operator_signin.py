"""Operator sign-in for `/admin`: people with a name and password of their own (never a SCIM
token), hashed with argon2id, and the server-side sessions a sign-in starts (issue 15 §3).

A name no operator has, a disabled operator's name and a wrong password get the same answer
after the same work (one argon2id verification), and back off the same way: the back-off is
counted per typed name by the rate limiter (`Brake`), never per account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

from app.errors import TooManyRequests, Unavailable
from app.passwords import Hasher
from app.store import admin_sessions, operators
from app.store.models import Operator, utcnow

# A hash of a random password, made with `passwords._ARGON2`'s parameters: unknown names are
# checked against it, so they cost what a known name costs — from the first attempt on (a hash
# made on first use would make the first unknown name cost twice as much).
DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$Qf8c6FE/fPQHKsbcyh+M+w"
    "$JY/lieYJ3WFlX2zu5vChHDdt70iAzPG/TK9CSs/OVZs"
)
WRONG = "Wrong name or password."


def create_operator(
    name: str, password: str, hasher: Hasher, tenant_id: int | None = None
) -> Operator:
    """An operator; bound to `tenant_id` when given, else global (sees every tenant)."""
    return operators.create(name, hasher.hash(password), tenant_id)


def set_operator_password(name: str, password: str, hasher: Hasher) -> None:
    """A new password; every session of that operator ends."""
    operators.set_password(name, hasher.hash(password))


class SignInRefused(Exception):
    """Why a sign-in was refused, as the person signing in may see it (`str`), with its HTTP
    status; `who` is how the log names the attempt (never a name no operator has)."""

    def __init__(self, message: str, status: int, who: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.who = who
        self.retry_after = retry_after


class Brake(Protocol):
    """The rate limiter's side of a sign-in (`app.ratelimit.RateLimits`)."""

    def sign_in_attempt(self, address: str, name_key: str) -> None: ...

    def sign_in_failed(self, name_key: str) -> None: ...


@dataclass(frozen=True)
class Guards:
    """What a sign-in goes through: the limits, argon2id with the sign-ins' own budget, and the
    key that hashes typed names."""

    brake: Brake
    hasher: Hasher
    secret_key: str


def name_key(name: str, secret_key: str) -> str:
    """A short keyed hash of a typed name: the key its failures are counted under, and how the
    log names it when no operator has it (it may be a password typed in the wrong field)."""
    digest = hmac.new(secret_key.encode(), name.casefold().encode(), hashlib.sha256)
    return digest.hexdigest()[:12]


def sign_in(name: str, password: str, address: str, guards: Guards) -> Operator:
    """The operator for these credentials, or SignInRefused: 429 while the address or the name
    is over its limit, 503 while sign-ins' argon2 is busy, 401 otherwise."""
    key = name_key(name, guards.secret_key)
    operator = operators.find(name)
    who = repr(operator.name) if operator else f"unknown name #{key}"
    try:
        guards.brake.sign_in_attempt(address, key)
        ok = guards.hasher.verify(operator.password_hash if operator else DUMMY_HASH, password)
    except (TooManyRequests, Unavailable) as exc:
        retry_after = int(exc.headers["Retry-After"])
        raise SignInRefused(exc.detail, exc.status, who, retry_after) from None
    if not ok or operator is None or operator.disabled_at is not None:
        guards.brake.sign_in_failed(key)
        raise SignInRefused(WRONG, 401, who)
    operators.record_success(operator.id)
    return operator


# -- sessions --------------------------------------------------------------------------------


def _session_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(operator: Operator, lifetimes: admin_sessions.Lifetimes) -> str | None:
    """A new session for an operator just signed in: the secret for the cookie (only its hash is
    stored), or None if their password changed or they were disabled meanwhile."""
    secret = secrets.token_urlsafe(32)
    if not admin_sessions.start(_session_id(secret), operator, utcnow(), lifetimes):
        return None
    return secret


def resume_session(secret: str, lifetimes: admin_sessions.Lifetimes) -> Operator | None:
    """The operator of the live session the cookie's secret belongs to, if any."""
    return admin_sessions.resume(_session_id(secret), utcnow(), lifetimes)


def end_session(secret: str) -> None:
    admin_sessions.end(_session_id(secret), utcnow())
