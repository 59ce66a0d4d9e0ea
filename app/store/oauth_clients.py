"""OAuth 2.0 clients of a tenant (RFC 6749 §2): registered, listed, their secrets rotated with a
grace, revoked. Secrets are never stored, only their SHA-256; the audit trail never sees one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.errors import NotFound, Uniqueness
from app.store import audit, tenancy
from app.store.db import database
from app.store.models import OAuthClient, OAuthClientSecret, utcnow
from app.store.names import require_name


@dataclass(frozen=True)
class ClientState:
    """What a token request and a SCIM request need to know of a client (cached per process
    for TOKEN_CACHE_SECONDS)."""

    name: str
    identifier: str
    tenant_id: int
    read_only: bool
    token_lifetime: int
    revoked: bool


def _state(client: OAuthClient) -> ClientState:
    return ClientState(
        client.name,
        client.identifier,
        client.tenant_id,
        client.read_only,
        client.token_lifetime,
        client.revoked_at is not None,
    )


def create(
    name: str,
    identifier: str,
    secret_prefix: str,
    secret_hash: str,
    *,
    read_only: bool,
    token_lifetime: int,
    actor: audit.Actor = audit.SYSTEM,
) -> OAuthClient:
    """A new client of the tenant at hand; 409 while a client that is not revoked has the name."""
    require_name("A client name", name)
    with database.atomic():
        taken = OAuthClient.select().where(
            (OAuthClient.name == name) & OAuthClient.revoked_at.is_null()
        )
        if taken.exists():
            raise Uniqueness(f"A client named {name!r} exists; rotate or revoke it.")
        client = OAuthClient.create(
            name=name, identifier=identifier, read_only=read_only, token_lifetime=token_lifetime
        )
        OAuthClientSecret.create(client=client, prefix=secret_prefix, secret_hash=secret_hash)
        changes = {
            "name": {"after": name},
            "client_id": {"after": identifier},
            "read_only": {"after": read_only},
            "token_lifetime": {"after": token_lifetime},
        }
        audit.record(actor, "OAuthClient", str(client.id), "client_create", changes)
    return client


def named(name: str) -> OAuthClient:
    client = (
        OAuthClient.select()
        .where((OAuthClient.name == name) & OAuthClient.revoked_at.is_null())
        .first()
    )
    if client is None:
        raise NotFound(f"No client named {name!r} that is not revoked.")
    return client


def rotate(
    name: str,
    secret_prefix: str,
    secret_hash: str,
    *,
    grace_until: dt.datetime,
    actor: audit.Actor = audit.SYSTEM,
) -> OAuthClient:
    """A new secret; the current one keeps working until `grace_until` (two valid at once)."""
    with database.atomic():
        client = named(name)
        OAuthClientSecret.update(expires_at=grace_until).where(
            (OAuthClientSecret.client == client)
            & (
                OAuthClientSecret.expires_at.is_null()
                | (OAuthClientSecret.expires_at > grace_until)
            )
        ).execute()
        OAuthClientSecret.create(client=client, prefix=secret_prefix, secret_hash=secret_hash)
        changes = {"secret": {"after": secret_prefix}, "grace_until": {"after": grace_until}}
        audit.record(actor, "OAuthClient", str(client.id), "client_rotate", changes)
    return client


def revoke(name: str, actor: audit.Actor = audit.SYSTEM) -> OAuthClient:
    """No new token from now on, and its access tokens refused (within the cache time)."""
    with database.atomic():
        client = named(name)
        OAuthClient.update(revoked_at=utcnow()).where(OAuthClient.id == client.id).execute()
        audit.record(
            actor, "OAuthClient", str(client.id), "client_revoke", {"name": {"before": name}}
        )
    return client


def all_clients() -> list[OAuthClient]:
    return list(OAuthClient.select().order_by(OAuthClient.name, OAuthClient.created))


def by_secret(identifier: str, secret_hash: str, now: dt.datetime) -> ClientState | None:
    """The client `identifier` if `secret_hash` is one of its secrets still valid, whichever
    tenant it belongs to (it says which); None otherwise, whatever the reason."""
    with tenancy.everywhere():
        row = (
            OAuthClient.select(OAuthClient, OAuthClientSecret.expires_at)
            .join(OAuthClientSecret)
            .where(
                (OAuthClientSecret.secret_hash == secret_hash)
                & (OAuthClient.identifier == identifier)
            )
            .objects()
            .first()
        )
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return _state(row)


def by_identifier(identifier: str) -> ClientState | None:
    with tenancy.everywhere():
        row = OAuthClient.get_or_none(OAuthClient.identifier == identifier)
    return _state(row) if row is not None else None
