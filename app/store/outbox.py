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

Opt-in: only the targets that name an LMS receive rows (`receivers`); a tenant without one gets
none, and its writes run no outbox statement at all. Configuring an LMS later starts from a
full reconciliation (`sync_all`, `lms-scim relay sync --all`), not from a backlog.

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
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import Case, fn

from app.datetimes import as_datetime
from app.store import lms_targets, prepared, tenancy
from app.store.db import database, is_postgres
from app.store.models import (
    Group,
    LmsCohortLink,
    LmsTarget,
    LmsUserLink,
    Membership,
    Outbox,
    Tenant,
    User,
    utcnow,
)
from app.store.paging import count_of

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


# -- who receives (the relay is opt-in) ------------------------------------------------------

# Which targets of a tenant receive its changes: the app's answer, from a per-process cache that
# the cache generation keeps honest (`app.runtime.Runtime.receiving`), set for each app
# context. Unset (the store used without an app): every target of the tenant.
Receivers = Callable[[int], lms_targets.Receiving]
_receivers: ContextVar[Receivers | None] = ContextVar("lms_scim_receivers", default=None)


def receivers_from(resolver: Receivers | None) -> Token[Receivers | None]:
    """Ask `resolver` which targets receive, until `reset(token)` (an app context)."""
    return _receivers.set(resolver)


def reset(token: Token[Receivers | None]) -> None:
    _receivers.reset(token)


def receivers() -> tuple[int, ...] | None:
    """The ids of the targets of the tenant at hand that receive changes (those naming an LMS);
    None when no app says (every target then receives, as before targets could be unset)."""
    resolver = _receivers.get()
    return None if resolver is None else resolver(tenancy.owner()).targets


def enrolments_in_use() -> bool:
    """Whether the tenant at hand has enrolments to compute (an enrolment rule, or enrolments
    kept after one); without any, reads and writes skip the enrolment query. True when no app
    says, or for every tenant at once (`tenancy.everywhere`)."""
    resolver, tenant = _receivers.get(), tenancy.current()
    return resolver is None or tenant is None or resolver(tenant).enrolments


def receives(target: int) -> bool:
    """Whether changes are queued for `target` (of the tenant at hand)."""
    resolver = _receivers.get()
    return resolver is None or target not in resolver(tenancy.owner()).off


# The columns a change names (the rest come from the target: tenant_id, target_id).
_VALUES = ("kind", "user_id", "group_id", "created", "state", "attempts")
_statements: dict[tuple[int, int, int], str] = {}


def _statement(rows: int, targets: int | None) -> str:
    """INSERT … SELECT of `rows` changes, each once per LMS target of the tenant (the tenant the
    parameter after the changes; then the ids of the `targets` that receive, if given), in the
    order given per target. One row needs no VALUES table: its values are the SELECT's own
    columns."""
    key = (id(database.obj), rows, -1 if targets is None else targets)
    found = _statements.get(key)
    if found is None:
        p = database.param
        columns = ", ".join(f'"{c}"' for c in ("tenant_id", "target_id", *_VALUES))
        head = f'INSERT INTO "outbox" ({columns}) SELECT "t"."tenant_id", "t"."id", '
        if rows == 1:
            found = f'{head}{", ".join([p] * len(_VALUES))} FROM "lms_target" AS "t" '
        else:
            group = f"({', '.join([p] * (len(_VALUES) + 1))})"
            picked = ", ".join(f'"v"."column{n}"' for n in range(1, len(_VALUES) + 1))
            found = (
                f'{head}{picked} FROM "lms_target" AS "t", '
                f'(VALUES {", ".join([group] * rows)}) AS "v" '
            )
        found += f'WHERE "t"."tenant_id" = {p}'
        if targets is not None:
            found += f' AND "t"."id" IN ({", ".join([p] * targets)})'
        if rows > 1:
            found += f' ORDER BY "t"."id", "v"."column{len(_VALUES) + 1}"'
        _statements[key] = found
    return found


