"""Operator accounts for the `/admin` pages: stored with argon2id hashes (hashed by the caller,
outside any transaction), with a per-operator failure count that slows password guessing."""

from __future__ import annotations

import datetime as dt

import peewee

from app.errors import NotFound, Uniqueness
from app.store import audit
from app.store.db import database
from app.store.models import Operator, utcnow
from app.store.names import require_name

# Failures allowed before back-off starts, and its ceiling: after that each failure doubles the
# wait (2 s, 4 s, … 15 min), so a guesser gets a few dozen tries a day per operator.
FREE_ATTEMPTS = 3
MAX_BACKOFF = dt.timedelta(minutes=15)


def create(name: str, password_hash: str, actor: audit.Actor = audit.SYSTEM) -> Operator:
    require_name("An operator name", name)
    try:
        with database.atomic():
            operator = Operator.create(name=name, password_hash=password_hash)
            audit.record(
                actor, "Operator", str(operator.id), "operator_create", {"name": {"after": name}}
            )
    except peewee.IntegrityError as exc:
        raise Uniqueness(f"An operator named {name!r} exists.") from exc
    return operator


def set_password(name: str, password_hash: str, actor: audit.Actor = audit.SYSTEM) -> None:
    with database.atomic():
        operator = Operator.get_or_none(Operator.name == name)
        if operator is None:
            raise NotFound(f"No operator named {name!r}.")
        Operator.update(password_hash=password_hash, failed_attempts=0, locked_until=None).where(
            Operator.id == operator.id
        ).execute()
        audit.record(
            actor,
            "Operator",
            str(operator.id),
            "operator_password",
            {"password": {"changed": True}},
        )


def find(name: str) -> Operator | None:
    return Operator.get_or_none(Operator.name == name)


def all_operators() -> list[Operator]:
    return list(Operator.select().order_by(Operator.name))


def record_failure(operator_id: int) -> None:
    """Count a failed sign-in; past `FREE_ATTEMPTS`, lock out for an exponentially longer time."""
    with database.atomic():
        operator = Operator.get_by_id(operator_id)
        failures = operator.failed_attempts + 1
        locked_until = None
        if failures > FREE_ATTEMPTS:
            wait = min(dt.timedelta(seconds=2 ** (failures - FREE_ATTEMPTS)), MAX_BACKOFF)
            locked_until = utcnow() + wait
        Operator.update(failed_attempts=failures, locked_until=locked_until).where(
            Operator.id == operator_id
        ).execute()


def record_success(operator_id: int) -> None:
    Operator.update(failed_attempts=0, locked_until=None, last_sign_in_at=utcnow()).where(
        Operator.id == operator_id
    ).execute()
