"""Read-only questions operators ask, shared by the CLI and the `/admin` pages.

"Is alice active, since when, and who changed it?" — `find_user` + `user_status`. Users are
matched as a SCIM filter would match them (RFC 7644 §3.4.2.2: `caseExact` attributes exactly,
the others folded), on the same normalised key columns and indexes (`user_name_key`, e-mail
`value_key`, group `display_name_key`); values only ever reach SQL as bound parameters.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from peewee import fn

from app.errors import InvalidValue, NotFound
from app.store import enrolments, lms_actions, outbox
from app.store.models import ApiToken, AuditEvent, Group, Membership, User, UserValue, utcnow
from app.store.tokens import state as token_state
from scim_schemas import identity_key

# Operations that set `active` (see `users._operation_name`); `create` sets it too.
STATE_OPERATIONS = ("create", "activate", "deactivate")
PROVISIONED = ("User", "Group")
CHUNK = 1000


class Ambiguous(LookupError):
    """More than one user matches a reference (e.g. a shared e-mail address)."""


@dataclass(frozen=True)
class Event:
    """One audit event with its changes decoded."""

    id: int
    at: dt.datetime
    token_name: str | None
    request_id: str | None
    resource_type: str
    resource_id: str
    operation: str
    changes: dict[str, Any]

    @classmethod
    def of(cls, row: AuditEvent) -> Event:
        return cls(
            row.id,
            row.at,
            row.token_name,
            row.request_id,
            row.resource_type,
            row.resource_id,
            row.operation,
            json.loads(row.changes) if row.changes else {},
        )

    def summary(self, width: int = 120) -> str:
        """`active: true → false; title: Lead` (a value set from nothing shows alone), clipped."""
        parts = []
        for key, change in self.changes.items():
            if isinstance(change, dict) and ("before" in change or "after" in change):
                before, after = change.get("before"), change.get("after")
                if before is None:
                    parts.append(f"{key}: {_short(after)}")
                else:
                    parts.append(f"{key}: {_short(before)} → {_short(after)}")
            else:
                parts.append(f"{key}: changed")
        text = "; ".join(parts)
        return text if len(text) <= width else text[: width - 1] + "…"

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat() + "Z",
            "token": self.token_name,
            "requestId": self.request_id,
            "resourceType": self.resource_type,
            "resourceId": self.resource_id,
            "operation": self.operation,
            "changes": self.changes,
        }


def _short(value: Any) -> str:
    text = (
        json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value
    )
    return text if len(text) <= 40 else text[:39] + "…"


def _text(value: str) -> str:
    """`value` if it can be stored text: PostgreSQL refuses NUL, and a lone surrogate cannot
    be encoded (what the filter parser refuses in a value, RFC 7644 §3.4.2.2)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{value!r} is not valid Unicode text.") from None
    if "\x00" in value:
        raise InvalidValue(f"{value!r} contains a NUL character.")
    return value


def _with_email(condition: Any) -> Any:
    """Users with an e-mail address whose folded value (`value_key`) meets `condition`."""
    emails = UserValue.select(UserValue.user).where((UserValue.attr == "emails") & condition)
    return User.id.in_(emails)


# -- users ---------------------------------------------------------------------------------


def find_user(ref: str) -> User:
    """The user whose id, userName, externalId or e-mail is `ref`, tried in that order."""
    ref = _text(ref)
    key = identity_key(ref)
    # id and externalId are caseExact, userName and emails.value are not (RFC 7643 §8.7.1).
    for path, condition in (
        ("id", User.id == ref),
        ("userName", User.user_name_key == key),
        ("externalId", User.external_id == ref),
        ("emails.value", _with_email(UserValue.value_key == key)),
    ):
        rows = list(User.select().where(condition).limit(2))
        if len(rows) > 1:
            raise Ambiguous(f"More than one user has {path} {ref!r}; use the id.")
        if rows:
            return rows[0]
    raise NotFound(f"No user with id, userName, externalId or e-mail {ref!r}.")


def user_by(*, user_id: str | None = None, user_name: str | None = None) -> User | None:
    """The user with this id, else with this userName (its identity key), or None."""
    if user_id:
        return User.get_or_none(User.id == _text(user_id))
    if user_name:
        return User.get_or_none(User.user_name_key == identity_key(_text(user_name)))
    return None


def audited_user(user_id: str) -> bool:
    """Whether the audit trail has events of a user with this id (a deleted user's, say)."""
    events = AuditEvent.select().where(
        (AuditEvent.resource_type == "User") & (AuditEvent.resource_id == user_id)
    )
    return events.exists()


