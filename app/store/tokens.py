"""API token rows: created, rotated, revoked, found by hash, listed. Secrets are never stored.

A token's name is what operators and the audit trail know it by; during a rotation two rows share
it (the new token, and the old one working on until its grace ends).
"""

from __future__ import annotations

import datetime as dt

from app.errors import NotFound, Uniqueness
from app.store import audit, tenancy
from app.store.db import database, locked
from app.store.models import ApiToken, utcnow
from app.store.names import require_name


def _usable(now: dt.datetime) -> object:
    return ApiToken.revoked_at.is_null() & (
        ApiToken.expires_at.is_null() | (ApiToken.expires_at > now)
    )


def create(
    name: str,
    prefix: str,
    token_hash: str,
    *,
    read_only: bool = False,
    expires_at: dt.datetime | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> ApiToken:
    """A new token; 409 if a usable token already has the name (rotate that one instead)."""
    require_name("A token name", name)
    with database.atomic():
        if ApiToken.select().where((ApiToken.name == name) & _usable(utcnow())).exists():
            raise Uniqueness(f"A usable token named {name!r} exists; rotate or revoke it.")
        token = ApiToken.create(
            name=name,
            prefix=prefix,
            token_hash=token_hash,
            read_only=read_only,
            expires_at=expires_at,
        )
        changes = {"name": {"after": name}, "read_only": {"after": read_only}}
        if expires_at:
            changes["expires_at"] = {"after": expires_at}
        audit.record(actor, "Token", str(token.id), "token_create", changes)
    return token


def rotate(
    name: str,
    prefix: str,
    token_hash: str,
    *,
    grace_until: dt.datetime,
    expires_at: dt.datetime | None,
    actor: audit.Actor = audit.SYSTEM,
) -> ApiToken:
    """Issue a new token under `name`; the old ones stop at `grace_until` (or earlier expiry).

    The new token keeps the old one's read-only flag. 404 if no usable token has the name.
    """
    now = utcnow()
    with database.atomic():
        old = list(locked(ApiToken.select().where((ApiToken.name == name) & _usable(now))))
        if not old:
            raise NotFound(f"No usable token named {name!r}.")
        for row in old:
            ends = min(row.expires_at or grace_until, grace_until)
            ApiToken.update(expires_at=ends, rotated_at=now).where(ApiToken.id == row.id).execute()
        token = ApiToken.create(
            name=name,
            prefix=prefix,
            token_hash=token_hash,
            read_only=any(row.read_only for row in old),
            expires_at=expires_at,
        )
        changes = {
            "replaced": {"before": [row.prefix for row in old], "after": prefix},
            "grace_until": {"after": grace_until},
        }
        audit.record(actor, "Token", str(token.id), "token_rotate", changes)
    return token


def revoke(name: str, actor: audit.Actor = audit.SYSTEM) -> int:
    """Refuse every token with this name from now on; returns how many were revoked."""
    now = utcnow()
    with database.atomic():
        ids = [
            row.id
            for row in ApiToken.select(ApiToken.id).where(
                (ApiToken.name == name) & ApiToken.revoked_at.is_null()
            )
        ]
        if not ids:
            raise NotFound(f"No token named {name!r} to revoke.")
        ApiToken.update(revoked_at=now).where(ApiToken.id.in_(ids)).execute()
        for token_id in ids:
            audit.record(actor, "Token", str(token_id), "token_revoke", {"name": {"before": name}})
    return len(ids)


def touch(used: dict[int, dt.datetime]) -> None:
    """Record when tokens were last used (batched by the caller; never moves the time back),
    in one transaction. Token ids are unique across tenants, and a batch may hold several
    tenants' tokens; they are updated in id order, so two processes' batches never deadlock."""
    with tenancy.everywhere(), database.atomic():
        for token_id, at in sorted(used.items()):
            ApiToken.update(last_used_at=at).where(
                (ApiToken.id == token_id)
                & (ApiToken.last_used_at.is_null() | (ApiToken.last_used_at < at))
            ).execute()


def find_by_hash(token_hash: str) -> ApiToken | None:
    """The token with this hash, whichever tenant it belongs to (it says which)."""
    with tenancy.everywhere():
        return ApiToken.get_or_none(ApiToken.token_hash == token_hash)


def count_usable() -> int:
    return ApiToken.select().where(_usable(utcnow())).count()


def named(name: str) -> list[ApiToken]:
    """Every token of the tenant called `name`, oldest first (revoked ones too: a name may be
    reused once its token is revoked)."""
    return list(ApiToken.select().where(ApiToken.name == name).order_by(ApiToken.id))


def all_tokens() -> list[ApiToken]:
    return list(ApiToken.select().order_by(ApiToken.name, ApiToken.created))


def state(token: ApiToken, now: dt.datetime | None = None) -> str:
    """`revoked`, `expired`, `rotating` (replaced, working until its grace ends) or `active`."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "rotating" if token.rotated_at is not None else "active"


def expires_soon(token: ApiToken, days: int = 14, now: dt.datetime | None = None) -> bool:
    """A usable token that stops working within `days` (a warning for operators)."""
    now = now or utcnow()
    if token.expires_at is None or state(token, now) in ("revoked", "expired"):
        return False
    return token.expires_at - now <= dt.timedelta(days=days)
