"""`lms-scim audit`: The audit trail: who changed what, and pruning it."""

from __future__ import annotations

import datetime as dt
import json

import click

from app.cli.common import DURATION, for_tenant, reported, settings, table
from app.datetimes import minute
from app.errors import NotFound
from app.store import audit, status
from app.store.models import utcnow


def prune(days: int) -> int:
    return audit.prune(utcnow() - dt.timedelta(days=days))


def _resource_id(ref: str) -> str:
    """A user's id for `--user`; an unknown reference is taken as the id of a deleted user."""
    with reported():
        try:
            return status.find_user(ref).id
        except NotFound:
            return ref


@click.group("audit", invoke_without_command=True)
@for_tenant
@click.option("--user", "user_ref", help="userName, e-mail, id or externalId.")
@click.option("--since", type=DURATION, default="7d", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def audit_group(ctx: click.Context, user_ref: str | None, since: dt.timedelta, fmt: str) -> None:
    """The audit trail, oldest first: who changed what, with which token, in which request."""
    if ctx.invoked_subcommand is not None:
        return
    found = status.events(
        resource_id=_resource_id(user_ref) if user_ref else None, since=utcnow() - since
    )
    if fmt == "json":
        for event in found:  # one JSON object per line, streamed
            click.echo(json.dumps(event.as_json(), default=str, ensure_ascii=False))
        return
    rows = (
        (minute(e.at), e.token_name, e.resource_type, e.resource_id, e.operation, e.summary(80))
        for e in found
    )
    table(rows, ("time (UTC)", "token", "type", "id", "operation", "changes"))


@audit_group.command("prune")
@click.option("--days", type=click.IntRange(min=1), help="Default: AUDIT_RETENTION_DAYS.")
def auditprune(days: int | None) -> None:
    """Delete audit events older than the retention period."""
    days = days or settings().audit_retention_days
    click.echo(f"pruned {prune(days)} audit event(s) older than {days} days")
