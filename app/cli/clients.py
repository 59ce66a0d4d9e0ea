"""`lms-scim clients` and `lms-scim keys`: OAuth 2.0 clients of a tenant (the client
credentials grant) and the keys that sign their access tokens."""

from __future__ import annotations

import datetime as dt
import secrets

import click

from app import auth, runtime
from app.cli.common import (
    DURATION,
    GRACE_OPTION,
    emit,
    for_tenant,
    format_option,
    reaches_servers,
    reported,
    settings,
)
from app.datetimes import minute
from app.oauth import keys
from app.oauth.access_tokens import issuer
from app.oauth.endpoint import TOKEN_PATH
from app.store import oauth_clients, signing_keys
from app.store.models import OAuthClient, utcnow

clients_group = click.Group("clients", help="OAuth 2.0 clients (client credentials grant).")
keys_group = click.Group("keys", help="The keys that sign OAuth access tokens.")

MIN_LIFETIME = dt.timedelta(minutes=5)
MAX_LIFETIME = dt.timedelta(seconds=keys.MAX_TOKEN_LIFETIME_SECONDS)


def _token_endpoint() -> str:
    configured = settings().scim_base_url
    origin = issuer(configured) if configured else f"http://{settings().host}:{settings().port}"
    return origin + TOKEN_PATH


def _forget_clients() -> None:
    """A revoked client or a rotated secret applies in this process at once (the server's
    workers: within TOKEN_CACHE_SECONDS)."""
    current = runtime.current()
    current.oauth_clients.clear()
    current.tokens.clear()


@clients_group.command("create", short_help="Register a client; print its id and secret (once).")
@for_tenant
@click.argument("name")
@click.option("--read-only", is_flag=True, help="Gets scim.read only, never scim.write.")
@click.option(
    "--token-lifetime",
    type=DURATION,
    default="1h",
    show_default=True,
    help="How long an access token lasts (5m to 24h).",
)
def clients_create(name: str, read_only: bool, token_lifetime: dt.timedelta) -> None:
    """Register a client; its id, secret (shown once) and the token endpoint, one per line."""
    if not MIN_LIFETIME <= token_lifetime <= MAX_LIFETIME:
        raise click.BadParameter("must be between 5m and 24h", param_hint="--token-lifetime")
    secret, prefix, digest = auth.new_secret()
    identifier = "lmsscim-client-" + secrets.token_hex(8)
    with reported():
        oauth_clients.create(
            name,
            identifier,
            prefix,
            digest,
            read_only=read_only,
            token_lifetime=int(token_lifetime.total_seconds()),
        )
    click.echo(f"Created client {name!r}. Store the secret now: it is not shown again.", err=True)
    click.echo(f"client_id={identifier}")
    click.echo(f"client_secret={secret}")
    click.echo(f"token_endpoint={_token_endpoint()}")


@clients_group.command("rotate", short_help="A new secret for NAME; the old one works a while.")
@for_tenant
@click.argument("name")
@GRACE_OPTION
def clients_rotate(name: str, grace: dt.timedelta) -> None:
    """A new secret for NAME; the old one works until the grace ends (two valid meanwhile)."""
    secret, prefix, digest = auth.new_secret()
    ends = utcnow() + grace
    with reported():
        client = oauth_clients.rotate(name, prefix, digest, grace_until=ends)
    _forget_clients()
    click.echo(
        f"Rotated client {name!r}; the old secret works until {minute(ends)} UTC. "
        "Store the new one now: it is not shown again.",
        err=True,
    )
    click.echo(f"client_id={client.identifier}")
    click.echo(f"client_secret={secret}")


@clients_group.command("revoke", short_help="Refuse NAME and its access tokens from now on.")
@for_tenant
@click.argument("name")
def clients_revoke(name: str) -> None:
    """No token for NAME from now on; its access tokens are refused (by other server processes
    within TOKEN_CACHE_SECONDS). One revoked already is said so (exit 0, as `tokens revoke`)."""
    same = [c for c in oauth_clients.all_clients() if c.name == name]
    if same and all(c.revoked_at is not None for c in same):
        click.echo(f"Client {name!r} was revoked already.")
        return
    with reported():
        oauth_clients.revoke(name)
    _forget_clients()
    click.echo(f"Revoked client {name!r}. {reaches_servers()}")


@clients_group.command("list")
@for_tenant
@format_option()
def clients_list(fmt: str) -> None:
    """Every client of the tenant, revoked ones included."""
    emit(
        (_listed(client) for client in oauth_clients.all_clients()),
        ("name", "clientId", "access", "tokenLifetime", "state", "created"),
        fmt,
        headers=("name", "client_id", "access", "token lifetime", "state", "created (UTC)"),
    )


def _listed(client: OAuthClient) -> dict[str, object]:
    return {
        "name": client.name,
        "clientId": client.identifier,
        "access": "read-only" if client.read_only else "read-write",
        "tokenLifetime": f"{client.token_lifetime // 60}m",
        "state": "revoked" if client.revoked_at else "active",
        "created": client.created,
    }


@keys_group.command("rotate", short_help="Sign with a new key; earlier ones verify for 24 h.")
def keys_rotate() -> None:
    """A new signing key; the old one verifies the tokens it signed until they have expired."""
    kid = keys.add_key(runtime.current().secret_box)
    click.echo(f"Signing with key {kid}; earlier keys verify for 24 h more.")


@keys_group.command("list", short_help="The keys whose tokens are accepted.")
@format_option()
def keys_list(fmt: str) -> None:
    """The keys whose tokens are accepted: the signer first."""
    rows = (
        {
            "kid": row.kid,
            "algorithm": row.algorithm,
            "created": row.created,
            "state": "signing" if row.retired_at is None else "verifying",
            "verifyUntil": row.verify_until if row.retired_at is not None else None,
        }
        for row in signing_keys.verifying()
    )
    emit(
        rows,
        ("kid", "algorithm", "created", "state", "verifyUntil"),
        fmt,
        headers=("kid", "alg", "created (UTC)", "state", "verifies until (UTC)"),
    )
