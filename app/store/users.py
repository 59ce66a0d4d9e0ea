"""Named queries for Users: the only code that reads and writes user rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import peewee
from peewee import fn

from app import etags
from app.errors import NotFound, Uniqueness
from app.store import audit, collisions, enrolments, outbox, prepared
from app.store.db import database, is_postgres, locked
from app.store.models import (
    EnrolmentRule,
    Group,
    KeptEnrolment,
    Membership,
    User,
    UserAddress,
    UserValue,
    utcnow,
)
from app.store.paging import Page, PageRequest, Sort, page
from app.store.user_mapping import (
    ADDRESS_COLUMNS,
    VALUE_ATTRIBUTES,
    child_rows,
    row_values,
    to_resource,
)
from scim_schemas import identity_key

KEEP = object()  # "leave the stored password hash as it is"


def new_id() -> str:
    return uuid.uuid4().hex


def _name_taken_query(keys: list[str]) -> peewee.SelectBase:
    """The user holding the userName key `keys[0]` (other than the user `keys[1]`, if given)."""
    query = User.select(User.id).where(User.user_name_key == keys[0])
    if len(keys) > 1:
        query = query.where(User.id != keys[1])
    return query.limit(1)


# -- reading: a user (or a page of users) and its children in one statement -----------------


class _Value(NamedTuple):
    """A UserValue row as `to_resource` reads it (the same attributes), from the read's JSON."""

    attr: str
    position: int
    value: str | None
    type: str | None
    primary: bool | None
    display: str | None


class _Address(NamedTuple):
    """A UserAddress row as `to_resource` reads it (the same attributes), from the read's JSON."""

    position: int
    formatted: str | None
    street_address: str | None
    locality: str | None
    region: str | None
    postal_code: str | None
    country: str | None
    type: str | None
    primary: bool | None


def _aggregate(query: peewee.ModelSelect, *columns: Any) -> peewee.ModelSelect:
    """`query` narrowed to one JSON array of its rows' `columns` (each row an array), for a
    correlated subquery in a user's SELECT list; NULL when there is no row (PostgreSQL)."""
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        return query.select(fn.json_agg(fn.json_build_array(*columns)))
    return query.select(fn.json_group_array(fn.json_array(*columns)))


def _values_json() -> Any:
    values = UserValue.select().where(UserValue.user == User.id)
    columns = [UserValue.attr, UserValue.position, UserValue.value, UserValue.type]
    return _aggregate(values, *columns, UserValue.primary, UserValue.display).alias(_VALUES)


def _addresses_json() -> Any:
    addresses = UserAddress.select().where(UserAddress.user == User.id)
    columns = [UserAddress.position, *ADDRESS_COLUMNS.values()]
    return _aggregate(addresses, *columns).alias(_ADDRESSES)


def _groups_json() -> Any:
    groups = (
        Membership.select()
        .join(Group, on=(Group.id == Membership.group) & (Group.tenant_id == Membership.tenant_id))
        .where(Membership.user == User.id)
    )
    return _aggregate(groups, Group.id, Group.display_name).alias(_GROUPS)


def _rules_json() -> Any:
    on = (EnrolmentRule.group == Membership.group) & (
        EnrolmentRule.tenant_id == Membership.tenant_id
    )
    rules = Membership.select().join(EnrolmentRule, on=on).where(Membership.user == User.id)
    return _aggregate(rules, EnrolmentRule.course_id, EnrolmentRule.role).alias(_RULES)


def _kept_json() -> Any:
    kept = KeptEnrolment.select().where(KeptEnrolment.user == User.id)
    return _aggregate(kept, KeptEnrolment.course_id, KeptEnrolment.role).alias(_KEPT)


_VALUES, _ADDRESSES, _GROUPS, _RULES, _KEPT = (
    "read_values",
    "read_addresses",
    "read_groups",
    "read_rules",
    "read_kept",
)
# The user's e-mails (and other values), addresses, groups and enrolments (by its groups'
# rules, and kept) as five correlated subqueries, so that one statement reads a user, or a page
# of them, with everything its resource shows. Each child table is scoped to the tenant by its
# own `select()`, and each join stays within the child row's tenant; their SQL is made once
# (`prepared.Column`).
CHILDREN = [
    prepared.Column(User, f"user_{build.__name__}", build)
    for build in (_values_json, _addresses_json, _groups_json, _rules_json, _kept_json)
]
# Without enrolment rules or kept enrolments (`outbox.enrolments_in_use`) the two enrolment
# subqueries are left out: no work for a feature that is off.
WITHOUT_ENROLMENTS = CHILDREN[:3]


