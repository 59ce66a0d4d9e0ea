"""`lms-scim tenants`: the organisations this deployment serves."""

from __future__ import annotations

from dataclasses import asdict

import click

from app.cli.common import echo_json, reported, table
from app.store import tenants as tenant_store

tenants_group = click.Group("tenants", help="Organisations (tenants): create, list.")


@tenants_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The organisation's display name.")
def tenants_create(slug: str, name: str) -> None:
    """A new tenant SLUG (lower-case letters, digits, hyphens); give it a token with
    `lms-scim tokens create NAME --tenant SLUG`."""
    with reported():
        tenant = tenant_store.create(slug, name)
    click.echo(f"Created tenant {tenant.slug!r} ({tenant.name}).")


@tenants_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def tenants_list(fmt: str) -> None:
    """Every tenant with its users, active users, groups and usable tokens."""
    found = tenant_store.summaries()
    if fmt == "json":
        echo_json([asdict(s) for s in found])
        return
    table(
        [(s.slug, s.name, s.state, s.users, s.active_users, s.groups, s.tokens) for s in found],
        ("slug", "name", "state", "users", "active", "groups", "tokens"),
    )
