"""Named queries for Groups: the only code that reads and writes group and membership rows.

Members are Users only (RFC 7643 §4.2 allows Groups too; nesting would need cycle checks and
transitive reads, so a Group as member is 400 invalidValue). Each member is one `membership`
row, keyed (group, user) and indexed both ways, so:

- adding or removing members costs a few queries per request whatever the group's size: the
  group row is locked, then `INSERT … ON CONFLICT DO NOTHING RETURNING` / `DELETE … RETURNING`
  touch only the rows named (chunked by `CHUNK` ids), and what they return is the net change
  that bumps `meta.version` and goes to the audit trail;
- reads never build a member list: `MemberFeed` hands out members in chunks of `CHUNK` rows
  (keyset over the user id), so a 100k-member group streams in bounded memory, and a page of
  small groups loads all its members in one query.

Enrolment rules can later hang off `lms_group.id` in tables of their own; nothing here assumes
a group is only a member list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import peewee

from app import etags, patch
from app.errors import (
    InvalidValue,
    Mutability,
    NoTarget,
    NotFound,
    Uniqueness,
)
from app.marshal import coerce, load_resource
from app.store import audit, enrolments, outbox, prepared
from app.store.db import database, locked
from app.store.filter_sql import GROUP_MEMBERS, MEMBER_DISPLAY
from app.store.group_mapping import member, row_values, to_resource
from app.store.models import Group, Membership, User, utcnow
from app.store.paging import Page, PageRequest, Sort, page
from app.store.users import new_id
from scim_schemas import fold, resource_type

GROUP = resource_type("Group")
MEMBERS = next(a for a in GROUP.attributes() if a.name == "members")

# Rows per membership query: bounds memory when streaming and the ids bound in one statement.
CHUNK = 1000


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


# --------------------------------------------------------------------------------------------
# Reading


def _row(group_id: str, *, lock: bool = False) -> Group:
    query = Group.select().where(Group.id == group_id)
    row = prepared.first(locked(query) if lock else query)
    if row is None:
        raise NotFound(f"Group {group_id} not found.")
    return row


def get(group_id: str) -> dict[str, Any]:
    """The group without `members` (one query); stream its members with `MemberFeed`."""
    return to_resource(_row(group_id))


def search(condition: Any, sort: Sort, request: PageRequest) -> Page:
    """One page of groups (without members) and how many match (RFC 7644 §3.4.2.4, RFC 9865
    when `request.keyset`)."""
    found = page(Group.select(), condition, sort, request)
    found.items = [to_resource(row) for row in found.items]
    return found


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
# Members in requests


def member_ids(value: Any) -> list[str]:
    """The user ids a `members` value names (RFC 7643 §4.2), each once, in order.

    Okta sends `{"value", "display"}`, Entra `{"$ref": null, "value"}`; `display` is read-only
    and ignored. Ids are compared folded, as `members.value` is caseExact false.
    """
    elements = coerce(MEMBERS, value if isinstance(value, list) else [value])
    ids: dict[str, None] = {}
    for element in elements:
        if str(element.get("type", "User")).casefold() != "user":
            raise InvalidValue(_ONLY_USERS)
        if not isinstance(element.get("value"), str) or not element["value"]:
            raise InvalidValue("Every member needs a value: the id of a User.")
        ids[fold(element["value"])] = None
    return list(ids)


_ONLY_USERS = (
    "Only Users can be members of a group: nested groups are not supported (members.type "
    "must be 'User')."
)


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
        raise InvalidValue(_ONLY_USERS)
    shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
    raise InvalidValue(f"No such user(s) to add as members: {shown}.")


class _Membership:
    """Single-row membership writes for one locked group, remembering the net change."""

    def __init__(self, group_id: str, keeps_enrolments: bool = False) -> None:
        self.group_id = group_id
        self.keeps_enrolments = keeps_enrolments
        self.added: dict[str, None] = {}
        self.removed: dict[str, None] = {}

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

    def remove_where(self, condition: Any) -> None:
        query = Membership.delete().where((Membership.group == self.group_id) & condition)
        gone = query.returning(Membership.user).tuples().execute()
        self._note((uid for (uid,) in gone), self.removed, self.added)

    def remove(self, ids: Sequence[str]) -> None:
        for part in _chunks(ids):
            self.remove_where(Membership.user.in_(list(part)))

    def remove_all(self) -> None:
        self.remove_where(peewee.SQL("1 = 1"))

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

    def apply(self, operation: patch.Operation) -> None:
        """One PATCH operation on `members` (RFC 7644 §3.5.2) as row inserts and deletes."""
        path, value = operation.path, operation.value
        if path is None:  # pragma: no cover - `expand_operations` gives every operation a path
            raise NoTarget("remove needs a path (RFC 7644 §3.5.2.2).")
        if path.sub is not None:
            raise Mutability("members sub-attributes are immutable or read-only.")
        if operation.op == patch.REMOVE:
            if path.value_filter is not None:
                # Okta: `members[value eq "<id>"]`. A filter that matches nothing is taken as
                # "already gone" rather than 400 noTarget (§3.5.2.2), so a member removed in
                # the LMS meanwhile does not fail Okta's push.
                self.remove_where(GROUP_MEMBERS.condition(path.value_filter))
            elif value in (None, []):
                self.remove_all()
            else:
                # Entra: `{"op":"Remove","path":"members","value":[{"value":"<id>"}]}` removes
                # only the listed members, never the whole list.
                self.remove(member_ids(value))
        elif path.value_filter is not None:
            raise Mutability("members values are immutable: remove and add members instead.")
        elif operation.op == patch.REPLACE:
            self.replace(member_ids(value) if value is not None else [])
        elif value is not None:
            self.add(member_ids(value))


# --------------------------------------------------------------------------------------------
# Writing


def _conflict(exc: peewee.IntegrityError, name: str) -> Exception:
    message = str(exc).lower()
    if "unique_name_key" in message:
        existing = Group.get_or_none(Group.unique_name_key == fold(name))
        where = f" by group {existing.id}" if existing else ""
        return Uniqueness(f"displayName {name!r} is already taken{where}.")
    # A user deleted between the check and the insert fails the membership's foreign key.
    return InvalidValue("A member does not exist (any more).")


def _check_version(row: Group, if_match: str | None) -> None:
    etags.require(if_match, etags.weak(row.version))


def _scalars(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: resource.get(k) for k in ("displayName", "externalId")}


Change = Callable[[dict[str, Any], "_Membership"], dict[str, Any]]


def _update(
    group_id: str,
    change: Change,
    *,
    unique_names: bool,
    if_match: str | None,
    actor: audit.Actor,
    operation: str,
) -> dict[str, Any]:
    """Lock the group row, let `change` move members and return the new group, then store the
    new scalars, bump `meta.version` and audit — only if anything changed (a no-op keeps the
    version, RFC 7644 §3.14). One transaction: a failure anywhere applies nothing."""
    name = ""
    try:
        with database.atomic():
            row = _row(group_id, lock=True)
            _check_version(row, if_match)
            before = to_resource(row)
            members = _Membership(group_id, row.keeps_enrolments)
            after = change(before, members)
            name = after["displayName"]
            changes = audit.diff(_scalars(before), _scalars(after))
            if not changes and not members.changed:
                return before
            values = row_values(after, unique_names)
            values.update(last_modified=utcnow(), version=row.version + 1)  # the row is locked
            Group.update(**values).where(Group.id == group_id).execute()
            audit.record(actor, "Group", group_id, operation, {**changes, **members.audit()})
            members.tell_lms("displayName" in changes)
    except peewee.IntegrityError as exc:
        raise _conflict(exc, name) from exc
    for column, value in values.items():
        setattr(row, column, value)
    return to_resource(row)


def create(
    resource: dict[str, Any],
    members: Sequence[str],
    *,
    unique_names: bool,
    actor: audit.Actor,
) -> dict[str, Any]:
    """Insert a group and its members in one transaction (RFC 7644 §3.3)."""
    group_id = new_id()
    now = utcnow()
    try:
        with database.atomic():
            Group.insert(
                id=group_id,
                created=now,
                last_modified=now,
                version=1,
                **row_values(resource, unique_names),
            ).execute()
            writer = _Membership(group_id)
            if members:
                writer.add(members)
            changes = {**audit.diff({}, _scalars(resource)), **writer.audit()}
            audit.record(actor, "Group", group_id, "create", changes)
            writer.tell_lms(group_changed=True)
    except peewee.IntegrityError as exc:
        raise _conflict(exc, resource["displayName"]) from exc
    return get(group_id)


def replace(
    group_id: str,
    resource: dict[str, Any],
    members: Sequence[str] | None,
    *,
    unique_names: bool,
    if_match: str | None,
    actor: audit.Actor,
) -> dict[str, Any]:
    """PUT (RFC 7644 §3.5.1): new scalars, and the member list when `members` is not None."""

    def change(_current: dict[str, Any], writer: _Membership) -> dict[str, Any]:
        if members is not None:
            writer.replace(members)
        return resource

    return _update(
        group_id,
        change,
        unique_names=unique_names,
        if_match=if_match,
        actor=actor,
        operation="replace",
    )


def modify(
    group_id: str,
    operations: Sequence[patch.Operation],
    *,
    unique_names: bool,
    if_match: str | None,
    actor: audit.Actor,
) -> dict[str, Any]:
    """PATCH (RFC 7644 §3.5.2) in one transaction with the group row locked.

    Operations on `members` become single-row inserts and deletes, in request order; the others
    go through `patch.apply_operations` on the group without its members. Any failure rolls the
    whole request back ("the entire PATCH request SHALL be … not applied").
    """
    on_members: list[patch.Operation] = []
    others: list[patch.Operation] = []
    for operation in patch.expand_operations(GROUP, operations):
        is_members = operation.path is not None and operation.path.attribute.name == MEMBERS.name
        (on_members if is_members else others).append(operation)

    def change(current: dict[str, Any], writer: _Membership) -> dict[str, Any]:
        patched = load_resource(GROUP, patch.apply_operations(GROUP, current, others))
        for operation in on_members:
            writer.apply(operation)
        return patched

    return _update(
        group_id,
        change,
        unique_names=unique_names,
        if_match=if_match,
        actor=actor,
        operation="patch",
    )


def delete(group_id: str, actor: audit.Actor, if_match: str | None = None) -> None:
    """Delete the group and its memberships; the member users stay (RFC 7644 §3.6)."""
    with database.atomic():
        row = _row(group_id, lock=True)
        _check_version(row, if_match)
        # Members leave: they keep what keep rules gave them, and the LMS hears about each one.
        if row.keeps_enrolments:
            enrolments.keep_for_group(group_id)
        outbox.group_members(group_id)
        Membership.delete().where(Membership.group == group_id).execute()
        Group.delete().where(Group.id == group_id).execute()
        changes = {"displayName": {"before": row.display_name}}
        audit.record(actor, "Group", group_id, "delete", changes)
        outbox.group(group_id)
