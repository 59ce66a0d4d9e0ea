"""API token rows: created, found by hash, listed. Secrets are never stored."""

from __future__ import annotations

import datetime as dt

from app.store import audit
from app.store.db import database
from app.store.models import ApiToken, utcnow


def create(
    name: str,
    prefix: str,
    token_hash: str,
    *,
    read_only: bool = False,
    expires_at: dt.datetime | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> ApiToken:
    with database.atomic():
        token = ApiToken.create(
            name=name,
            prefix=prefix,
            token_hash=token_hash,
            read_only=read_only,
            expires_at=expires_at,
        )
        audit.record(actor, "Token", str(token.id), "token_create", {"name": {"after": name}})
    return token


def find_by_hash(token_hash: str) -> ApiToken | None:
    return ApiToken.get_or_none(ApiToken.token_hash == token_hash)


def count_usable() -> int:
    now = utcnow()
    return (
        ApiToken.select()
        .where(
            ApiToken.revoked_at.is_null()
            & (ApiToken.expires_at.is_null() | (ApiToken.expires_at > now))
        )
        .count()
    )


def all_tokens() -> list[ApiToken]:
    return list(ApiToken.select().order_by(ApiToken.name, ApiToken.created))
