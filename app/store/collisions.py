"""Names that became one identity when the key changed, kept apart until an operator decides.

Migration m0007 recomputed every identity key (`scim_schemas.identity`). Where two existing
rows now share a key, merging them would lose a person and refusing the upgrade would strand
the deployment, so the first keeps the key and every other one stores it *marked*:
`key + MARK + owner id`. The unique indexes then still hold, the plain key stays taken (a third
row cannot join the pair), and `lms-scim users duplicates` lists each pair. A marked row keeps
its mark through writes that leave its name alone, and loses it when its name changes to one
that no longer collides, which is how a pair is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from app.store.db import database
from app.store.filter_sql import contains
from app.store.models import Group, User, UserValue

# A control character: refused in names since m0007, so no real key ever contains one.
MARK = "\x1f"


def marked(key: str, owner_id: str) -> str:
    return f"{key}{MARK}{owner_id}"


def plain(key: str) -> str:
    """The key without its mark."""
    return key.partition(MARK)[0]


def is_marked(key: str | None) -> bool:
    return key is not None and MARK in key


def unmark(field: peewee.Field, where: peewee.Expression, key: str) -> None:
    """Give a marked row its plain key back if no one holds it any more (else keep the mark):
    in a savepoint, so a refusal leaves the caller's transaction as it was."""
    try:
        with database.atomic():
            field.model.update({field: plain(key)}).where(where).execute()
    except peewee.IntegrityError:
        pass


def kept_email_marks(user_id: str) -> dict[str, str]:
    """The user's marked e-mail keys by their plain key, to be kept when its e-mails are
    rewritten (only a change of the address itself resolves a pair)."""
    query = UserValue.select(UserValue.unique_key).where(
        (UserValue.user == user_id) & contains(UserValue.unique_key, MARK)
    )
    return {plain(key): key for (key,) in query.tuples()}


@dataclass(frozen=True)
class Pair:
    """Two resources that share an identity key: `kept` holds it, `marked` waits to be resolved."""

    attribute: str
    key: str
    kept: dict[str, Any] | None
    marked: dict[str, Any]


def _user(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"type": "User", "id": user.id, "name": user.user_name, "active": user.active}


def _group(group: Group | None) -> dict[str, Any] | None:
    if group is None:
        return None
    return {"type": "Group", "id": group.id, "name": group.display_name, "active": True}


def pairs() -> list[Pair]:
    """Every unresolved pair: userNames, e-mail addresses, then group names."""
    found: list[Pair] = []
    for user in User.select().where(contains(User.user_name_key, MARK)).order_by(User.id):
        key = plain(user.user_name_key)
        holder = User.get_or_none(User.user_name_key == key)
        found.append(Pair("userName", key, _user(holder), _user(user)))
    values = UserValue.select().where(contains(UserValue.unique_key, MARK))
    for value in values.order_by(UserValue.id):
        key = plain(value.unique_key)
        holder = UserValue.get_or_none(UserValue.unique_key == key)
        kept = _user(User.get_or_none(User.id == holder.user_id)) if holder else None
        found.append(Pair("emails.value", key, kept, _user(User.get_by_id(value.user_id))))
    for group in Group.select().where(contains(Group.unique_name_key, MARK)).order_by(Group.id):
        key = plain(group.unique_name_key)
        holder = Group.get_or_none(Group.unique_name_key == key)
        found.append(Pair("displayName", key, _group(holder), _group(group)))
    return found
