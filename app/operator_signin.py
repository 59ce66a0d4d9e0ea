"""Operator sign-in for `/admin`: people with a name and password of their own (never a SCIM
token), hashed with the app's `passwords.Hasher`."""

from __future__ import annotations

import functools
import secrets

from app.passwords import Hasher
from app.store import operators
from app.store.models import Operator, utcnow


@functools.cache
def _dummy_hash() -> str:
    """A real hash to check unknown names against, so they cost the same time as known ones."""
    return Hasher().hash(secrets.token_urlsafe(16))


def create_operator(name: str, password: str, hasher: Hasher) -> Operator:
    return operators.create(name, hasher.hash(password))


def set_operator_password(name: str, password: str, hasher: Hasher) -> None:
    operators.set_password(name, hasher.hash(password))


class SignInRefused(Exception):
    """Wrong name or password, or too many recent failures (the message says which)."""


def sign_in(name: str, password: str, hasher: Hasher) -> Operator:
    """The operator for these credentials. Failures back off exponentially per operator
    (`operators.BACKOFF`), on top of argon2id's own cost, so guessing is slow everywhere."""
    operator = operators.find(name)
    if operator is None:
        hasher.verify(_dummy_hash(), password)
        raise SignInRefused("Wrong name or password.")
    if operator.locked_until is not None and operator.locked_until > utcnow():
        raise SignInRefused("Too many failed attempts; try again in a few minutes.")
    if not hasher.verify(operator.password_hash, password):
        operators.record_failure(operator.id)
        raise SignInRefused("Wrong name or password.")
    operators.record_success(operator.id)
    return operator
