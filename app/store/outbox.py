"""The transactional outbox: what the LMS must hear about, written in the writer's transaction.

Writers call `user`, `group`, `members` or `group_members` inside their own `database.atomic()`
block, so the row commits with the change or not at all: nothing is lost, and nothing is sent for
a change that rolled back. Each call is one INSERT (a few for more rows than one statement binds).
A row names only the kind and the ids; the relay reads the current state when it delivers, so
delivering a row twice, or two rows for the same user, converges on the same result.

Delivery order (`claim`): a row is handed out only when no earlier undelivered row shares its
user, or its group where either row is about the group itself (`kind = 'group'`) — so a user is
created before it joins a cohort, and a cohort is created before members are added, while
membership rows of different users in one group do not wait for each other. Rows that failed
for good (`dead`) stop blocking: one bad user never holds up the others.

Concurrency: a claim marks rows with a lease (`lease_until`) in one short transaction, and the
HTTP calls happen outside any transaction. On PostgreSQL the claim reads with
`FOR UPDATE SKIP LOCKED`, so two relays claiming at once take different rows without waiting;
on SQLite the claim's transaction is `BEGIN IMMEDIATE` (see `app.store.db`): it takes the
database's single write lock before reading, so claims are serialised and the second relay sees
the first one's leases. A relay that dies mid-delivery leaves its lease to expire; the row is
then claimed again (at-least-once; the relay makes that harmless).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import Case, fn

from app.datetimes import as_datetime
from app.store import prepared, tenancy
from app.store.db import database, is_postgres
from app.store.models import LmsCohortLink, LmsUserLink, Membership, Outbox, Tenant, utcnow

USER, GROUP, MEMBER = "user", "group", "member"
PENDING, DEAD = "pending", "dead"
CHUNK = 1000


# -- writing (inside the caller's transaction) ---------------------------------------------


def row(kind: str, user_id: str | None, group_id: str | None, now: dt.datetime) -> dict[str, Any]:
    """A new row with every column set (for bulk inserts that bypass the model's defaults)."""
    return {
        "kind": kind,
        "user_id": user_id,
        "group_id": group_id,
        "created": now,
        "state": PENDING,
        "attempts": 0,
    }


def _insert(rows: Sequence[dict[str, Any]]) -> None:
    prepared.insert(Outbox, rows)


def user(user_id: str) -> None:
    """A user was created, changed, (de)activated or deleted."""
    _insert([row(USER, user_id, None, utcnow())])


def group(group_id: str, member_ids: Sequence[str] = ()) -> None:
    """A group was created or renamed (and these users joined or left it): one INSERT."""
    now = utcnow()
    rows = [row(GROUP, None, group_id, now)]
    _insert(rows + [row(MEMBER, uid, group_id, now) for uid in member_ids])


def members(group_id: str, member_ids: Sequence[str]) -> None:
    """These users joined or left the group (the relay looks up which)."""
    now = utcnow()
    _insert([row(MEMBER, uid, group_id, now) for uid in member_ids])


def group_members(group_id: str) -> None:
    """Every current member's enrolments may change (a rule changed, or the group goes): one
    INSERT … SELECT over the group's memberships, however many there are."""
    values = row(MEMBER, None, None, utcnow())
    fields = [Outbox.kind, Outbox.created, Outbox.state, Outbox.attempts]
    query = Membership.select(
        Membership.user,
        Membership.group,
        *(peewee.Value(values[f.name], converter=f.db_value) for f in fields),
        Membership.tenant_id,
    ).where(Membership.group == group_id)
    # tenant_id named: INSERT … SELECT gets no Python default (the database's: the default one).
    columns = [Outbox.user_id, Outbox.group_id, *fields, Outbox.tenant_id]
    Outbox.insert_from(query.order_by(Membership.user), columns).execute()


# -- delivering ------------------------------------------------------------------------------


def _blocked_by_earlier() -> Any:
    """An earlier undelivered row that must go first (see the module docstring)."""
    earlier = Outbox.alias("earlier")
    same_user = Outbox.user_id.is_null(False) & (earlier.user_id == Outbox.user_id)
    same_group = (earlier.group_id == Outbox.group_id) & (
        (Outbox.kind == GROUP) | (earlier.kind == GROUP)
    )
    return fn.EXISTS(
        earlier.select(peewee.SQL("1")).where(
            (earlier.state == PENDING) & (earlier.id < Outbox.id) & (same_user | same_group)
        )
    )


def _due(now: dt.datetime) -> Any:
    """Waiting, not leased, and its back-off (if any) over."""
    return (
        (Outbox.state == PENDING)
        & (Outbox.next_attempt_at.is_null() | (Outbox.next_attempt_at <= now))
        & (Outbox.lease_until.is_null() | (Outbox.lease_until <= now))
    )


def due_tenants(now: dt.datetime | None = None) -> list[int]:
    """The tenants with a change the relay could claim now, in one query: per tenant, a probe
    of the `(tenant_id, state, id)` index that stops at the first due row, so the cost follows
    the number of tenants, not the backlog (a million waiting rows after an import)."""
    with tenancy.everywhere():
        due = Outbox.select(peewee.SQL("1")).where(
            (Outbox.tenant_id == Tenant.id) & _due(now or utcnow())
        )
        query = Tenant.select(Tenant.id).where(fn.EXISTS(due)).order_by(Tenant.id)
        return [tenant for (tenant,) in query.tuples()]


def claim(limit: int, lease: dt.timedelta, now: dt.datetime | None = None) -> list[Outbox]:
    """Lease up to `limit` of the tenant's deliverable rows, oldest first, in one short
    transaction."""
    now = now or utcnow()
    with database.atomic():
        query = (
            Outbox.select()
            .where(_due(now) & ~_blocked_by_earlier())
            .order_by(Outbox.id)
            .limit(limit)
        )
        if is_postgres():
            query = query.for_update(of=Outbox, skip_locked=True)
        rows = list(query)
        if rows:
            until = now + lease
            Outbox.update(lease_until=until).where(Outbox.id.in_([r.id for r in rows])).execute()
    return rows


def delivered(row: Outbox) -> None:
    Outbox.delete().where(Outbox.id == row.id).execute()


def release(rows: Iterable[Outbox]) -> None:
    """Give back leased rows not attempted (a relay stopping cleanly)."""
    ids = [r.id for r in rows]
    if ids:
        Outbox.update(lease_until=None).where(Outbox.id.in_(ids)).execute()


def retry_later(row: Outbox, error: str, at: dt.datetime) -> None:
    Outbox.update(
        attempts=Outbox.attempts + 1, next_attempt_at=at, lease_until=None, last_error=error
    ).where(Outbox.id == row.id).execute()


def dead(row: Outbox, error: str) -> None:
    """A dead letter: kept with its reason, never retried unless an operator asks (`requeue`)."""
    Outbox.update(
        state=DEAD, attempts=Outbox.attempts + 1, lease_until=None, last_error=error
    ).where(Outbox.id == row.id).execute()


def requeue(ids: Sequence[int] | None = None) -> int:
    """Dead letters (these, or all) back to the queue, to be tried afresh."""
    query = Outbox.update(state=PENDING, attempts=0, next_attempt_at=None, lease_until=None)
    where = Outbox.state == DEAD
    if ids is not None:
        where &= Outbox.id.in_(list(ids))
    return query.where(where).execute()


# -- reporting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayStatus:
    backlog: int  # rows waiting (including those retrying)
    retrying: int  # waiting rows that failed at least once
    oldest: dt.datetime | None  # when the oldest waiting change was made
    dead: list[Outbox]  # dead letters, newest first (up to `limit`)
    dead_total: int
    last_delivery: dt.datetime | None
    last_error: str | None  # the latest transient failure, if rows are retrying

    def as_json(self) -> dict[str, Any]:
        return {
            "backlog": self.backlog,
            "retrying": self.retrying,
            "oldestWaiting": iso(self.oldest),
            "lastDelivery": iso(self.last_delivery),
            "lastError": self.last_error,
            "failures": self.dead_total,
            "deadLetters": [dead_letter(row) for row in self.dead],
        }


def iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment else None


def dead_letter(row: Outbox) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "userId": row.user_id,
        "groupId": row.group_id,
        "created": iso(row.created),
        "attempts": row.attempts,
        "reason": row.last_error,
    }


