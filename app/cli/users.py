"""`lms-scim users`: LMS users: look up, list, add, and find duplicate identities."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import click

from app import marshal, runtime
from app.cli.common import echo_json, for_tenant, reported, table
from app.datetimes import minute
from app.store import audit, collisions, status
from app.store import users as user_store
from scim_schemas import CORE_USER, resource_type

users_group = click.Group("users", help="LMS users: look up, list, add.")


def _find(ref: str) -> str:
    with reported():
        return status.find_user(ref).id


@users_group.command("status")
@for_tenant
@click.argument("user")
@click.option("--history", default=10, show_default=True, help="Recent events to show.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def users_status(user: str, history: int, fmt: str) -> None:
    """Is USER active, since when, who changed it; groups and recent history.

    USER is a userName, e-mail address, id or externalId."""
    found = status.user_status(_find(user), history=history)
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


class _Echo:
    """A file-like stdout for `csv`, through `click.echo` (which the CLI runner captures)."""

    def write(self, text: str) -> None:
        click.echo(text, nl=False)


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


def _progress(rows: Iterator[dict[str, Any]], total: int) -> Iterator[dict[str, Any]]:
    """A progress bar on stderr when a person watches a long export: stderr is a terminal and
    stdout is not (on a shared terminal the bar would tear through the rows)."""
    if total < 1000 or not sys.stderr.isatty() or sys.stdout.isatty():
        yield from rows
        return
    with click.progressbar(length=total, label="exporting users", file=sys.stderr) as bar:
        for row in rows:
            yield row
            bar.update(1)


@users_group.command("list")
@for_tenant
@click.option("--inactive", is_flag=True, help="Only deactivated users.")
@click.option("--group", help="Only members of this group (id or displayName).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def users_list(inactive: bool, group: str | None, fmt: str) -> None:
    """Users, streamed in chunks (constant memory): table, CSV, or JSON lines."""
    condition = status.user_condition(inactive=inactive, group=group)
    rows = _progress(status.iter_users(condition), status.count_users(condition))
    out = _Echo()
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=_LIST_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    elif fmt == "json":
        for row in rows:
            out.write(json.dumps({k: row[k] for k in _LIST_COLUMNS}, default=str) + "\n")
    else:
        # Fixed widths: a stream cannot measure its longest value first.
        template = "{:<32}  {:<32}  {:<24}  {:<10}  {:<8}"
        out.write(template.format("id", "userName", "name", "userType", "active").rstrip() + "\n")
        for row in rows:
            values = [row["id"], row["userName"], row["name"], row["userType"] or "-"]
            clipped = [v if len(v) <= 32 else v[:31] + "…" for v in values]
            out.write(template.format(*clipped, "yes" if row["active"] else "no").rstrip() + "\n")


@users_group.command("add")
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


@users_group.command("duplicates")
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
