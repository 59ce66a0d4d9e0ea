"""Group rows: reading groups and writing them, each write in one transaction.

A group (an LMS audience) is its row in `lms_group` (displayName, externalId, version), its
members (`app.store.memberships`: one row each, read in chunks, written a row at a time by the
commands `app.patch` makes) and the enrolment rules that hang off it (`app.store.enrolments`).
The writes here lock the group row, run the member commands, then store the new scalars, move
`meta.version` on and audit — or, when nothing changed, keep the version (RFC 7644 §3.14).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import peewee

from app import etags
from app.errors import InvalidValue, NotFound, Uniqueness
from app.store import audit, collisions, memberships, outbox, prepared
from app.store.db import database, locked
from app.store.group_mapping import row_values, to_resource
from app.store.models import Group, utcnow
from app.store.paging import Page, PageRequest, Sort, page
from app.store.users import new_id
from scim_schemas import identity_key

# The group's new resource (without members) from its current one: a PUT's body, or a PATCH's
# operations on the attributes other than `members`.
Change = Callable[[dict[str, Any]], dict[str, Any]]


# --------------------------------------------------------------------------------------------
# Reading


def _row(group_id: str, *, lock: bool = False) -> Group:
    query = Group.select().where(Group.id == group_id)
    row = prepared.first(locked(query) if lock else query)
    if row is None:
        raise NotFound(f"Group {group_id} not found.")
    return row


def get(group_id: str) -> dict[str, Any]:
    """The group without `members` (one query); stream its members with a `MemberFeed`."""
    return to_resource(_row(group_id))


def by_ids(group_ids: list[str]) -> list[dict[str, Any]]:
    """The groups (without `members`), in no particular order (one deleted meanwhile is left
    out)."""
    return [
        to_resource(row) for row in prepared.rows(Group.select().where(Group.id.in_(group_ids)))
    ]


def search(condition: Any, sort: Sort, request: PageRequest) -> Page:
    """One page of groups (without members) and how many match (RFC 7644 §3.4.2.4, RFC 9865
    when `request.keyset`)."""
    found = page(Group.select, condition, sort, request, shape="groups")
    found.items = [to_resource(row) for row in found.items]
    return found


# --------------------------------------------------------------------------------------------
# Writing


def _conflict(exc: peewee.IntegrityError, name: str) -> Exception:
    message = str(exc).lower()
    if "unique_name_key" in message:
        existing = Group.get_or_none(Group.unique_name_key == identity_key(name))
        where = f" by group {existing.id}" if existing else ""
        return Uniqueness(f"displayName {name!r} is already taken{where}.")
    # A user deleted between the check and the insert fails the membership's foreign key.
    return InvalidValue("A member does not exist (any more).")


def _kept_mark(stored: str | None, values: dict[str, Any]) -> str | None:
    """A group whose name was marked as a duplicate (`collisions`) keeps the mark while it
    keeps the name; returns the mark kept, for an attempt to drop it."""
    if not collisions.is_marked(stored) or values["unique_name_key"] != collisions.plain(stored):
        return None
    values["unique_name_key"] = stored
    return stored


def _scalars(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: resource.get(k) for k in ("displayName", "externalId")}


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
            writer = memberships.Writer(group_id)
            if members:
                writer.add(members)
            changes = {**audit.diff({}, _scalars(resource)), **writer.audit()}
            audit.record(actor, "Group", group_id, "create", changes)
            writer.touch_users(actor, resource["displayName"])
            writer.tell_lms(group_changed=True)
    except peewee.IntegrityError as exc:
        raise _conflict(exc, resource["displayName"]) from exc
    return get(group_id)


def modify(
    group_id: str,
    change: Change,
    commands: Iterable[memberships.Command] = (),
    *,
    unique_names: bool,
    if_match: str | None,
    actor: audit.Actor,
    operation: str,
) -> dict[str, Any]:
    """PUT (RFC 7644 §3.5.1) or PATCH (§3.5.2) with the group row locked: `change` gives the new
    group from the current one, then the member commands run in order. One transaction: a
    failure anywhere applies nothing ("the entire PATCH request SHALL be … not applied")."""
    name = ""
    try:
        with database.atomic():
            row = _row(group_id, lock=True)
            etags.require(if_match, etags.weak(row.version))
            before = to_resource(row)
            after = change(before)
            name = after["displayName"]
            members = memberships.Writer(group_id, row.keeps_enrolments)
            members.execute(commands)
            changes = audit.diff(_scalars(before), _scalars(after))
            if not changes and not members.changed:
                return before
            values = row_values(after, unique_names)
            values.update(last_modified=utcnow(), version=row.version + 1)  # the row is locked
            marked = _kept_mark(row.unique_name_key, values)
            Group.update(**values).where(Group.id == group_id).execute()
            if marked:
                collisions.unmark(Group.unique_name_key, Group.id == group_id, marked)
            audit.record(actor, "Group", group_id, operation, {**changes, **members.audit()})
            members.touch_users(actor, name)
            if "displayName" in changes:
                memberships.touch_members(group_id)
            # A rename reaches the LMS: the cohort, and a course that follows renames.
            members.tell_lms("displayName" in changes or "externalId" in changes)
    except peewee.IntegrityError as exc:
        raise _conflict(exc, name) from exc
    for column, value in values.items():
        setattr(row, column, value)
    return to_resource(row)


def delete(group_id: str, actor: audit.Actor, if_match: str | None = None) -> None:
    """Delete the group and its memberships; the member users stay (RFC 7644 §3.6)."""
    with database.atomic():
        row = _row(group_id, lock=True)
        etags.require(if_match, etags.weak(row.version))
        memberships.leave_all(group_id, row.display_name, row.keeps_enrolments, actor)
        Group.delete().where(Group.id == group_id).execute()
        changes = {"displayName": {"before": row.display_name}}
        audit.record(actor, "Group", group_id, "delete", changes)
        outbox.group(group_id)