def insert(rows: Sequence[dict[str, Any]]) -> None:
    """Write `rows` (made by `row`) for every LMS target of the tenant at hand that receives
    changes: one statement (more only past the driver's parameter limit), as one row per change
    was before targets; none at all when no target names an LMS."""
    if not rows:
        return
    targets = receivers()
    if targets == ():
        return
    tenant = tenancy.owner()
    converters = [Outbox._meta.fields[name].db_value for name in _VALUES]
    fixed = 1 + (len(targets) if targets is not None else 0)
    per_statement = max(1, (prepared.variable_limit() - fixed) // (len(_VALUES) + 1))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params: list[Any] = []
        for number, values in enumerate(chunk):
            params += [convert(values[n]) for n, convert in zip(_VALUES, converters, strict=True)]
            if len(chunk) > 1:
                params.append(number)
        params.append(tenant)
        params += targets or ()
        statement = _statement(len(chunk), None if targets is None else len(targets))
        database.execute_sql(statement, params)


def user(user_id: str) -> None:
    """A user was created, changed, (de)activated or deleted."""
    insert([row(USER, user_id, None, utcnow())])


def group(group_id: str, member_ids: Sequence[str] = ()) -> None:
    """A group was created or renamed (and these users joined or left it): one INSERT."""
    now = utcnow()
    rows = [row(GROUP, None, group_id, now)]
    insert(rows + [row(MEMBER, uid, group_id, now) for uid in member_ids])


def members(group_id: str, member_ids: Sequence[str]) -> None:
    """These users joined or left the group (the relay looks up which)."""
    now = utcnow()
    insert([row(MEMBER, uid, group_id, now) for uid in member_ids])


def group_members(group_id: str, target: int | None = None) -> None:
    """Every current member's enrolments may change (a rule changed, or the group goes): one
    INSERT … SELECT over the group's memberships and the tenant's targets (or `target`),
    however many there are; nothing when no target receives changes."""
    targets = receivers()
    if targets == () or (target is not None and not receives(target)):
        return
    values = row(MEMBER, None, None, utcnow())
    fields = [Outbox.kind, Outbox.created, Outbox.state, Outbox.attempts]
    where = (Membership.group == group_id) & (LmsTarget.tenant_id == Membership.tenant_id)
    if target is not None:
        where &= LmsTarget.id == target
    elif targets is not None:
        where &= LmsTarget.id.in_(targets)
    query = (
        Membership.select(
            Membership.user,
            Membership.group,
            *(peewee.Value(values[f.name], converter=f.db_value) for f in fields),
            Membership.tenant_id,
            LmsTarget.id,
        )
        .from_(Membership, LmsTarget)
        .where(where)
    )
    # tenant_id named: INSERT … SELECT gets no Python default (the database's: the default one).
    columns = [Outbox.user_id, Outbox.group_id, *fields, Outbox.tenant_id, Outbox.target_id]
    Outbox.insert_from(query.order_by(LmsTarget.id, Membership.user), columns).execute()


_QUEUED = [
    Outbox.kind,
    Outbox.user_id,
    Outbox.group_id,
    Outbox.created,
    Outbox.state,
    Outbox.attempts,
    Outbox.tenant_id,
    Outbox.target_id,
]


def _queued_as(kind: str, now: dt.datetime, target: int) -> tuple[list[Any], list[Any]]:
    """The values an INSERT … SELECT into `_QUEUED` gives every row of one kind for one target:
    (before the user and group columns, after them)."""
    values = row(kind, None, None, now)
    fixed = [
        peewee.Value(values[f.name], converter=f.db_value)
        for f in (Outbox.created, Outbox.state, Outbox.attempts)
    ]
    return [peewee.Value(kind)], [*fixed, peewee.Value(tenancy.owner()), peewee.Value(target)]


def everything_for(target: int) -> None:
    """Queue the tenant's every user, group and membership for one target (one added, or whose
    audiences changed): three INSERT … SELECTs, users first, so accounts exist before cohorts
    are filled. Delivery reads the current state, so a row for something already in step
    changes nothing there. Nothing for a target that receives nothing (`default` without an
    LMS: it starts from `sync_all` once it has one)."""
    if not receives(target):
        return
    now = utcnow()
    kind, fixed = _queued_as(USER, now, target)
    users = User.select(*kind, User.id, peewee.Value(None), *fixed).order_by(User.id)
    Outbox.insert_from(users, _QUEUED).execute()
    _queue_groups(target, now)


def groups_for(target: int, only: Sequence[str] | None = None, but: Sequence[str] = ()) -> None:
    """Queue groups and their memberships for one target — those in `only` (None: every group)
    but not in `but` — so their cohorts are made there and filled with the members the target
    receives (groups it now receives as cohorts): two INSERT … SELECTs, none for a target that
    receives nothing."""
    if receives(target) and (only is None or len(only) > 0):
        _queue_groups(target, utcnow(), only, but)


def _queue_groups(
    target: int, now: dt.datetime, only: Sequence[str] | None = None, but: Sequence[str] = ()
) -> None:
    def picked(query: Any, column: Any) -> Any:
        if only is not None:
            query = query.where(column.in_(list(only)))
        return query.where(column.not_in(list(but))) if but else query

    kind, fixed = _queued_as(GROUP, now, target)
    groups = Group.select(*kind, peewee.Value(None), Group.id, *fixed).order_by(Group.id)
    Outbox.insert_from(picked(groups, Group.id), _QUEUED).execute()
    kind, fixed = _queued_as(MEMBER, now, target)
    memberships = Membership.select(*kind, Membership.user, Membership.group, *fixed).order_by(
        Membership.group, Membership.user
    )
    Outbox.insert_from(picked(memberships, Membership.group), _QUEUED).execute()


@dataclass(frozen=True)
class Synced:
    """One batch of `sync_all`: what it looked at, and how many rows it queued (the others
    were waiting already)."""

    kind: str
    seen: int
    queued: int


def _queue_missing(target: int, kind: str, keys: list[tuple[str | None, str | None]]) -> int:
    """Queue (kind, user, group) for `target` unless the same change waits already: a second
    `sync_all` adds nothing that the first one left waiting."""
    column = Outbox.group_id if kind == GROUP else Outbox.user_id
    waiting = Outbox.select(Outbox.user_id, Outbox.group_id).where(
        (Outbox.target_id == target)
        & (Outbox.kind == kind)
        & (Outbox.state == PENDING)
        & column.in_(list({k[0] if kind != GROUP else k[1] for k in keys}))
    )
    present = set(waiting.tuples())
    now = utcnow()
    tenant = tenancy.owner()
    rows = [
        {**row(kind, user, group_id, now), "tenant_id": tenant, "target_id": target}
        for user, group_id in keys
        if (user, group_id) not in present
    ]
    for start in range(0, len(rows), CHUNK // 10):
        Outbox.insert_many(rows[start : start + CHUNK // 10]).execute()
    return len(rows)


def sync_size() -> int:
    """How many rows `sync_all` looks at for one target (for a progress bar): users and groups
    from the row counts (m0005), memberships counted."""
    return count_of(User) + count_of(Group) + Membership.select().count()


def sync_all(target: int, batch: int = CHUNK) -> Iterator[Synced]:
    """A full reconciliation of one target: every user, then every group, then every
    membership (whose delivery also reconciles the user's enrolments) of the tenant queued for
    it, `batch` at a time, each batch in its own short transaction (no lock held over a million
    users). Idempotent: a change already waiting for the target is not queued again, and
    delivery reads the current state, so a row for something already in step changes nothing.
    Yields each batch as it commits (for progress)."""
    for kind, model, order in (
        (USER, User, (User.id,)),
        (GROUP, Group, (Group.id,)),
        (MEMBER, Membership, (Membership.group, Membership.user)),
    ):
        after: tuple[Any, ...] | None = None
        while True:
            query = model.select(*order).order_by(*order).limit(batch)
            if after is not None:
                query = query.where(peewee.Tuple(*order) > peewee.Tuple(*after))
            page = list(query.tuples())
            if not page:
                break
            keys: list[tuple[str | None, str | None]]
            if kind == USER:
                keys = [(key, None) for (key,) in page]
            elif kind == GROUP:
                keys = [(None, key) for (key,) in page]
            else:
                keys = [(user, group_id) for group_id, user in page]
            with database.atomic():
                queued = _queue_missing(target, kind, keys)
            yield Synced(kind, len(page), queued)
            after = page[-1]


def users_for(target: int, condition: Any = None) -> None:
    """Queue the tenant's users (those meeting `condition`, a User condition) for one target, so
    the relay looks at their account there again (the target's actions or switches changed):
    one INSERT … SELECT (none for a target that receives nothing)."""
    if not receives(target):
        return
    values = row(USER, None, None, utcnow())
    fixed = [
        peewee.Value(values[f.name], converter=f.db_value)
        for f in (Outbox.kind, Outbox.created, Outbox.state, Outbox.attempts)
    ]
    query = User.select(
        User.id, *fixed, peewee.Value(tenancy.owner()), peewee.Value(target)
    ).order_by(User.id)
    if condition is not None:
        query = query.where(condition)
    columns = [
        Outbox.user_id,
        Outbox.kind,
        Outbox.created,
        Outbox.state,
        Outbox.attempts,
        Outbox.tenant_id,
        Outbox.target_id,
    ]
    Outbox.insert_from(query, columns).execute()


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
            (earlier.state == PENDING)
            & (earlier.target_id == Outbox.target_id)
            & (earlier.id < Outbox.id)
            & (same_user | same_group)
        )
    )


def _due(now: dt.datetime) -> Any:
    """Waiting, not leased, and its back-off (if any) over."""
    return (
        (Outbox.state == PENDING)
        & (Outbox.next_attempt_at.is_null() | (Outbox.next_attempt_at <= now))
        & (Outbox.lease_until.is_null() | (Outbox.lease_until <= now))
    )


def due_targets(now: dt.datetime | None = None) -> list[tuple[int, int]]:
    """(tenant, target) of every LMS target with a change the relay could claim now, in one
    query: per target, a probe of the `(tenant_id, target_id, state, id)` index that stops at
    the first due row, so the cost follows the number of targets, not the backlog (a million
    waiting rows after an import)."""
    with tenancy.everywhere():
        due = Outbox.select(peewee.SQL("1")).where(
            (Outbox.tenant_id == LmsTarget.tenant_id)
            & (Outbox.target_id == LmsTarget.id)
            & _due(now or utcnow())
        )
        query = (
            LmsTarget.select(LmsTarget.tenant_id, LmsTarget.id)
            .where(fn.EXISTS(due))
            .order_by(LmsTarget.tenant_id, LmsTarget.id)
        )
        return [(tenant, target) for tenant, target in query.tuples()]


def claim(
    limit: int, lease: dt.timedelta, now: dt.datetime | None = None, target: int | None = None
) -> list[Outbox]:
    """Lease up to `limit` of the deliverable rows of one target of the tenant (default: its
    `default`), oldest first, in one short transaction."""
    now = now or utcnow()
    target = lms_targets.default_id() if target is None else target
    with database.atomic():
        query = (
            Outbox.select()
            .where((Outbox.target_id == target) & _due(now) & ~_blocked_by_earlier())
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


def requeue(ids: Sequence[int] | None = None, target: int | None = None) -> int:
    """Dead letters (these, or all; of one target, or of every one) back to the queue, to be
    tried afresh."""
    query = Outbox.update(state=PENDING, attempts=0, next_attempt_at=None, lease_until=None)
    where = Outbox.state == DEAD
    if ids is not None:
        where &= Outbox.id.in_(list(ids))
    if target is not None:
        where &= Outbox.target_id == target
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


def relay_status(limit: int = 50, target: int | None = None) -> RelayStatus:
    """The tenant's relay: of one target, or of all of them."""

    def of(model: Any) -> Any:
        return peewee.SQL("1 = 1") if target is None else model.target_id == target

    pending = Outbox.select(
        fn.COUNT(Outbox.id),
        fn.COUNT(Outbox.last_error),
        fn.MIN(Outbox.created),
    ).where((Outbox.state == PENDING) & of(Outbox))
    backlog, retrying, oldest = pending.tuples().get()
    failing = (
        Outbox.select(Outbox.last_error)
        .where((Outbox.state == PENDING) & Outbox.last_error.is_null(False) & of(Outbox))
        .order_by(Outbox.id.desc())
        .first()
    )
    dead_rows = Outbox.select().where((Outbox.state == DEAD) & of(Outbox))
    last = max(
        (
            as_datetime(moment)
            for moment in (
                LmsUserLink.select(fn.MAX(LmsUserLink.synced_at)).where(of(LmsUserLink)).scalar(),
                LmsCohortLink.select(fn.MAX(LmsCohortLink.synced_at))
                .where(of(LmsCohortLink))
                .scalar(),
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
    """One tenant's line in the relay overview (or one target's: `target_id`)."""

    tenant_id: int
    backlog: int
    retrying: int
    dead_total: int
    oldest: dt.datetime | None
    last_delivery: dt.datetime | None
    target_id: int | None = None  # None: every target of the tenant


def _overview_counts() -> tuple[dict[tuple[int, int], Any], dict[tuple[int, int], dt.datetime]]:
    """Per (tenant, target): (backlog, retrying, dead, oldest), and the latest delivery."""
    waiting = Case(None, [(Outbox.state == PENDING, 1)], 0)
    dead_rows = Case(None, [(Outbox.state == DEAD, 1)], 0)
    retrying = Case(None, [((Outbox.state == PENDING) & Outbox.last_error.is_null(False), 1)], 0)
    oldest = fn.MIN(Case(None, [(Outbox.state == PENDING, Outbox.created)], None))
    with tenancy.everywhere():
        query = Outbox.select(
            Outbox.tenant_id,
            Outbox.target_id,
            fn.SUM(waiting),
            fn.SUM(retrying),
            fn.SUM(dead_rows),
            oldest,
        ).group_by(Outbox.tenant_id, Outbox.target_id)
        counts = {
            (tenant, target): (int(b or 0), int(r or 0), int(d or 0), as_datetime(first))
            for tenant, target, b, r, d, first in query.tuples()
        }
        delivered: dict[tuple[int, int], dt.datetime] = {}
        for link in (LmsUserLink, LmsCohortLink):
            query = link.select(link.tenant_id, link.target_id, fn.MAX(link.synced_at)).group_by(
                link.tenant_id, link.target_id
            )
            for tenant, target, moment in query.tuples():
                moment = as_datetime(moment)
                key = (tenant, target)
                if moment is not None and (key not in delivered or moment > delivered[key]):
                    delivered[key] = moment
    return counts, delivered


def _merged(
    tenant: int, target: int | None, keys: list[tuple[int, int]], counts: Any, delivered: Any
) -> TenantRelay:
    found = [counts.get(k, (0, 0, 0, None)) for k in keys]
    moments = [delivered[k] for k in keys if k in delivered]
    oldest = [f[3] for f in found if f[3] is not None]
    return TenantRelay(
        tenant,
        sum(f[0] for f in found),
        sum(f[1] for f in found),
        sum(f[2] for f in found),
        min(oldest, default=None),
        max(moments, default=None),
        target,
    )


def relay_overview(tenant_ids: Sequence[int], by_target: bool = False) -> list[TenantRelay]:
    """`relay_status`'s counts for many tenants in three grouped queries (not three per
    tenant), in the order of `tenant_ids`: a line per tenant, or (`by_target`) per target,
    each tenant's `default` first."""
    counts, delivered = _overview_counts()
    with tenancy.everywhere():
        targets = list(
            LmsTarget.select(LmsTarget.tenant_id, LmsTarget.id)
            .where(LmsTarget.tenant_id.in_(list(tenant_ids)))
            .order_by(LmsTarget.from_settings.desc(), LmsTarget.id)
            .tuples()
        )
    lines = []
    for tenant in tenant_ids:
        keys = [(t, target) for t, target in targets if t == tenant]
        if by_target:
            lines += [_merged(tenant, k[1], [k], counts, delivered) for k in keys]
        else:
            keys += [k for k in counts if k[0] == tenant and k not in keys]
            lines.append(_merged(tenant, None, keys, counts, delivered))
    return lines


@dataclass(frozen=True)
class TargetBacklog:
    """One LMS target's queue, for the metrics (`app.observability`)."""

    tenant_id: int
    tenant: str  # slug
    target_id: int
    target: str  # name
    default: bool  # the tenant's `default` (its `LMS_*` settings)
    settings: dict[str, str]  # the settings the tenant stored itself (`LMS_URL`, …)
    backlog: int
    dead: int
    oldest: dt.datetime | None


def backlog_by_target() -> list[TargetBacklog]:
    """Every LMS target of every tenant with its waiting rows, dead letters and oldest waiting
    change, in one grouped query (read at each scrape: an index-only count per target, never a
    query per target or a row per change in Python)."""
    waiting = Case(None, [(Outbox.state == PENDING, 1)], 0)
    dead_rows = Case(None, [(Outbox.state == DEAD, 1)], 0)
    oldest = fn.MIN(Case(None, [(Outbox.state == PENDING, Outbox.created)], None))
    columns = (
        LmsTarget.tenant_id,
        Tenant.slug,
        LmsTarget.id,
        LmsTarget.name,
        LmsTarget.from_settings,
        Tenant.settings,
    )
    with tenancy.everywhere():
        query = (
            LmsTarget.select(*columns, fn.SUM(waiting), fn.SUM(dead_rows), oldest)
            .join(Tenant, on=Tenant.id == LmsTarget.tenant_id)
            .join_from(
                LmsTarget,
                Outbox,
                peewee.JOIN.LEFT_OUTER,
                on=(Outbox.tenant_id == LmsTarget.tenant_id) & (Outbox.target_id == LmsTarget.id),
            )
            .group_by(*columns)
            .order_by(LmsTarget.tenant_id, LmsTarget.id)
        )
        return [
            TargetBacklog(
                *(t, slug, i, name, bool(d), json.loads(own or "{}")),
                *(int(b or 0), int(x or 0), as_datetime(o)),
            )
            for t, slug, i, name, d, own, b, x, o in query.tuples()
        ]


@dataclass(frozen=True)
class UserSync:
    """Whether one user is in step with the LMS, and if not, why."""

    lms_id: int | None
    synced_at: dt.datetime | None
    waiting: int
    error: str | None  # a dead letter's reason, or the latest retry's
    dead: bool
    relay_on: bool = True  # False: the tenant has no LMS (nothing is queued for one)

    @property
    def summary(self) -> str:
        if not (self.relay_on or self.dead or self.waiting or self.synced_at):
            return "no LMS is configured (the relay is off)"
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
    # The first target's link (per target: a later issue's `users status`).
    link = (
        LmsUserLink.select()
        .where(LmsUserLink.user_id == user_id)
        .order_by(LmsUserLink.target_id)
        .first()
    )
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
        relay_on=receivers() != (),
    )
