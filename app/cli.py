"""The `lms-scim` command: Flask's CLI group plus database and token commands."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup

from app import auth
from app.store import migrations
from app.store import tokens as token_store
from app.store.db import database

db_group = click.Group("db", help="Database schema.")
tokens_group = click.Group("tokens", help="API tokens for identity providers.")


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database (numbered migrations, safe to run again)."""
    applied = migrations.upgrade(database.obj, report=click.echo)
    click.echo(f"database is up to date ({len(applied)} migration(s) applied now)")


@tokens_group.command("create")
@click.argument("name")
@click.option("--read-only", is_flag=True, help="May read but not write.")
def tokens_create(name: str, read_only: bool) -> None:
    """Create a token; the secret is printed once, alone on the last line."""
    secret = auth.issue(name, read_only=read_only)
    click.echo(f"Created token {name!r}. Store it now: it is not shown again.", err=True)
    click.echo(secret)


@tokens_group.command("bootstrap")
@click.option("--name", default="first-token", show_default=True)
def tokens_bootstrap(name: str) -> None:
    """Create and print a first token if no usable token exists (used by `make run`)."""
    if token_store.count_usable():
        click.echo(
            "A token already exists; create another with `lms-scim tokens create NAME`.", err=True
        )
        return
    secret = auth.issue(name)
    base = f"http://{current_app.config['SCIM'].host}:{current_app.config['SCIM'].port}"
    click.echo(f"First API token {name!r} (shown once; keep it safe):", err=True)
    click.echo(f"  curl -H 'Authorization: Bearer {secret}' {base}/scim/v2/Users", err=True)
    click.echo(secret)


@tokens_group.command("list")
def tokens_list() -> None:
    """Tokens by name and prefix — never the secret."""
    for token in token_store.all_tokens():
        state = "revoked" if token.revoked_at else "active"
        click.echo(f"{token.name}\t{token.prefix}…\t{token.created:%Y-%m-%d %H:%M}\t{state}")


def register(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(tokens_group)


def _create_app() -> Flask:
    from app import create_app

    return create_app()


def main() -> None:
    FlaskGroup(
        name="lms-scim",
        create_app=_create_app,
        add_default_commands=True,
        add_version_option=False,
        load_dotenv=False,
        help="lms-scim: SCIM 2.0 provisioning for the LMS.",
    )()
