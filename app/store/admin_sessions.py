"""Server-side `/admin` sessions: started at sign-in, resumed by every request, ended by sign-out,
a password change, `operators disable` or `delete` — and dead once their absolute or idle
lifetime has run out (issue 15 §3). Callers pass the session's id (the SHA-256 of the cookie's
secret, never the secret), the time and the lifetimes from the `Config`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.store.db import database, locked
from app.store.models import AdminSession, Operator

# A live session's `last_seen` moves at most once a minute: most page views then cost no write,
# and the idle timeout still holds to the minute.
TOUCH_EVERY = dt.timedelta(minutes=1)
# Rows are deleted this long after their sign-in (or after the absolute lifetime, if longer), so
# the table stays small and the recent ones are there to look at.
KEEP = dt.timedelta(days=7)


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lives: from its sign-in however active, and without a request."""

    absolute: dt.timedelta
    idle: dt.timedelta


def start(session_id: str, verified: Operator, now: dt.datetime, lifetimes: Lifetimes) -> bool:
    """A new live session for an operator whose password was just verified — unless, meanwhile,
    that password changed or the operator was disabled or deleted (then False: the change would
    otherwise miss this session). Sessions signed in long ago are deleted on the way."""
    with database.atomic():
        still = locked(
            Operator.select(Operator.id).where(
                Operator.id == verified.id,
                Operator.password_hash == verified.password_hash,
                Operator.disabled_at.is_null(),
            )
        ).first()
        if still is None:
            return False
        AdminSession.delete().where(
            AdminSession.created < now - max(KEEP, lifetimes.absolute)
        ).execute()
        AdminSession.create(id=session_id, operator=verified.id, created=now, last_seen=now)
    return True


def resume(session_id: str, now: dt.datetime, lifetimes: Lifetimes) -> Operator | None:
    """The operator of a live session, which has now been seen; None when the session ended,
    has outlived either lifetime, or its operator is disabled or deleted."""
    row = (
        AdminSession.select(AdminSession, Operator)
        .join(Operator)
        .where(
            AdminSession.id == session_id,
            AdminSession.ended.is_null(),
            AdminSession.created > now - lifetimes.absolute,
            AdminSession.last_seen > now - lifetimes.idle,
            Operator.disabled_at.is_null(),
        )
        .first()
    )
    if row is None:
        return None
    if now - row.last_seen >= TOUCH_EVERY:
        AdminSession.update(last_seen=now).where(AdminSession.id == session_id).execute()
    return row.operator


def end(session_id: str, now: dt.datetime) -> None:
    """Sign-out: this session is over, whoever presents its cookie again."""
    AdminSession.update(ended=now).where(
        AdminSession.id == session_id, AdminSession.ended.is_null()
    ).execute()


def end_all(operator_id: int, now: dt.datetime) -> int:
    """End every live session of an operator (a password change, `operators disable`); call it
    in the transaction of that change. Returns how many it ended."""
    return (
        AdminSession.update(ended=now)
        .where(AdminSession.operator == operator_id, AdminSession.ended.is_null())
        .execute()
    )