def _with_children(query: peewee.ModelSelect, enrolments: bool | None = None) -> peewee.ModelSelect:
    """`query` (a `User.select()`) with each user's children as JSON columns (`CHILDREN`);
    the enrolment ones when `enrolments` (default: when the tenant has any to compute)."""
    if enrolments is None:
        enrolments = outbox.enrolments_in_use()
    return query.select_extend(*(CHILDREN if enrolments else WITHOUT_ENROLMENTS))


def _rows(found: Any) -> list[Any]:
    """A JSON column's rows: text on SQLite, already parsed by psycopg2; NULL is none."""
    if found is None:
        return []
    return json.loads(found) if isinstance(found, str) else found


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)  # SQLite's JSON has 1 and 0 for booleans


def _parts(users: list[User]) -> Iterator[tuple[User, list[Any], list[Any], list[Any], Any]]:
    """Each user read with its children (`_with_children`) as the arguments of `to_resource`:
    the row, its values, addresses, groups and enrolments (None without any)."""
    pairs: dict[str, set[tuple[str, str]]] = {u.id: set() for u in users}
    for u in users:
        given = _rows(getattr(u, _RULES, None)) + _rows(getattr(u, _KEPT, None))
        pairs[u.id].update((c, r) for c, r in given)
    courses = enrolments.listed({uid: found for uid, found in pairs.items() if found})
    for u in users:
        values = [_Value(*v[:4], _flag(v[4]), v[5]) for v in _rows(getattr(u, _VALUES))]
        addresses = [_Address(*a[:-1], _flag(a[-1])) for a in _rows(getattr(u, _ADDRESSES))]
        groups = [
            {"value": group_id, "display": display, "type": "direct"}
            for group_id, display in sorted(_rows(getattr(u, _GROUPS)))
        ]
        yield u, values, addresses, groups, courses.get(u.id)


def _read(users: list[User]) -> list[dict[str, Any]]:
    """Resources for rows read with their children (`_with_children`)."""
    return [to_resource(*parts) for parts in _parts(users)]


def _read_query(ids: list[str]) -> peewee.SelectBase:
    return _with_children(User.select().where(User.id == ids[0]), enrolments=True)


def _plain_read_query(ids: list[str]) -> peewee.SelectBase:
    return _with_children(User.select().where(User.id == ids[0]), enrolments=False)


def _read_one(user_id: str) -> list[User]:
    """The user's row with its children (`CHILDREN`) in one statement, its SQL made once."""
    if outbox.enrolments_in_use():
        found = prepared.models(User, "user_read_by_id", _read_query, [user_id])
    else:
        found = prepared.models(User, "user_plain_read_by_id", _plain_read_query, [user_id])
    if not found:
        raise NotFound(f"User {user_id} not found.")
    return found


def _lock_query(ids: list[str]) -> peewee.SelectBase:
    return locked(User.select(User.id).where(User.id == ids[0]))


def _read_locked(user_id: str) -> tuple[User, dict[str, Any], list[dict[str, str]] | None]:
    """A writer's read: the user, locked, and its resource. The enrolments come apart from the
    resource: writers compare resources without them, and a user's own change never changes
    them (they follow its groups).

    On PostgreSQL the row is locked first and read after, in two statements: a statement that
    waited for the lock still reads with the snapshot it started with, so a one-statement
    `SELECT … FOR UPDATE` would read the children as they were before the writer it waited for
    (a lost update). SQLite's writer holds the database's lock already: one statement."""
    if is_postgres() and not prepared.tuples("user_lock", _lock_query, [user_id]):
        raise NotFound(f"User {user_id} not found.")
    found = _read_one(user_id)
    user, values, addresses, groups, courses = next(_parts(found))
    return user, to_resource(user, values, addresses, groups), courses


def by_ids(user_ids: list[str]) -> list[dict[str, Any]]:
    """The resources of these users, in no particular order (one deleted meanwhile is left out)."""
    return _read(prepared.rows(_with_children(User.select().where(User.id.in_(user_ids)))))


def get(user_id: str) -> dict[str, Any]:
    """One statement: the user row and all its children."""
    return _read(_read_one(user_id))[0]


