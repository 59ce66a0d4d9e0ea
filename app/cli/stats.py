"""`lms-scim stats`: Statistics: users, groups, tokens and provisioning activity."""

from __future__ import annotations

import click

from app.cli.common import echo_json, for_tenant, table
from app.store import status


@click.command("stats")
@for_tenant
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def stats_command(days: int, fmt: str) -> None:
    """Users by state and type, tokens by state, and provisioning activity per day."""
    found = status.stats(days)
    if fmt == "json":
        echo_json(found.as_json())
        return
    click.echo(f"users: {found.users} ({found.active} active, {found.inactive} inactive)")
    click.echo(f"groups: {found.groups}")
    tokens = ", ".join(f"{n} {state}" for state, n in sorted(found.tokens.items())) or "none"
    click.echo(f"tokens: {tokens}")
    click.echo("\nusers by type:")
    table(found.by_type, ("userType", "users"))
    click.echo(f"\nprovisioning events, last {days} days (UTC):")
    operations = list(found.activity)
    table(
        (
            (day.isoformat(), *(found.activity[op][n] for op in operations))
            for n, day in enumerate(found.days)
        ),
        ("day", *operations),
    )