@dataclass(frozen=True)
class UserStatus:
    """A user's state, where it came from, and what happened to them lately."""

    user: User
    emails: list[str]
    groups: list[tuple[str, str]]  # (id, displayName)
    state_event: Event | None  # the event that set the current `active` value
    last_event: Event | None
    history: list[Event] = field(default_factory=list)
    enrolments: list[dict[str, str]] = field(default_factory=list)  # [{courseId, role}]
    lms: outbox.UserSync | None = None  # in step with the LMS, or why not
    # Per LMS target: the actions that apply to the user's type, their account or why none.
    targets: list[lms_actions.TargetView] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "active" if self.user.active else "inactive"

    @property
    def state_since(self) -> dt.datetime:
        if self.state_event is None or self.state_event.operation == "create":
            return self.user.created
        return self.state_event.at

    @property
    def changed_by(self) -> str | None:
        return self.state_event.token_name if self.state_event else None

    def as_json(self) -> dict[str, Any]:
        user = self.user
        return {
            "id": user.id,
            "userName": user.user_name,
            "externalId": user.external_id,
            "name": display_name(user),
            "emails": self.emails,
            "userType": user.user_type,
            "active": user.active,
            "stateSince": self.state_since.isoformat() + "Z",
            "stateChangedBy": self.changed_by,
            "created": user.created.isoformat() + "Z",
            "lastModified": user.last_modified.isoformat() + "Z",
            "groups": [{"id": gid, "displayName": name} for gid, name in self.groups],
            "lastEvent": self.last_event.as_json() if self.last_event else None,
            "history": [event.as_json() for event in self.history],
            "enrolments": self.enrolments,
            "lms": self.lms.as_json() if self.lms else None,
            "lmsTargets": [target.as_json() for target in self.targets],
        }


def display_name(user: User) -> str:
    given = " ".join(p for p in (user.given_name, user.family_name) if p)
    return user.display_name or user.formatted_name or given or ""


def _user_events(user_id: str) -> Any:
    return AuditEvent.select().where(
        (AuditEvent.resource_type == "User") & (AuditEvent.resource_id == user_id)
    )


def user_status(user_id: str, history: int = 10) -> UserStatus:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found.")
    newest = (AuditEvent.at.desc(), AuditEvent.id.desc())
    recent = [Event.of(row) for row in _user_events(user_id).order_by(*newest).limit(history)]
    state_row = (
        _user_events(user_id)
        .where(AuditEvent.operation.in_(STATE_OPERATIONS))
        .order_by(*newest)
        .first()
    )
    groups = list(
        Group.select(Group.id, Group.display_name)
        .join(Membership)
        .where(Membership.user == user_id)
        .order_by(Group.display_name, Group.id)
        .tuples()
    )
    return UserStatus(
        user=user,
        emails=[e for emails in _emails([user_id]).values() for e in emails],
        groups=groups,
        state_event=Event.of(state_row) if state_row else None,
        last_event=recent[0] if recent else None,
        history=recent,
        enrolments=enrolments.of_users([user_id]).get(user_id, []),
        lms=outbox.user_sync(user_id),
        targets=lms_actions.user_targets(user),
    )


def _emails(user_ids: list[str]) -> dict[str, list[str]]:
    """E-mail addresses per user, primary first (one query)."""
    found: dict[str, list[str]] = defaultdict(list)
    if user_ids:
        query = (
            UserValue.select(UserValue.user, UserValue.value)
            .where((UserValue.attr == "emails") & UserValue.user.in_(user_ids))
            .order_by(
                UserValue.user, fn.COALESCE(UserValue.primary, False).desc(), UserValue.position
            )
            .tuples()
        )
        for user_id, value in query:
            found[user_id].append(value)
    return found


def summarise(users: list[User]) -> list[dict[str, Any]]:
    """Rows for listings: the columns an operator scans, with the primary e-mail."""
    emails = _emails([u.id for u in users])
    return [
        {
            "id": u.id,
            "userName": u.user_name,
            "name": display_name(u),
            "email": (emails.get(u.id) or [None])[0],
            "userType": u.user_type,
            "active": u.active,
            "externalId": u.external_id,
            "created": u.created,
            "lastModified": u.last_modified,
        }
        for u in users
    ]


