"""`lms-scim users`: LMS users: look up, list, add, import, and find duplicate identities."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from app import marshal, runtime
from app.cli import common, user_import
from app.cli.common import echo_json, emit, for_tenant, format_option, progress, reported, table
from app.datetimes import minute
from app.store import audit, collisions, status
from app.store import users as user_store
from scim_schemas import CORE_USER, resource_type

users_group = click.Group("users", help="LMS users: look up, list, add, import.")


@users_group.command("status", short_help="Is USER active, since when, who changed it.")
@for_tenant
@click.argument("user")
@click.option("--history", default=10, show_default=True, help="Recent events to show.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def users_status(user: str, history: int, fmt: str) -> None:
    """Is USER active, since when, who changed it; groups and recent history.

    USER is a userName, e-mail address, id or externalId."""
    found = status.user_status(common.user(user).id, history=history)
    if fmt == "json":
        echo_json(found.as_json())
        return
    u = found.user
    by = f" by token {found.changed_by}" if found.changed_by else ""
    last = found.last_event
    lines = [
        (
            "user",
            f"{u.user_name}" + (f" ({status.display_name(u)})" if status.display_name(u) else ""),
        ),
        ("id", u.id),
        ("externalId", u.external_id or "-"),
        ("e-mail", ", ".join(found.emails) or "-"),
        ("userType", u.user_type or "-"),
        ("state", f"{found.state} since {minute(found.state_since)} UTC{by}"),
        ("created", f"{minute(u.created)} UTC"),
        ("last modified", f"{minute(u.last_modified)} UTC"),
        (
            "last event",
            f"{last.operation} at {minute(last.at)} UTC by token {last.token_name or '-'}"
            if last
            else "-",
        ),
        ("groups", ", ".join(name for _, name in found.groups) or "-"),
        ("enrolments", ", ".join(_enrolment(e) for e in found.enrolments) or "-"),
        ("LMS", found.lms.summary if found.lms else "-"),
        *((f"LMS {t.target}", t.summary) for t in found.targets),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<15}{value}")
    if found.history:
        click.echo("\nrecent history (newest first):")
        table(
            (
                (minute(e.at), e.operation, e.token_name, e.request_id, e.summary(70))
                for e in found.history
            ),
            ("time (UTC)", "operation", "token", "request", "changes"),
        )


def _enrolment(enrolment: dict[str, str]) -> str:
    return f"course {enrolment['courseId']} ({enrolment['role']})"


_LIST_COLUMNS = (
    "id",
    "userName",
    "name",
    "email",
    "userType",
    "active",
    "externalId",
    "lastModified",
)
_TABLE_COLUMNS = ("id", "userName", "name", "userType", "active")


@users_group.command("list", short_help="Users as a table, CSV or JSON lines (streamed).")
@for_tenant
@click.option("--inactive", is_flag=True, help="Only deactivated users.")
@click.option("--group", help="Only members of this group (id or displayName).")
@format_option()
def users_list(inactive: bool, group: str | None, fmt: str) -> None:
    """Users, streamed in chunks (constant memory): table, CSV, or JSON lines."""
    group_id = common.group(group).id if group else None
    condition = status.user_condition(inactive=inactive, group_id=group_id)
    rows = progress(
        status.iter_users(condition),
        lambda: status.count_users(condition),
        "exporting users",
        output_on_stdout=True,
    )
    # A table streams too, in fixed widths: a stream cannot measure its longest value first.
    columns = _TABLE_COLUMNS if fmt == "table" else _LIST_COLUMNS
    emit(rows, columns, fmt, json_lines=True, widths=(32, 32, 24, 10, 6))


@users_group.command("add", short_help="Create an LMS-side user (as a SCIM create would).")
@for_tenant
@click.argument("username")
@click.option("--email", help="Work e-mail (primary).")
@click.option("--given", help="Given name.")
@click.option("--family", help="Family name.")
@click.option("--user-type", help="Default: DEFAULT_USER_TYPE.")
def users_add(
    username: str, email: str | None, given: str | None, family: str | None, user_type: str | None
) -> None:
    """Create an LMS-side user through the same store path as a SCIM create (audited as `cli`),
    so an IdP's import has someone to match."""
    body: dict[str, Any] = {"schemas": [CORE_USER], "userName": username, "active": True}
    if given or family:
        body["name"] = {k: v for k, v in (("givenName", given), ("familyName", family)) if v}
    if email:
        body["emails"] = [{"value": email, "type": "work", "primary": True}]
    current = runtime.current()
    tenant = current.tenant_settings()
    body["userType"] = user_type or tenant.default_user_type
    body["timezone"] = tenant.default_timezone
    with reported():
        resource = marshal.load_resource(resource_type("User"), body, current.input_limits)
        created = user_store.create(
            resource, None, audit.SYSTEM, unique_emails=tenant.unique_emails
        )
    click.echo(f"Created user {created['userName']!r} with id {created['id']}.", err=True)
    click.echo(created["id"])


@users_group.command("duplicates", short_help="Users and groups whose names became one identity.")
@for_tenant
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def users_duplicates(fmt: str) -> None:
    """Users and groups whose names became one identity (NFKC case-fold) when lms-scim began
    comparing names that way: each pair, the one that keeps the name first. Resolve a pair by
    renaming one of them in the IdP (or deactivating it there); until then neither the name nor
    the address can be taken by a third."""
    pairs = collisions.pairs()
    if fmt == "json":
        echo_json([asdict(pair) for pair in pairs])
        return
    if not pairs:
        click.echo("No duplicate identities.")
        return

    def side(found: dict[str, Any] | None) -> str:
        if found is None:
            return "(nobody now: its next update takes the key)"
        state = "" if found["active"] else ", inactive"
        return f"{found['id']} ({found['name']!r}{state})"

    table(
        [(p.attribute, repr(p.key), side(p.kept), side(p.marked)) for p in pairs],
        ("attribute", "key", "keeps it", "also has it"),
    )


users_group.add_command(user_import.users_import)