def relay_status(limit: int = 50) -> RelayStatus:
    pending = Outbox.select(
        fn.COUNT(Outbox.id),
        fn.COUNT(Outbox.last_error),
        fn.MIN(Outbox.created),
    ).where(Outbox.state == PENDING)
    backlog, retrying, oldest = pending.tuples().get()
    failing = (
        Outbox.select(Outbox.last_error)
        .where((Outbox.state == PENDING) & Outbox.last_error.is_null(False))
        .order_by(Outbox.id.desc())
        .first()
    )
    dead_rows = Outbox.select().where(Outbox.state == DEAD)
    last = max(
        (
            moment
            for moment in (
                LmsUserLink.select(fn.MAX(LmsUserLink.synced_at)).scalar(),
                LmsCohortLink.select(fn.MAX(LmsCohortLink.synced_at)).scalar(),
            )
            if moment is not None
        ),
        default=None,
    )
    return RelayStatus(
        backlog=backlog,
        retrying=retrying,
        oldest=oldest,
        dead=list(dead_rows.order_by(Outbox.id.desc()).limit(limit)),
        dead_total=dead_rows.count(),
        last_delivery=last,
        last_error=failing.last_error if failing else None,
    )


@dataclass(frozen=True)
class TenantRelay:
    """One tenant's line in the relay overview."""

    tenant_id: int
    backlog: int
    retrying: int
    dead_total: int
    oldest: dt.datetime | None
    last_delivery: dt.datetime | None