def conflict(
    resource: dict[str, Any], *, unique_emails: bool, exclude_id: str | None = None
) -> Uniqueness | None:
    """The uniqueness clash `resource` would cause, naming the other user so that an IdP can
    link it (a retried POST meets 409 with the existing id), or None. E-mail values clash only
    when `unique_emails` (the app's `UNIQUE_EMAILS`).

    Only a cheap indexed look-up: the unique indexes still decide, so a create that races past
    this check is refused by the database all the same.
    """
    name = resource.get("userName")
    if isinstance(name, str):
        keys = [identity_key(name)] if exclude_id is None else [identity_key(name), exclude_id]
        # Every retried POST of Okta's asks this: its SQL is made once (`prepared`).
        if found := prepared.tuples("user_name_taken", _name_taken_query, keys):
            return Uniqueness(f"userName {name!r} is already taken by user {found[0][0]}.")
    keys = [identity_key(e["value"]) for e in resource.get("emails") or () if e.get("value")]
    if unique_emails and keys:
        rows = UserValue.select(UserValue.user).where(UserValue.unique_key.in_(keys))
        if exclude_id is not None:
            rows = rows.where(UserValue.user != exclude_id)
        if (row := rows.first()) is not None:
            return Uniqueness(
                f"An e-mail address of this user is already in use by user {row.user_id}."
            )
    return None


def _conflict(
    resource: dict[str, Any], unique_emails: bool, exclude_id: str | None = None
) -> Uniqueness:
    found = conflict(resource, unique_emails=unique_emails, exclude_id=exclude_id)
    return found or Uniqueness("The resource conflicts with an existing one.")


def _write_children(
    user_id: str, resource: dict[str, Any], unique_emails: bool, marks: dict[str, str] | None = None
) -> None:
    """Insert the user's value and address rows; an e-mail whose key was marked as a duplicate
    (`collisions`) keeps its mark unless the address is now free."""
    values, addresses = child_rows(user_id, resource, unique_emails)
    kept = []
    for row in values:
        if marks and row["unique_key"] in marks:
            row["unique_key"] = marks[row["unique_key"]]
            kept.append(row)
    prepared.insert(UserValue, values)
    prepared.insert(UserAddress, addresses)
    for row in kept:
        where = (UserValue.user == user_id) & (UserValue.unique_key == row["unique_key"])
        collisions.unmark(UserValue.unique_key, where, row["unique_key"])


def _as_stored(
    user_id: str,
    resource: dict[str, Any],
    row: dict[str, Any],
    groups: list[dict[str, Any]],
    courses: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The resource exactly as a read would return it, from the rows just written.

    Built by the same `to_resource` as a read, from unsaved model instances, so a write needs no
    second round of queries to answer with the stored form.
    """
    values, addresses = child_rows(user_id, resource, unique_emails=False)
    return to_resource(
        User(id=user_id, **row_values(resource), **row),
        [UserValue(**v) for v in values],
        [UserAddress(**a) for a in addresses],
        groups,
        courses,
    )


def create(
    resource: dict[str, Any],
    password_hash: str | None,
    actor: audit.Actor,
    *,
    unique_emails: bool,
) -> dict[str, Any]:
    """Insert a user and its multi-valued attributes in one transaction; e-mail values are
    unique among users when `unique_emails` (the app's `UNIQUE_EMAILS`)."""
    user_id = new_id()
    now = utcnow()
    try:
        with database.atomic():
            row = {
                "id": user_id,
                "password_hash": password_hash,
                "created": now,
                "last_modified": now,
                "version": 1,
                **row_values(resource),
            }
            prepared.insert(User, [row])
            _write_children(user_id, resource, unique_emails)
            audit.record(actor, "User", user_id, "create", audit.diff({}, resource))
            outbox.user(user_id)
    except peewee.IntegrityError as exc:
        raise _conflict(resource, unique_emails) from exc
    return _as_stored(user_id, resource, {"created": now, "last_modified": now, "version": 1}, [])


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "password", "groups")}


def modify(
    user_id: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    password_hashes: dict[str, str] | None = None,
    if_match: str | None = None,
    actor: audit.Actor,
    operation: str,
    unique_emails: bool,
) -> dict[str, Any]:
    """Read the user under a row lock, apply `change`, and write the result if it differs.

    `change` gets the current resource and returns the new one (a `password` key in it is a new
    plaintext password whose hash the caller computed beforehand into `password_hashes`, so no
    hashing happens while the row is locked). No-op changes keep `meta.version`.
    """
    try:
        with database.atomic():
            user, current, courses = _read_locked(user_id)
            etags.require(if_match, current["meta"]["version"])
            new = change(current)
            password = new.get("password")
            new_hash = KEEP if password is None else (password_hashes or {}).get(password)
            if _comparable(new) == _comparable(current) and new_hash is KEEP:
                unchanged = {
                    "created": user.created,
                    "last_modified": user.last_modified,
                    "version": user.version,
                }
                return _as_stored(user_id, current, unchanged, current.get("groups", []), courses)
            stamp = _write(user, current, new, new_hash, unique_emails)
            changes = audit.diff(current, new)
            if new_hash is not KEEP:
                changes["password"] = {"changed": True}
            audit.record(actor, "User", user_id, _operation_name(operation, current, new), changes)
            outbox.user(user_id)
    except peewee.IntegrityError as exc:
        raise _conflict(new, unique_emails, user_id) from exc
    return _as_stored(user_id, new, stamp, current.get("groups", []), courses)


