"""The audit trail: who changed what, written in the same transaction as the change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.store import prepared, tenancy
from app.store.db import database
from app.store.models import AuditEvent

_NEVER_RECORDED = frozenset({"password", "meta", "schemas", "groups", "id"})


@dataclass(frozen=True)
class Actor:
    """Who asked for a change: the token's name and the request id, or the CLI."""

    token_name: str | None = None
    request_id: str | None = None


SYSTEM = Actor(token_name="cli")  # noqa: S106 - the actor name for CLI changes


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Changed attributes with before/after values; extension attributes by their URN path."""
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after), key=str):
        if key in _NEVER_RECORDED:
            continue
        old, new = before.get(key), after.get(key)
        if key.startswith("urn:") and isinstance(old or new, dict):
            for sub, change in diff(old or {}, new or {}).items():
                changes[f"{key}:{sub}"] = change
        elif old != new:
            changes[key] = {"before": old, "after": new}
    return changes


def record(
    actor: Actor,
    resource_type: str,
    resource_id: str,
    operation: str,
    changes: dict[str, Any] | None = None,
) -> None:
    insert([event(actor, resource_type, resource_id, operation, changes)])


def event(
    actor: Actor,
    resource_type: str,
    resource_id: str,
    operation: str,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit row, for `insert` (several events of one change go in together)."""
    return {
        "token_name": actor.token_name,
        "request_id": actor.request_id,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "operation": operation,
        "changes": json.dumps(changes, default=str, sort_keys=True) if changes else None,
    }


def insert(events: Sequence[dict[str, Any]]) -> None:
    prepared.insert(AuditEvent, events)


def count_before(before: dt.datetime) -> int:
    """How many events (of every tenant) are older than `before`: what `prune` would delete."""
    with tenancy.everywhere():
        return AuditEvent.select().where(AuditEvent.at < before).count()


def prune(
    before: dt.datetime, chunk: int = 10_000, on_chunk: Callable[[int], None] | None = None
) -> int:
    """Delete events older than `before` (the `AUDIT_RETENTION_DAYS` policy), in chunks so no
    single transaction holds the table for long; returns how many went. `on_chunk` hears how
    many each chunk removed (a progress bar)."""
    removed = 0
    while True:
        with database.atomic(), tenancy.everywhere():  # retention is the deployment's policy
            ids = [
                row.id
                for row in AuditEvent.select(AuditEvent.id)
                .where(AuditEvent.at < before)
                .order_by(AuditEvent.id)
                .limit(chunk)
            ]
            if ids:
                AuditEvent.delete().where(AuditEvent.id.in_(ids)).execute()
        removed += len(ids)
        if on_chunk is not None:
            on_chunk(len(ids))
        if len(ids) < chunk:
            return removed