def relay_overview(tenant_ids: Sequence[int]) -> list[TenantRelay]:
    """`relay_status`'s counts for many tenants in three grouped queries (not three per
    tenant), in the order of `tenant_ids`."""
    waiting = Case(None, [(Outbox.state == PENDING, 1)], 0)
    dead_rows = Case(None, [(Outbox.state == DEAD, 1)], 0)
    retrying = Case(None, [((Outbox.state == PENDING) & Outbox.last_error.is_null(False), 1)], 0)
    oldest = fn.MIN(Case(None, [(Outbox.state == PENDING, Outbox.created)], None))
    with tenancy.everywhere():
        counts = {
            row[0]: row[1:]
            for row in Outbox.select(
                Outbox.tenant_id, fn.SUM(waiting), fn.SUM(retrying), fn.SUM(dead_rows), oldest
            )
            .group_by(Outbox.tenant_id)
            .tuples()
        }
        delivered = {}
        for link in (LmsUserLink, LmsCohortLink):
            query = link.select(link.tenant_id, fn.MAX(link.synced_at)).group_by(link.tenant_id)
            for tenant, moment in query.tuples():
                moment = as_datetime(moment)
                if moment is not None and (tenant not in delivered or moment > delivered[tenant]):
                    delivered[tenant] = moment
    lines = []
    for tenant in tenant_ids:
        backlog, retry, dead_total, first = counts.get(tenant, (0, 0, 0, None))
        lines.append(
            TenantRelay(
                tenant,
                int(backlog or 0),
                int(retry or 0),
                int(dead_total or 0),
                as_datetime(first),
                delivered.get(tenant),
            )
        )
    return lines


@dataclass(frozen=True)
class UserSync:
    """Whether one user is in step with the LMS, and if not, why."""

    lms_id: int | None
    synced_at: dt.datetime | None
    waiting: int
    error: str | None  # a dead letter's reason, or the latest retry's
    dead: bool

    @property
    def summary(self) -> str:
        if self.dead:
            return f"not in step with the LMS: {self.error}"
        if self.waiting:
            text = f"{self.waiting} change(s) waiting for the LMS relay"
            return f"{text} (retrying: {self.error})" if self.error else text
        if self.synced_at is not None:
            return f"in step with the LMS since {self.synced_at:%Y-%m-%d %H:%M} UTC"
        return "not yet sent to the LMS"

    def as_json(self) -> dict[str, Any]:
        return {
            "lmsId": self.lms_id,
            "syncedAt": iso(self.synced_at),
            "waiting": self.waiting,
            "error": self.error,
            "summary": self.summary,
        }


def user_sync(user_id: str) -> UserSync:
    link = LmsUserLink.get_or_none(LmsUserLink.user_id == user_id)
    rows = list(
        Outbox.select(Outbox.state, Outbox.last_error)
        .where(Outbox.user_id == user_id)
        .order_by(Outbox.id.desc())
    )
    dead_rows = [r for r in rows if r.state == DEAD]
    waiting = [r for r in rows if r.state == PENDING]
    error_row = dead_rows[0] if dead_rows else next((r for r in waiting if r.last_error), None)
    return UserSync(
        lms_id=link.lms_id if link else None,
        synced_at=link.synced_at if link else None,
        waiting=len(waiting),
        error=error_row.last_error if error_row else None,
        dead=bool(dead_rows),
    )
