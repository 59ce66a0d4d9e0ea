"""Membership rows: a group's members read in chunks and written a row at a time.

Each member is one `membership` row, keyed (group, user) and indexed both ways, so:

- a write costs a few queries per request whatever the group's size: `Writer` runs the member
  commands of a request (`app.patch.member_commands` makes them from every RFC, Okta and Entra
  ID form) as `INSERT … ON CONFLICT DO NOTHING RETURNING` / `DELETE … RETURNING` of only the
  rows named (chunked by `CHUNK` ids), and what they return is the net change that the group's
  writer (`app.store.groups`) audits and versions;
- a read never builds a member list: `MemberFeed` hands out members in chunks of `CHUNK` rows
  (keyset over the user id), so a 100k-member group streams in bounded memory, and a page of
  small groups loads all its members in one query.

Members are Users only (RFC 7643 §4.2 allows Groups too; nesting would need cycle checks and
transitive reads): `app.patch.member_ids` refuses a member whose `type` is not User, and
`Writer` an id that is not a User's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import peewee

from app.errors import InvalidValue
from app.filters import Expr
from app.store import audit, enrolments, outbox
from app.store.db import database
from app.store.filter_sql import GROUP_MEMBERS, MEMBER_DISPLAY
from app.store.group_mapping import member
from app.store.models import AuditEvent, Group, Membership, User, utcnow

# Rows per membership query: bounds memory when streaming and the ids bound in one statement.
CHUNK = 1000


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


# --------------------------------------------------------------------------------------------
# Reading


def _member_rows(where: Any, limit: int | None = None) -> list[tuple[str, str, str]]:
    """(group id, user id, display) rows in primary-key order: a range scan of the key.

    Plain text columns, so the cursor's rows as they are (peewee's per-row conversion would
    double the cost of streaming a big group).
    """
    query = (
        Membership.select(Membership.group, Membership.user, MEMBER_DISPLAY)
        .where(where)
        .order_by(Membership.group, Membership.user)
    )
    if limit is not None:
        query = query.limit(limit)
    return database.execute(query).fetchall()


class MemberFeed:
    """The members of some groups, read in chunks of at most `CHUNK` rows.

    `sizes` takes one grouped COUNT. `chunks(group_id)` then yields a group's members: a run of
    consecutive small groups (in the order given) is loaded by one query when it is first asked
    for; a group larger than a chunk is read with a keyset over the user id, chunk by chunk.
    """

    def __init__(self, group_ids: Sequence[str]) -> None:
        self.chunk = CHUNK
        self.sizes: dict[str, int] = {}
        for ids in _chunks(group_ids):
            query = (
                Membership.select(Membership.group, peewee.fn.COUNT(Membership.user))
                .where(Membership.group.in_(list(ids)))
                .group_by(Membership.group)
                .tuples()
            )
            self.sizes.update(query)
        self._order = [gid for gid in group_ids if self.sizes.get(gid)]
        self._loaded: dict[str, list[dict[str, Any]]] = {}

    def has_members(self, group_id: str) -> bool:
        return self.sizes.get(group_id, 0) > 0

    def chunks(self, group_id: str) -> Iterator[list[dict[str, Any]]]:
        if not self.has_members(group_id):
            return
        if group_id not in self._loaded:
            self._load_run(group_id)
        if group_id in self._loaded:
            yield self._loaded.pop(group_id)
            return
        after = ""
        while True:
            where = (Membership.group == group_id) & (Membership.user > after)
            rows = _member_rows(where, self.chunk)
            if rows:
                yield [member(user_id, display) for _, user_id, display in rows]
                after = rows[-1][1]
            if len(rows) < self.chunk:
                return

    def _load_run(self, group_id: str) -> None:
        run: list[str] = []
        total = 0
        for gid in self._order[self._order.index(group_id) :]:
            total += self.sizes[gid]
            if total > self.chunk:
                break
            run.append(gid)
        if not run:
            return  # larger than a chunk: `chunks` reads it by keyset
        self._loaded = {gid: [] for gid in run}
        for gid, user_id, display in _member_rows(Membership.group.in_(run)):
            self._loaded[gid].append(member(user_id, display))


# --------------------------------------------------------------------------------------------
# Writing


def _check_users(ids: Sequence[str]) -> None:
    """400 invalidValue, naming them, unless every id is a User (a chunk of ids per query)."""
    missing: list[str] = []
    for part in _chunks(ids):
        found = {uid for (uid,) in User.select(User.id).where(User.id.in_(list(part))).tuples()}
        missing += [uid for uid in part if uid not in found]
    if not missing:
        return
    groups = Group.select(Group.id).where(Group.id.in_(missing[:CHUNK])).tuples()
    if any(True for _ in groups):
        raise InvalidValue(
            "Only Users can be members of a group: nested groups are not supported (a member's "
            "value is the id of a Group)."
        )
    shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
    raise InvalidValue(f"No such user(s) to add as members: {shown}.")


class Command(Protocol):
    """A member command (`app.patch.member_commands`): it runs itself as one `Writer` call."""

    def run(self, writer: Writer) -> None: ...


class Writer:
    """Single-row membership writes for one locked group, remembering the net change."""

    def __init__(self, group_id: str, keeps_enrolments: bool = False) -> None:
        self.group_id = group_id
        self.keeps_enrolments = keeps_enrolments
        self.added: dict[str, None] = {}
        self.removed: dict[str, None] = {}

    def execute(self, commands: Iterable[Command]) -> None:
        """Run the commands in request order (RFC 7644 §3.5.2)."""
        for command in commands:
            command.run(self)

    def _note(self, ids: Iterable[str], into: dict[str, None], undo: dict[str, None]) -> None:
        for uid in ids:
            if uid in undo:
                del undo[uid]
            else:
                into[uid] = None

    def add(self, ids: Sequence[str]) -> None:
        """Add members; one already there is left alone (RFC 7644 §3.5.2.1)."""
        _check_users(ids)
        self._insert(ids)

    def _insert(self, ids: Sequence[str]) -> None:
        for part in _chunks(ids):
            rows = [{"group": self.group_id, "user": uid} for uid in part]
            query = Membership.insert_many(rows).on_conflict_ignore().returning(Membership.user)
            self._note((uid for (uid,) in query.tuples().execute()), self.added, self.removed)

    def _delete_where(self, condition: Any) -> None:
        query = Membership.delete().where((Membership.group == self.group_id) & condition)
        gone = query.returning(Membership.user).tuples().execute()
        self._note((uid for (uid,) in gone), self.removed, self.added)

    def remove(self, ids: Sequence[str]) -> None:
        """Remove these members; one not there is already gone."""
        for part in _chunks(ids):
            self._delete_where(Membership.user.in_(list(part)))

    def remove_matching(self, value_filter: Expr) -> None:
        """Remove the members a `members[…]` value filter matches (none is no error)."""
        self._delete_where(GROUP_MEMBERS.condition(value_filter))

    def remove_all(self) -> None:
        self._delete_where(peewee.SQL("1 = 1"))

    def replace(self, ids: Sequence[str]) -> None:
        """Make the members exactly `ids`, touching only the rows that differ."""
        _check_users(ids)
        wanted = set(ids)
        query = Membership.select(Membership.user).where(Membership.group == self.group_id)
        current = {uid for (uid,) in query.tuples()}
        self.remove(sorted(current - wanted))
        self._insert([uid for uid in ids if uid not in current])

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def touch_users(self, actor: audit.Actor, group_name: str) -> None:
        """Members who joined or left: their `groups` changed, so their version and
        lastModified move (an `If-None-Match` never answers 304 with a stale body), and each
        one's own history says which group they joined or left."""
        for part in _chunks([*self.added, *self.removed]):
            _bump_users(User.id.in_(list(part)))
        joined = group_change("after", group_name, self.group_id)
        left = group_change("before", group_name, self.group_id)
        audit.insert(
            [audit.event(actor, "User", uid, "group_join", joined) for uid in self.added]
            + [audit.event(actor, "User", uid, "group_leave", left) for uid in self.removed]
        )

    def audit(self) -> dict[str, Any]:
        """`{"members": {"added": [...], "removed": [...]}}` with user ids, when anything moved."""
        if not self.changed:
            return {}
        return {"members": {"added": list(self.added), "removed": list(self.removed)}}

    def tell_lms(self, group_changed: bool) -> None:
        """Leavers keep what keep rules gave them; the outbox hears about the group (when it was
        created or renamed) and each member who joined or left — in one INSERT."""
        if self.removed and self.keeps_enrolments:
            enrolments.keep_for_leavers(self.group_id, list(self.removed))
        moved = [*self.added, *self.removed]
        if group_changed:
            outbox.group(self.group_id, moved)
        elif moved:
            outbox.members(self.group_id, moved)


