"""`lms-scim db`: The database schema: migrations."""

from __future__ import annotations

import click

from app.cli.audit import prune
from app.cli.common import settings
from app.store import migrations
from app.store.db import database

db_group = click.Group("db", help="Database schema.")


@db_group.command("upgrade", short_help="Create or upgrade the database; prune old audit.")
def db_upgrade() -> None:
    """Create or upgrade the database (numbered migrations, safe to run again), then prune
    audit events older than AUDIT_RETENTION_DAYS."""
    applied = migrations.upgrade(database.obj, report=click.echo)
    click.echo(f"database is up to date ({len(applied)} migration(s) applied now)")
    removed = prune(settings().audit_retention_days)
    if removed:
        click.echo(f"pruned {removed} audit event(s) older than the retention period", err=True)