def _write(
    user: User, current: dict[str, Any], new: dict[str, Any], new_hash: Any, unique_emails: bool
) -> dict[str, Any]:
    """Write what changed from `current` to `new`; the new `created`/`lastModified`/version."""
    # Only the columns that change: a deactivation writes `active`, not thirty columns.
    before = row_values(current)
    values = {k: v for k, v in row_values(new).items() if before.get(k) != v}
    stamp = {"created": user.created, "last_modified": utcnow(), "version": user.version + 1}
    values.update(last_modified=stamp["last_modified"], version=User.version + 1)
    if new_hash is not KEEP:
        values["password_hash"] = new_hash
    User.update(**values).where(User.id == user.id).execute()
    if "user_name_key" not in values and collisions.is_marked(user.user_name_key):
        collisions.unmark(User.user_name_key, User.id == user.id, user.user_name_key)
    if _children_changed(current, new):
        marks = collisions.kept_email_marks(user.id) if unique_emails else None
        UserValue.delete().where(UserValue.user == user.id).execute()
        UserAddress.delete().where(UserAddress.user == user.id).execute()
        _write_children(user.id, new, unique_emails, marks)
    return stamp


def _children_changed(current: dict[str, Any], new: dict[str, Any]) -> bool:
    return any(current.get(a) != new.get(a) for a in (*VALUE_ATTRIBUTES, "addresses"))


def _operation_name(operation: str, current: dict[str, Any], new: dict[str, Any]) -> str:
    was, now = current.get("active", True), new.get("active", True)
    if was and not now:
        return "deactivate"
    if now and not was:
        return "activate"
    return operation


def delete(user_id: str, actor: audit.Actor, if_match: str | None = None) -> None:
    """Hard-delete: memberships and e-mails go with the row, freeing userName at once."""
    with database.atomic():
        # The user's groups are locked before the user, in id order: a member PATCH locks its
        # group and then (through the membership's foreign key) the user, so the reverse
        # order here could deadlock with it on PostgreSQL.
        groups = Membership.select(Membership.group).where(Membership.user == user_id)
        if group_ids := sorted({group_id for (group_id,) in groups.tuples()}):
            list(locked(Group.select(Group.id).where(Group.id.in_(group_ids)).order_by(Group.id)))
        user = locked(
            User.select(User.id, User.version, User.user_name).where(User.id == user_id)
        ).first()
        if user is None:
            raise NotFound(f"User {user_id} not found.")
        etags.require(if_match, etags.weak(user.version))
        _leave_groups(user_id, actor)
        UserValue.delete().where(UserValue.user == user_id).execute()
        UserAddress.delete().where(UserAddress.user == user_id).execute()
        User.delete().where(User.id == user_id).execute()
        audit.record(actor, "User", user_id, "delete", {"userName": {"before": user.user_name}})
        outbox.user(user_id)  # kept enrolments go with the row (ON DELETE CASCADE)


def _leave_groups(user_id: str, actor: audit.Actor) -> None:
    """A deleted user leaves its groups: each group's `members` changed, so its version and
    lastModified move on (or an ETag would still match) and its audit trail says who left."""
    left = (
        Membership.delete()
        .where(Membership.user == user_id)
        .returning(Membership.group)
        .tuples()
        .execute()
    )
    group_ids = sorted({group_id for (group_id,) in left})
    if not group_ids:
        return
    Group.update(version=Group.version + 1, last_modified=utcnow()).where(
        Group.id.in_(group_ids)
    ).execute()
    for group_id in group_ids:
        changes = {"members": {"added": [], "removed": [user_id]}}
        audit.record(actor, "Group", group_id, "patch", changes)


def search(condition: Any, sort: Sort, request: PageRequest) -> Page:
    """One page of users matching `condition`, and how many match in all (RFC 7644 §3.4.2.4,
    RFC 9865 when `request.keyset`)."""
    enrolments = outbox.enrolments_in_use()
    found = page(
        lambda: _with_children(User.select(), enrolments),
        condition,
        sort,
        request,
        shape=("users", enrolments),
    )
    found.items = _read(found.items)
    return found
