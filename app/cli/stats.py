"""`lms-scim stats`: Statistics: users, groups, tokens and provisioning activity."""

from __future__ import annotations

from collections.abc import Iterator

import click

from app.cli.common import echo_json, emit, for_tenant, format_option, table
from app.store import status


@click.command("stats", short_help="Users, groups, tokens and activity per day.")
@for_tenant
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True)
@format_option()
def stats_command(days: int, fmt: str) -> None:
    """Users by state and type, tokens by state, and provisioning activity per day.

    CSV is one figure per row: `metric,key,value` (e.g. `users,active,12`,
    `create,2026-12-05,4`)."""
    found = status.stats(days)
    if fmt == "json":
        echo_json(found.as_json())
        return
    if fmt == "csv":
        emit(_figures(found), ("metric", "key", "value"), fmt)
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


def _figures(found: status.Stats) -> Iterator[dict[str, object]]:
    """Every figure of `stats` as `metric, key, value`."""
    figures: list[tuple[str, object, object]] = [
        ("users", "total", found.users),
        ("users", "active", found.active),
        ("users", "inactive", found.inactive),
        ("groups", "total", found.groups),
        *(("userType", name, n) for name, n in found.by_type),
        *(("tokens", state, n) for state, n in sorted(found.tokens.items())),
        *(
            (operation, day, counts[number])
            for operation, counts in found.activity.items()
            for number, day in enumerate(found.days)
        ),
    ]
    for metric, key, value in figures:
        yield {"metric": metric, "key": key, "value": value}
