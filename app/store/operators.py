"""Operator accounts for the `/admin` pages: stored with argon2id hashes (hashed by the caller,
outside any transaction). A password change, `disable` and `delete` end the operator's sessions
in the same transaction; every change is audited, and the audit trail outlives the account."""

from __future__ import annotations

import peewee

from app.errors import NotFound, Uniqueness
from app.store import admin_sessions, audit
from app.store.db import database, locked
from app.store.models import Operator, utcnow
from app.store.names import require_name


def create(
    name: str,
    password_hash: str,
    tenant_id: int | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> Operator:
    """An operator bound to `tenant_id` (who sees only that tenant on /admin), or global (None)."""
    require_name("An operator name", name)
    changes: dict[str, dict[str, object]] = {"name": {"after": name}}
    if tenant_id is not None:
        changes["tenant"] = {"after": tenant_id}
    try:
        with database.atomic():
            operator = Operator.create(name=name, password_hash=password_hash, tenant_id=tenant_id)
            audit.record(actor, "Operator", str(operator.id), "operator_create", changes)
    except peewee.IntegrityError as exc:
        raise Uniqueness(f"An operator named {name!r} exists.") from exc
    return operator


def _existing(name: str) -> Operator:
    """The operator named `name`, locked until the transaction ends (a sign-in that verified the
    old password waits, then finds it changed: `admin_sessions.start`)."""
    operator = locked(Operator.select().where(Operator.name == name)).first()
    if operator is None:
        raise NotFound(f"No operator named {name!r}.")
    return operator


def set_password(name: str, password_hash: str, actor: audit.Actor = audit.SYSTEM) -> None:
    """A new password, and every session signed in with the old one ends."""
    with database.atomic():
        operator = _existing(name)
        Operator.update(password_hash=password_hash).where(Operator.id == operator.id).execute()
        ended = admin_sessions.end_all(operator.id, utcnow())
        audit.record(
            actor,
            "Operator",
            str(operator.id),
            "operator_password",
            {"password": {"changed": True}, "sessions": {"ended": ended}},
        )


def set_disabled(name: str, disabled: bool, actor: audit.Actor = audit.SYSTEM) -> None:
    """Disable (no sign-in; every session ends) or enable an operator."""
    with database.atomic():
        operator = _existing(name)
        now = utcnow()
        Operator.update(disabled_at=now if disabled else None).where(
            Operator.id == operator.id
        ).execute()
        changes = {"disabled": {"before": operator.disabled_at is not None, "after": disabled}}
        if disabled:
            changes["sessions"] = {"ended": admin_sessions.end_all(operator.id, now)}
        operation = "operator_disable" if disabled else "operator_enable"
        audit.record(actor, "Operator", str(operator.id), operation, changes)


def delete(name: str, actor: audit.Actor = audit.SYSTEM) -> None:
    """Delete an operator and their sessions; their audit events stay (they name no row)."""
    with database.atomic():
        operator = _existing(name)
        ended = admin_sessions.end_all(operator.id, utcnow())
        Operator.delete().where(Operator.id == operator.id).execute()  # sessions cascade
        audit.record(
            actor,
            "Operator",
            str(operator.id),
            "operator_delete",
            {"name": {"before": name}, "sessions": {"ended": ended}},
        )


def find(name: str) -> Operator | None:
    return Operator.get_or_none(Operator.name == name)


def all_operators() -> list[Operator]:
    return list(Operator.select().order_by(Operator.name))


def record_success(operator_id: int) -> None:
    Operator.update(last_sign_in_at=utcnow()).where(Operator.id == operator_id).execute()
