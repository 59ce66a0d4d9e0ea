"""`lms-scim audit`: The audit trail: who changed what, and pruning it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import click

from app.cli import common
from app.cli.common import (
    DURATION,
    emit,
    for_tenant,
    format_option,
    progress,
    progress_bar,
    settings,
)
from app.store import audit, status
from app.store.models import utcnow


def prune(days: int) -> int:
    """Delete events older than `days`, with a progress bar while a person watches."""
    before = utcnow() - dt.timedelta(days=days)
    with progress_bar(lambda: audit.count_before(before), "pruning audit events") as advance:
        return audit.prune(before, on_chunk=advance)


_COLUMNS = ("at", "token", "resourceType", "resourceId", "operation", "requestId", "changes")
_TABLE_COLUMNS = ("at", "token", "resourceType", "resourceId", "operation", "summary")


def _rows(events: Iterator[status.Event], fmt: str) -> Iterator[dict[str, Any]]:
    for event in events:
        row: dict[str, Any] = {**event.as_json(), "at": event.at}
        if fmt == "table":
            row["summary"] = event.summary(80)
        elif fmt == "csv":
            row["changes"] = event.summary(10_000)
        yield row


@click.group(
    "audit",
    invoke_without_command=True,
    short_help="Who changed what, with which token, in which request.",
)
@for_tenant
@click.option(
    "--user",
    "user_ref",
    help="userName, e-mail, id or externalId (a deleted user: the id the audit trail knows).",
)
@click.option("--since", type=DURATION, default="7d", show_default=True)
@format_option()
@click.pass_context
def audit_group(ctx: click.Context, user_ref: str | None, since: dt.timedelta, fmt: str) -> None:
    """The audit trail, oldest first: who changed what, with which token, in which request.

    JSON is one object per line (streamed); CSV's `changes` column is the before → after
    summary."""
    if ctx.invoked_subcommand is not None:
        return
    user_id = common.user_or_gone(user_ref) if user_ref else None
    start = utcnow() - since
    found = status.events(resource_id=user_id, since=start)
    if fmt != "table":  # an export: a bar while a person watches it go to a file
        found = progress(
            found,
            lambda: status.count_events(resource_id=user_id, since=start),
            "exporting audit events",
            output_on_stdout=True,
        )
    emit(
        _rows(found, fmt),
        _TABLE_COLUMNS if fmt == "table" else _COLUMNS,
        fmt,
        headers=("time (UTC)", "token", "type", "id", "operation", "changes"),
        json_lines=True,
    )


@audit_group.command("prune")
@click.option("--days", type=click.IntRange(min=1), help="Default: AUDIT_RETENTION_DAYS.")
def auditprune(days: int | None) -> None:
    """Delete audit events older than the retention period."""
    days = days or settings().audit_retention_days
    click.echo(f"pruned {prune(days)} audit event(s) older than {days} days")