def group_change(side: str, group_name: str, group_id: str) -> dict[str, Any]:
    """A user's audit change for joining (`after`) or leaving (`before`) a group."""
    return {"group": {side: group_name}, "groupId": {side: group_id}}


def _bump_users(condition: Any) -> None:
    User.update(version=User.version + 1, last_modified=utcnow()).where(condition).execute()


def _members_of(group_id: str) -> peewee.SelectQuery:
    return Membership.select(Membership.user).where(Membership.group == group_id)


def touch_members(group_id: str) -> None:
    """Every member's `groups[].display` changed with the group's name: their versions move."""
    _bump_users(User.id.in_(_members_of(group_id)))


def leave_all(group_id: str, group_name: str, keeps_enrolments: bool, actor: audit.Actor) -> None:
    """Every member leaves a group that is being deleted (RFC 7644 §3.6: the users stay): they
    keep what keep rules gave them, the LMS hears about each one, their versions move and their
    histories say so, all without reading the list into memory."""
    if keeps_enrolments:
        enrolments.keep_for_group(group_id)
    outbox.group_members(group_id)
    _bump_users(User.id.in_(_members_of(group_id)))
    changes = json.dumps(group_change("before", group_name, group_id), sort_keys=True)
    columns = (
        AuditEvent.at,
        AuditEvent.token_name,
        AuditEvent.request_id,
        AuditEvent.resource_type,
        AuditEvent.resource_id,
        AuditEvent.operation,
        AuditEvent.changes,
        AuditEvent.tenant_id,  # INSERT … SELECT gets no Python default: name the tenant
    )
    values = [utcnow(), actor.token_name, actor.request_id, "User"]
    events = Membership.select(
        *map(peewee.Value, values),
        Membership.user,
        peewee.Value("group_leave"),
        peewee.Value(changes),
        Membership.tenant_id,
    ).where(Membership.group == group_id)
    AuditEvent.insert_from(events, columns).execute()
    Membership.delete().where(Membership.group == group_id).execute()
