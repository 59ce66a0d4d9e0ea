"""Listings the `/admin` pages page through: users by filter and search, groups with their member
counts, enrolment rules and relay state, and the audit events of one group.

Every listing is keyset-paged (`app.store.paging`, RFC 9865 style: the rows after the last one
shown, never an OFFSET), so the thousandth page costs what the first does. Text is matched as
a SCIM filter matches it (RFC 7644 §3.4.2.2): folded keys for userName, e-mail and group names,
the folded name columns, `externalId` and id exactly (caseExact); values reach SQL only as
bound parameters.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from peewee import fn

from app.errors import InvalidValue, NotFound
from app.store import enrolments, paging
from app.store.filter_sql import contains, fold_sql
from app.store.models import (
    AuditEvent,
    Group,
    LmsCohortLink,
    Membership,
    Outbox,
    User,
    UserValue,
)
from app.store.outbox import DEAD, PENDING
from app.store.status import Event, _text, summarise
from scim_schemas import fold, identity_key

STATES = ("active", "inactive")


def checked(value: str) -> str:
    """`value` if the database can compare it (no NUL, valid Unicode), else 400 invalidValue."""
    return _text(value)


NO_TYPE = "(none)"  # the user-type choice for users without one


# -- users -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserFilter:
    """What the users page asks for: a search text, a state, a user type, a group (by id)."""

    text: str = ""
    state: str = ""
    user_type: str = ""
    group_id: str = ""

    def __post_init__(self) -> None:
        if self.state not in ("", *STATES):
            raise InvalidValue(f"state must be 'active' or 'inactive', not {self.state!r}.")
        for value in (self.text, self.user_type, self.group_id):
            _text(value)

    @property
    def key(self) -> tuple[str, ...]:
        """What a cursor of this listing must carry (`app.cursors.query_digest`)."""
        return ("users", self.text.strip(), self.state, self.user_type, self.group_id)

    def condition(self) -> Any:
        """The WHERE clause, or None for every user (then the count comes from the counters)."""
        parts = []
        if self.text.strip():
            parts.append(search_condition(self.text))
        if self.state:
            parts.append(User.active == (self.state == "active"))
        if self.user_type == NO_TYPE:
            parts.append(User.user_type.is_null())
        elif self.user_type:
            parts.append(User.user_type == self.user_type)
        if self.group_id:
            members = Membership.select(Membership.user).where(Membership.group == self.group_id)
            parts.append(User.id.in_(members))
        return reduce(operator.and_, parts) if parts else None


def search_condition(text: str) -> Any:
    """Users whose userName, name or an e-mail contains `text` (folded, as SCIM's `co` compares
    them), or whose externalId or id is `text` (caseExact, RFC 7643 §3.1)."""
    text = _text(text.strip())
    key, folded = identity_key(text), fold(text)
    names = (User.display_name, User.given_name, User.family_name, User.formatted_name)
    emails = UserValue.select(UserValue.user).where(
        (UserValue.attr == "emails") & contains(UserValue.value_key, key)
    )
    return (
        contains(User.user_name_key, key)
        | User.id.in_(emails)
        | reduce(operator.or_, (contains(fold_sql(name), folded) for name in names))
        | (User.external_id == text)
        | (User.id == text)
    )


USER_ORDER = paging.Sort(owner_id=User.id, key=User.user_name_key)


def users(wanted: UserFilter, request: paging.PageRequest) -> paging.Page:
    """One page of matching users by userName (as `status.summarise` rows), and how many match."""
    found = paging.page(User.select, wanted.condition(), USER_ORDER, request)
    found.items = summarise(found.items)
    return found


def user_types() -> list[str]:
    """The user types in use, for the filter's choices (`NO_TYPE` when some users have none)."""
    kinds = User.select(fn.COALESCE(User.user_type, NO_TYPE)).distinct().tuples()
    return sorted(kind for (kind,) in kinds)


def user_names(user_ids: list[str]) -> dict[str, str]:
    """userName per id, for naming the members in a group's history (gone users are absent)."""
    found: dict[str, str] = {}
    for start in range(0, len(user_ids), 500):
        part = user_ids[start : start + 500]
        found.update(User.select(User.id, User.user_name).where(User.id.in_(part)).tuples())
    return found


# -- groups ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSync:
    """Where a group stands with the LMS relay: its cohort, changes waiting, failures."""

    lms_id: int | None = None
    synced_at: dt.datetime | None = None
    waiting: int = 0
    failed: int = 0
    error: str | None = None

    @property
    def summary(self) -> str:
        if self.failed:
            return f"{self.failed} change(s) failed: {self.error}"
        if self.waiting:
            return f"{self.waiting} change(s) waiting for the LMS relay"
        if self.synced_at is not None:
            return f"in step with the LMS since {self.synced_at:%Y-%m-%d %H:%M} UTC"
        return "not yet sent to the LMS"


