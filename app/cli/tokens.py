"""`lms-scim tokens`: API tokens for identity providers: create, rotate, revoke, list."""

from __future__ import annotations

import datetime as dt

import click

from app import auth, runtime
from app.cli import common
from app.cli.common import (
    DURATION,
    GRACE_OPTION,
    emit,
    for_tenant,
    format_option,
    reported,
    settings,
)
from app.store import tokens as token_store
from app.store.models import utcnow

tokens_group = click.Group("tokens", help="API tokens for identity providers.")


@tokens_group.command("create", short_help="Create a token; its secret is printed once.")
@for_tenant
@click.argument("name")
@click.option("--expires-in", type=DURATION, help="Lifetime, e.g. 90d (default: no expiry).")
@click.option("--read-only", is_flag=True, help="May read (GET, POST .search) but not write.")
def tokens_create(name: str, expires_in: dt.timedelta | None, read_only: bool) -> None:
    """Create a token; the secret is printed once, alone on the last line."""
    with reported():
        secret = auth.issue(name, read_only=read_only, expires_in=expires_in)
    click.echo(f"Created token {name!r}. Store it now: it is not shown again.", err=True)
    click.echo(secret)


@tokens_group.command("rotate", short_help="A new secret for NAME; the old one works a while.")
@for_tenant
@click.argument("name")
@GRACE_OPTION
@click.option("--expires-in", type=DURATION, help="Lifetime of the new token (default: none).")
def tokens_rotate(name: str, grace: dt.timedelta, expires_in: dt.timedelta | None) -> None:
    """Issue a new secret for NAME; the old one stops when the grace period ends."""
    common.tokens_named(name)  # an unknown name: "No token named …"
    with reported():
        secret = auth.rotate(name, runtime.current().tokens, grace=grace, expires_in=expires_in)
    ends = utcnow() + grace
    click.echo(
        f"Rotated token {name!r}; the old secret works until {ends:%Y-%m-%d %H:%M} UTC. "
        "Store the new one now: it is not shown again.",
        err=True,
    )
    click.echo(secret)


@tokens_group.command("revoke", short_help="Refuse NAME from now on.")
@for_tenant
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Refuse NAME from now on (other server processes within TOKEN_CACHE_SECONDS).

    A token revoked already is said so, and the command succeeds (exit 0: revoking is
    idempotent, as `tenants disable` is); an unknown name is an error (exit 1)."""
    if all(token.revoked_at is not None for token in common.tokens_named(name)):
        click.echo(f"Token {name!r} was revoked already.")
        return
    with reported():
        count = auth.revoke(name, runtime.current().tokens)
    click.echo(f"Revoked {count} token(s) named {name!r}. {common.reaches_servers()}")


@tokens_group.command("bootstrap", short_help="Create a first token if there is no usable one.")
@for_tenant
@click.option("--name", default="first-token", show_default=True)
def tokens_bootstrap(name: str) -> None:
    """Create and print a first token if no usable token exists (used by `make run`)."""
    if token_store.count_usable():
        click.echo(
            "A token already exists; create another with `lms-scim tokens create NAME`.", err=True
        )
        return
    secret = auth.issue(name)
    base = f"http://{settings().host}:{settings().port}"
    click.echo(f"First API token {name!r} (shown once; keep it safe):", err=True)
    click.echo(f"  curl -H 'Authorization: Bearer {secret}' {base}/scim/v2/Users", err=True)
    click.echo(secret)


_LIST_COLUMNS = ("name", "prefix", "access", "created", "expires", "lastUsed", "state")


@tokens_group.command("list", short_help="The tokens and their state; never a secret.")
@for_tenant
@format_option()
def tokens_list(fmt: str) -> None:
    """Name, prefix, access, created, expires, last used and state; never the secret."""
    now = utcnow()
    rows = (
        {
            "name": token.name,
            "prefix": f"{token.prefix}…",
            "access": "read-only" if token.read_only else "read-write",
            "created": token.created,
            "expires": token.expires_at,
            "lastUsed": token.last_used_at,
            "state": token_store.state(token, now),
        }
        for token in token_store.all_tokens()
    )
    headers = ("name", "prefix", "access", "created (UTC)", "expires", "last used", "state")
    emit(rows, _LIST_COLUMNS, fmt, headers=headers)