def user_condition(*, inactive: bool = False, group_id: str | None = None) -> Any:
    """Users to list: all, or only inactive ones, or members of a group (its id: the caller
    resolves a name, refusing one that two groups share)."""
    condition = User.active == False if inactive else None  # noqa: E712 - SQL, not Python
    if group_id:
        in_group = User.id.in_(
            Membership.select(Membership.user).where(Membership.group == group_id)
        )
        condition = in_group if condition is None else condition & in_group
    return condition


def count_users(condition: Any) -> int:
    query = User.select()
    return (query.where(condition) if condition is not None else query).count()


def iter_users(condition: Any, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
    """Every matching user, in id order, `chunk` rows per query (keyset paging: constant
    memory and no OFFSET, whatever the table's size)."""
    last = ""
    while True:
        where = User.id > last
        if condition is not None:
            where &= condition
        rows = list(User.select().where(where).order_by(User.id).limit(chunk))
        yield from summarise(rows)
        if len(rows) < chunk:
            return
        last = rows[-1].id


# -- audit ---------------------------------------------------------------------------------


def _events_query(resource_id: str | None, since: dt.datetime | None) -> Any:
    query = AuditEvent.select()
    if resource_id is not None:
        query = query.where(AuditEvent.resource_id == resource_id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    return query


def count_events(*, resource_id: str | None = None, since: dt.datetime | None = None) -> int:
    """How many events `events` would stream (without a limit)."""
    return _events_query(resource_id, since).count()


def events(
    *,
    resource_id: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> Iterator[Event]:
    """Audit events, oldest first (a log) or newest first (a feed), streamed."""
    query = _events_query(resource_id, since)
    order = (AuditEvent.at, AuditEvent.id)
    query = query.order_by(*(o.desc() for o in order) if newest_first else order)
    if limit is not None:
        query = query.limit(limit)
    for row in query.iterator():
        yield Event.of(row)


# -- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    users: int
    active: int
    inactive: int
    by_type: list[tuple[str, int]]
    groups: int
    tokens: dict[str, int]  # state → count
    days: list[dt.date]
    activity: dict[str, list[int]]  # operation → count per day in `days`

    def as_json(self) -> dict[str, Any]:
        return {
            "users": {"total": self.users, "active": self.active, "inactive": self.inactive},
            "byUserType": dict(self.by_type),
            "groups": self.groups,
            "tokens": self.tokens,
            "activity": {
                "days": [d.isoformat() for d in self.days],
                "byOperation": self.activity,
            },
        }


def activity(days: int, today: dt.date | None = None) -> tuple[list[dt.date], dict[str, list[int]]]:
    """Provisioning events (Users and Groups) per UTC day and operation, for the last `days`."""
    today = today or utcnow().date()
    first = today - dt.timedelta(days=days - 1)
    day_list = [first + dt.timedelta(days=n) for n in range(days)]
    index = {day: n for n, day in enumerate(day_list)}
    day = fn.DATE(AuditEvent.at)
    query = (
        AuditEvent.select(day.alias("day"), AuditEvent.operation, fn.COUNT(AuditEvent.id))
        .where(
            (AuditEvent.at >= dt.datetime.combine(first, dt.time()))
            & AuditEvent.resource_type.in_(PROVISIONED)
        )
        .group_by(day, AuditEvent.operation)
        .tuples()
    )
    by_operation: dict[str, list[int]] = {}
    for when, operation, count in query:
        # SQLite answers 'YYYY-MM-DD', PostgreSQL a date.
        n = index.get(dt.date.fromisoformat(str(when)[:10]))
        if n is not None:
            by_operation.setdefault(operation, [0] * days)[n] += count
    return day_list, dict(sorted(by_operation.items()))


def stats(days: int = 7) -> Stats:
    states = dict(User.select(User.active, fn.COUNT(User.id)).group_by(User.active).tuples())
    by_type = list(
        User.select(fn.COALESCE(User.user_type, "(none)"), fn.COUNT(User.id))
        .group_by(fn.COALESCE(User.user_type, "(none)"))
        .order_by(fn.COUNT(User.id).desc())
        .tuples()
    )
    tokens: dict[str, int] = defaultdict(int)
    now = utcnow()
    for token in ApiToken.select():
        tokens[token_state(token, now)] += 1
    day_list, by_operation = activity(days)
    active, inactive = states.get(True, 0), states.get(False, 0)
    return Stats(
        users=active + inactive,
        active=active,
        inactive=inactive,
        by_type=by_type,
        groups=Group.select().count(),
        tokens=dict(tokens),
        days=day_list,
        activity=by_operation,
    )