@dataclass(frozen=True)
class GroupRow:
    """A group as the Groups page lists it."""

    id: str
    display_name: str
    external_id: str | None
    created: dt.datetime
    last_modified: dt.datetime
    members: int
    rules: list[enrolments.Rule] = field(default_factory=list)
    relay: GroupSync = GroupSync()


GROUP_ORDER = paging.Sort(owner_id=Group.id, key=Group.display_name_key)


def group_condition(text: str) -> Any:
    """Groups whose displayName contains `text` (folded), or whose externalId or id it is."""
    text = _text(text.strip())
    if not text:
        return None
    key = identity_key(text)
    return contains(Group.display_name_key, key) | (Group.external_id == text) | (Group.id == text)


def _member_counts(group_ids: list[str]) -> dict[str, int]:
    if not group_ids:
        return {}
    query = (
        Membership.select(Membership.group, fn.COUNT(Membership.user))
        .where(Membership.group.in_(group_ids))
        .group_by(Membership.group)
        .tuples()
    )
    return dict(query)


def _relay(group_ids: list[str]) -> dict[str, GroupSync]:
    """Each group's cohort link (the first target's) and its outbox rows, in two queries."""
    if not group_ids:
        return {}
    links: dict[str, tuple[int, dt.datetime]] = {}
    for group_id, lms_id, synced in (
        LmsCohortLink.select(LmsCohortLink.group_id, LmsCohortLink.lms_id, LmsCohortLink.synced_at)
        .where(LmsCohortLink.group_id.in_(group_ids))
        .order_by(LmsCohortLink.target_id.desc())
        .tuples()
    ):
        links[group_id] = (lms_id, synced)
    waiting: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    errors: dict[str, str] = {}
    for group_id, state, error in (
        Outbox.select(Outbox.group_id, Outbox.state, Outbox.last_error)
        .where(Outbox.group_id.in_(group_ids) & Outbox.state.in_((PENDING, DEAD)))
        .order_by(Outbox.id.desc())
        .tuples()
    ):
        if state == DEAD:
            failed[group_id] += 1
            errors.setdefault(group_id, error)
        else:
            waiting[group_id] += 1
    return {
        gid: GroupSync(
            lms_id=links.get(gid, (None, None))[0],
            synced_at=links.get(gid, (None, None))[1],
            waiting=waiting[gid],
            failed=failed[gid],
            error=errors.get(gid),
        )
        for gid in group_ids
    }


def _rows(groups: list[Group]) -> list[GroupRow]:
    ids = [g.id for g in groups]
    counts = _member_counts(ids)
    rules: dict[str, list[enrolments.Rule]] = defaultdict(list)
    for rule in enrolments.rules_of_groups(ids):
        rules[rule.group_id].append(rule)
    relay = _relay(ids)
    return [
        GroupRow(
            id=g.id,
            display_name=g.display_name,
            external_id=g.external_id,
            created=g.created,
            last_modified=g.last_modified,
            members=counts.get(g.id, 0),
            rules=rules[g.id],
            relay=relay[g.id],
        )
        for g in groups
    ]


def groups(text: str, request: paging.PageRequest) -> paging.Page:
    """One page of the groups matching `text` by displayName, as `GroupRow`s."""
    found = paging.page(Group.select, group_condition(text), GROUP_ORDER, request)
    found.items = _rows(found.items)
    return found


def group(group_id: str) -> GroupRow:
    row = Group.get_or_none(Group.id == _text(group_id))
    if row is None:
        raise NotFound(f"Group {group_id} not found.")
    return _rows([row])[0]


def group_choices(chosen: str = "", limit: int = 500) -> list[tuple[str, str]]:
    """(id, displayName) of the first `limit` groups by name, for the users page's filter, and
    the group `chosen` (a group page's link) even when it is not among them."""
    query = Group.select(Group.id, Group.display_name).order_by(Group.display_name_key, Group.id)
    choices = list(query.limit(limit).tuples())
    if chosen and chosen not in {gid for gid, _ in choices}:
        found = Group.select(Group.id, Group.display_name).where(Group.id == chosen).tuples()
        choices += list(found) or [(chosen, f"(no group {chosen})")]
    return choices


def group_events(group_id: str, limit: int = 50) -> list[Event]:
    """A group's audit events, newest first: created, renamed, members joined and left, and by
    which token."""
    query = (
        AuditEvent.select()
        .where((AuditEvent.resource_type == "Group") & (AuditEvent.resource_id == group_id))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
    )
    return [Event.of(row) for row in query]
