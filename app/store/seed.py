"""Bulk creation of users for benchmarks and big imports: many rows per statement, one
transaction per batch.

It writes the same rows `users.create` writes for a POST (RFC 7644 §3.3) — the User row from
`user_mapping.row_values`, the e-mail/phone/… and address rows from `user_mapping.child_rows`,
ids from `users.new_id` — so lookups by userName, externalId and e-mail behave exactly as for
users created over SCIM. Two differences, both deliberate:

* **Audit:** one `bulk_create` audit record per batch (with the number of users it created),
  not one `create` record per user: a million-user import would otherwise double the rows it
  writes. The record's `resource_id` is the batch's first user id.
* **Passwords:** one `password_hash` (or None) for every user, computed once by the caller:
  argon2id costs ~20 ms a hash, far more than the insert itself.

Like `users.create`, it writes one outbox row per user in the same transaction (one multi-row
INSERT per batch), so the LMS relay hears about every imported user.

Like `users.create`, it takes resources as the SCIM layer hands them over: validated by
`marshal.load_resource` and with the LMS defaults (userType, timezone) applied.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import peewee

from app.errors import Uniqueness
from app.store import audit, outbox, prepared
from app.store import users as store_users
from app.store.db import database
from app.store.group_mapping import row_values as group_row_values
from app.store.models import Group, Membership, User, UserAddress, UserValue, utcnow
from app.store.user_mapping import child_rows, row_values


def _batches(resources: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(resources)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def bulk_create(
    resources: Iterable[dict[str, Any]],
    *,
    batch: int = 2000,
    password_hash: str | None = None,
    unique_emails: bool = True,
    actor: audit.Actor = audit.SYSTEM,
) -> list[str]:
    """Insert users (and their multi-valued attributes); return their new ids in input order.

    Each batch of `batch` users is one transaction with one audit record (operation
    `bulk_create`, `changes={"count": n}`), not one per user. A duplicate userName or e-mail
    (within the input or against stored users) raises `Uniqueness` and rolls back that batch
    only; the batches before it stay committed. `resources` is consumed lazily, so an iterator
    of a million users needs memory for one batch (plus the returned ids). `unique_emails` is
    the app's `UNIQUE_EMAILS`, as for `users.create`.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    ids: list[str] = []
    for number, chunk in enumerate(_batches(resources, batch)):
        now = utcnow()
        user_rows: list[dict[str, Any]] = []
        value_rows: list[dict[str, Any]] = []
        address_rows: list[dict[str, Any]] = []
        outbox_rows: list[dict[str, Any]] = []
        for resource in chunk:
            user_id = store_users.new_id()
            user_rows.append(
                {
                    "id": user_id,
                    "password_hash": password_hash,
                    "created": now,
                    "last_modified": now,
                    "version": 1,
                    **row_values(resource),
                }
            )
            values, addresses = child_rows(user_id, resource, unique_emails)
            value_rows.extend(values)
            address_rows.extend(addresses)
            outbox_rows.append(outbox.row(outbox.USER, user_id, None, now))
        try:
            with database.atomic():
                prepared.insert(User, user_rows)
                prepared.insert(UserValue, value_rows)
                prepared.insert(UserAddress, address_rows)
                # The LMS relay hears about each user, in the same transaction.
                outbox.insert(outbox_rows)
                audit.record(
                    actor, "User", user_rows[0]["id"], "bulk_create", {"count": len(chunk)}
                )
        except peewee.IntegrityError as exc:
            first = number * batch
            raise Uniqueness(
                f"Users {first} to {first + len(chunk) - 1} were not created: one of them "
                f"clashes with another user's userName or e-mail ({exc})."
            ) from exc
        ids.extend(row["id"] for row in user_rows)
    return ids


def bulk_group(
    resource: dict[str, Any],
    member_ids: Sequence[str],
    *,
    batch: int = 20_000,
    unique_names: bool = False,
    actor: audit.Actor = audit.SYSTEM,
) -> str:
    """Create a group with these members (existing user ids); return its id.

    The rows a `POST /Groups` writes — the group row from `group_mapping.row_values`, one
    membership per member — in transactions of `batch` memberships, the first with the group
    row, one `create` audit record and the relay's outbox row for the group (which syncs its
    members). For benchmarks and big imports: a 100,000-member audience in seconds.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    group_id = store_users.new_id()
    now = utcnow()
    row = {
        "id": group_id,
        "created": now,
        "last_modified": now,
        "version": 1,
        "keeps_enrolments": False,
        **group_row_values(resource, unique_names),
    }
    ids = list(dict.fromkeys(member_ids))
    for start in range(0, max(len(ids), 1), batch):
        with database.atomic():
            if start == 0:
                prepared.insert(Group, [row])
                audit.record(actor, "Group", group_id, "create", {"members": {"count": len(ids)}})
                outbox.insert([outbox.row(outbox.GROUP, None, group_id, now)])
            chunk = ids[start : start + batch]
            prepared.insert(Membership, [{"group": group_id, "user": u} for u in chunk])
    return group_id
