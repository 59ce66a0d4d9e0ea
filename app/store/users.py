"""Named queries for Users: the only code that reads and writes user rows."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import peewee

from app.errors import NotFound, PreconditionFailed, Uniqueness
from app.store import audit
from app.store.db import database, locked
from app.store.models import Group, Membership, User, UserAddress, UserValue, utcnow
from app.store.search import page
from app.store.user_mapping import child_rows, row_values, to_resource
from scim_schemas import fold

KEEP = object()  # "leave the stored password hash as it is"


@dataclass
class Settings:
    unique_emails: bool = True


settings = Settings()


def new_id() -> str:
    return uuid.uuid4().hex


def _groups_of(user_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not user_ids:
        return found
    query = (
        Membership.select(Membership.user, Group.id, Group.display_name)
        .join(Group)
        .where(Membership.user.in_(user_ids))
        .order_by(Group.id)
        .tuples()
    )
    for user_id, group_id, display in query:
        found[user_id].append({"value": group_id, "display": display, "type": "direct"})
    return found


def load_many(users: Iterable[User]) -> list[dict[str, Any]]:
    """Resources for the given rows with a constant number of queries (no N+1)."""
    users = list(users)
    ids = [u.id for u in users]
    values: dict[str, list[UserValue]] = defaultdict(list)
    addresses: dict[str, list[UserAddress]] = defaultdict(list)
    if ids:
        for row in UserValue.select().where(UserValue.user.in_(ids)):
            values[row.user_id].append(row)
        for row in UserAddress.select().where(UserAddress.user.in_(ids)):
            addresses[row.user_id].append(row)
    groups = _groups_of(ids)
    return [to_resource(u, values[u.id], addresses[u.id], groups[u.id]) for u in users]


def get(user_id: str) -> dict[str, Any]:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found.")
    return load_many([user])[0]


def password_hash_of(user_id: str) -> str | None:
    row = User.select(User.password_hash).where(User.id == user_id).first()
    return row.password_hash if row else None


def _conflict(exc: peewee.IntegrityError, resource: dict[str, Any]) -> Uniqueness:
    """Name the clashing attribute and the existing resource's id, so an IdP can link it."""
    message = str(exc).lower()
    if "user_name_key" in message:
        existing = User.get_or_none(User.user_name_key == fold(resource["userName"]))
        where = f" by user {existing.id}" if existing else ""
        return Uniqueness(f"userName {resource['userName']!r} is already taken{where}.")
    if "unique_key" in message:
        keys = [fold(e["value"]) for e in resource.get("emails", ()) if e.get("value")]
        row = UserValue.get_or_none(UserValue.unique_key.in_(keys)) if keys else None
        where = f" by user {row.user_id}" if row else ""
        return Uniqueness(f"An e-mail address of this user is already in use{where}.")
    return Uniqueness("The resource conflicts with an existing one.")


def _write_children(user_id: str, resource: dict[str, Any]) -> None:
    values, addresses = child_rows(user_id, resource, settings.unique_emails)
    if values:
        UserValue.insert_many(values).execute()
    if addresses:
        UserAddress.insert_many(addresses).execute()


def create(
    resource: dict[str, Any], password_hash: str | None, actor: audit.Actor
) -> dict[str, Any]:
    """Insert a user and its multi-valued attributes in one transaction."""
    user_id = new_id()
    now = utcnow()
    try:
        with database.atomic():
            User.insert(
                id=user_id,
                password_hash=password_hash,
                created=now,
                last_modified=now,
                version=1,
                **row_values(resource),
            ).execute()
            _write_children(user_id, resource)
            audit.record(actor, "User", user_id, "create", audit.diff({}, resource))
    except peewee.IntegrityError as exc:
        raise _conflict(exc, resource) from exc
    return get(user_id)


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
) -> dict[str, Any]:
    """Read the user under a row lock, apply `change`, and write the result if it differs.

    `change` gets the current resource and returns the new one (a `password` key in it is a new
    plaintext password whose hash the caller computed beforehand into `password_hashes`, so no
    hashing happens while the row is locked). No-op changes keep `meta.version`.
    """
    try:
        with database.atomic():
            user = locked(User.select().where(User.id == user_id)).first()
            if user is None:
                raise NotFound(f"User {user_id} not found.")
            current = load_many([user])[0]
            if if_match is not None and if_match not in ("*", current["meta"]["version"]):
                raise PreconditionFailed("The resource has changed (If-Match does not match).")
            new = change(current)
            password = new.get("password")
            new_hash = KEEP if password is None else (password_hashes or {}).get(password)
            if _comparable(new) == _comparable(current) and new_hash is KEEP:
                return current
            values = row_values(new)
            values.update(last_modified=utcnow(), version=User.version + 1)
            if new_hash is not KEEP:
                values["password_hash"] = new_hash
            User.update(**values).where(User.id == user_id).execute()
            if _children_changed(current, new):
                UserValue.delete().where(UserValue.user == user_id).execute()
                UserAddress.delete().where(UserAddress.user == user_id).execute()
                _write_children(user_id, new)
            changes = audit.diff(current, new)
            if new_hash is not KEEP:
                changes["password"] = {"changed": True}
            audit.record(actor, "User", user_id, _operation_name(operation, current, new), changes)
    except peewee.IntegrityError as exc:
        raise _conflict(exc, new) from exc
    return get(user_id)


def _children_changed(current: dict[str, Any], new: dict[str, Any]) -> bool:
    from app.store.user_mapping import VALUE_ATTRIBUTES

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
        user = locked(
            User.select(User.id, User.version, User.user_name).where(User.id == user_id)
        ).first()
        if user is None:
            raise NotFound(f"User {user_id} not found.")
        if if_match is not None and if_match not in ("*", f'W/"{user.version}"'):
            raise PreconditionFailed("The resource has changed (If-Match does not match).")
        Membership.delete().where(Membership.user == user_id).execute()
        UserValue.delete().where(UserValue.user == user_id).execute()
        UserAddress.delete().where(UserAddress.user == user_id).execute()
        User.delete().where(User.id == user_id).execute()
        audit.record(actor, "User", user_id, "delete", {"userName": {"before": user.user_name}})


def search(
    condition: Any, order: list[Any], start_index: int, count: int
) -> tuple[int, list[dict[str, Any]]]:
    """One page of users matching `condition`, and how many match in all (RFC 7644 §3.4.2.4)."""
    total, rows = page(User.select(), condition, order, start_index, count)
    return total, load_many(rows) if rows is not None else []
