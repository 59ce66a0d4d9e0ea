"""`lms-scim users import FILE.csv`: users from a CSV with the columns `users list --format csv`
writes, for LMS teams moving onto lms-scim before their IdP is connected.

A dry run by default: every line is checked as a SCIM request would be (the schema, the
uniqueness of userName and e-mail on their identity keys) and a summary says what would happen.
`--apply` writes, each user in its own transaction through the store's create and modify (the
path of a SCIM POST and PATCH), audited as `cli`. A file with a line in error writes nothing.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from app import marshal, runtime
from app.cli.common import for_tenant, progress, reported
from app.errors import ScimError
from app.store import audit, status
from app.store import users as user_store
from scim_schemas import CORE_USER, identity_key, resource_type

USER = resource_type("User")
# What `users list --format csv` writes; `lastModified` is the store's and is not read back.
COLUMNS = ("id", "userName", "name", "email", "userType", "active", "externalId", "lastModified")
_COMPARED = ("userName", "name", "email", "userType", "active", "externalId")
SHOWN = 20  # planned changes a dry run lists before "… and N more"


@dataclass
class Line:
    """What one line of the file does: create, update, unchanged or error."""

    number: int
    user_name: str
    action: str
    user_id: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] | None = None  # a new user, validated
    error: str | None = None


def read(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The file's rows with their line numbers (the header is line 1)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: Excel's BOM
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            if "userName" not in header:
                raise ValueError(
                    f"{path.name}: line 1 must name the columns, userName among them "
                    f"(as `users list --format csv` writes: {','.join(COLUMNS)})."
                )
            unknown = [c for c in header if c not in COLUMNS]
            if unknown:
                raise ValueError(
                    f"{path.name}: unknown column(s) {', '.join(map(repr, unknown))}; "
                    f"the columns are {','.join(COLUMNS)}."
                )
            return [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text.") from None
    except csv.Error as exc:
        raise ValueError(f"{path.name}: {exc}.") from None


def _wanted(row: dict[str, Any]) -> dict[str, Any]:
    """The values a row sets: an empty cell leaves the value as it is."""
    if None in row:
        raise ValueError("more cells than the header has columns")
    cells = {k: (v or "").strip() for k, v in row.items() if k in _COMPARED}
    wanted: dict[str, Any] = {k: v for k, v in cells.items() if v and k != "active"}
    active = cells.get("active", "").lower()
    if active:
        if active not in ("true", "false"):
            raise ValueError(f"active must be true or false, not {cells['active']!r}")
        wanted["active"] = active == "true"
    if not wanted.get("userName"):
        raise ValueError("userName is empty")
    return wanted


def _new(wanted: dict[str, Any]) -> dict[str, Any]:
    """A new user as a SCIM POST body, with the tenant's defaults (as `users add`)."""
    settings = runtime.current().tenant_settings()
    body: dict[str, Any] = {
        "schemas": [CORE_USER],
        "userName": wanted["userName"],
        "active": wanted.get("active", True),
        "userType": wanted.get("userType", settings.default_user_type),
        "timezone": settings.default_timezone,
    }
    if "name" in wanted:
        body["displayName"] = wanted["name"]
    if "email" in wanted:
        body["emails"] = [{"value": wanted["email"], "type": "work", "primary": True}]
    if "externalId" in wanted:
        body["externalId"] = wanted["externalId"]
    return marshal.load_resource(USER, body, runtime.current().input_limits)


def _listed_email(resource: dict[str, Any]) -> str | None:
    """The address `users list` shows: the primary one, else the first."""
    emails = resource.get("emails") or []
    first = next((e for e in emails if e.get("primary")), emails[0] if emails else {})
    return first.get("value")


def _changed(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`current` (a stored user) with `changes` made, validated as a PATCH result is. The
    e-mail a listing shows (`_listed_email`) is the one an `email` change replaces."""
    listed_email = _listed_email(current)
    new = copy.deepcopy(current)
    for column, value in changes.items():
        if column == "name":
            new["displayName"] = value
        elif column == "email":
            emails = new.get("emails") or []
            same = [e for e in emails if e.get("value") == listed_email]
            if same:
                same[0]["value"] = value
            else:
                emails.insert(0, {"value": value, "type": "work", "primary": True})
            new["emails"] = emails
        else:
            new[column] = value
    return marshal.load_resource(USER, new, runtime.current().input_limits)


def _plan_line(number: int, row: dict[str, Any], seen: dict[str, int]) -> Line:
    wanted = _wanted(row)
    user_name = wanted["userName"]
    for key in _keys(wanted):
        if key in seen:
            raise ValueError(f"{key.split(':', 1)[0]} is on line {seen[key]} too")
    for key in _keys(wanted):
        seen[key] = number
    unique_emails = runtime.current().tenant_settings().unique_emails
    user_id = (row.get("id") or "").strip()
    existing = status.user_by(user_id=user_id, user_name=user_name)
    if user_id and existing is None:
        raise ValueError(f"no user with id {user_id!r} (leave the id empty to create one)")
    if existing is None:
        resource = _new(wanted)
        if clash := user_store.conflict(resource, unique_emails=unique_emails):
            raise clash
        return Line(number, user_name, "create", resource=resource)
    listed = status.summarise([existing])[0]
    changes = {k: v for k, v in wanted.items() if listed[k] != v}
    if not changes:
        return Line(number, user_name, "unchanged", user_id=existing.id)
    resource = _changed(user_store.get(existing.id), changes)
    if clash := user_store.conflict(resource, unique_emails=unique_emails, exclude_id=existing.id):
        raise clash
    return Line(number, user_name, "update", user_id=existing.id, changes=changes)


def _keys(wanted: dict[str, Any]) -> list[str]:
    """The identity keys a line claims within the file (a second line may not claim them)."""
    keys = [f"userName {wanted['userName']!r}:{identity_key(wanted['userName'])}"]
    if "email" in wanted and runtime.current().tenant_settings().unique_emails:
        keys.append(f"email {wanted['email']!r}:{identity_key(wanted['email'])}")
    return keys


def plan(rows: Iterable[tuple[int, dict[str, str]]], total: int) -> list[Line]:
    """What each line would do, checked against the database and the lines before it."""
    seen: dict[str, int] = {}
    lines = []
    for number, row in progress(rows, total, "checking users"):
        try:
            lines.append(_plan_line(number, row, seen))
        except (ScimError, ValueError, LookupError) as exc:
            detail = exc.detail if isinstance(exc, ScimError) else str(exc)
            user_name = (row.get("userName") or "").strip()
            lines.append(Line(number, user_name, "error", error=detail))
    return lines


def apply(line: Line) -> None:
    """Write one planned line, as `cli`; the store checks again under its locks."""
    unique_emails = runtime.current().tenant_settings().unique_emails
    if line.action == "create" and line.resource is not None:
        user_store.create(line.resource, None, audit.SYSTEM, unique_emails=unique_emails)
    elif line.action == "update" and line.user_id is not None:
        user_store.modify(
            line.user_id,
            lambda current: _changed(current, line.changes),
            actor=audit.SYSTEM,
            operation="patch",
            unique_emails=unique_emails,
        )


def _describe(line: Line) -> str:
    if line.action == "create":
        return f"line {line.number}: create {line.user_name!r}"
    shown = ", ".join(f"{k}={_cell(v)}" for k, v in line.changes.items())
    return f"line {line.number}: update {line.user_name!r} ({line.user_id}): {shown}"


def _cell(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


@click.command("import", short_help="Create or update users from a CSV (dry run first).")
@for_tenant
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--apply", "write", is_flag=True, help="Write (default: a dry run, nothing written).")
def users_import(file: Path, write: bool) -> None:
    """Create or update users from FILE, a CSV with the columns `users list --format csv`
    writes (id, userName, name, email, userType, active, externalId; lastModified is not read).

    A line with an id updates that user; without one, the user with its userName, or a new
    user. An empty cell leaves a value as it is. Every line is checked as a SCIM request would
    be (uniqueness of userName and e-mail, the schema); a file with an error writes nothing.
    Writes are audited as `cli`, like a SCIM create or PATCH."""
    with reported():
        rows = read(file)
    lines = plan(rows, len(rows))
    count = {a: sum(1 for x in lines if x.action == a) for a in ("create", "update", "unchanged")}
    errors = [x for x in lines if x.action == "error"]
    for line in errors:
        click.echo(f"line {line.number}: {line.error}", err=True)
    summary = (
        f"{count['create']} to create, {count['update']} to update, "
        f"{count['unchanged']} unchanged, {len(errors)} error(s)"
    )
    if errors:
        raise click.ClickException(f"{file.name}: {summary}; nothing written.")
    if not write:
        planned = [x for x in lines if x.action in ("create", "update")]
        for line in planned[:SHOWN]:
            click.echo(_describe(line))
        if len(planned) > SHOWN:
            click.echo(f"… and {len(planned) - SHOWN} more")
        click.echo(f"{file.name}: {summary} (a dry run: nothing written; --apply writes).")
        return
    todo = [x for x in lines if x.action in ("create", "update")]
    for done, line in enumerate(progress(todo, len(todo), "importing users")):
        try:
            with reported():
                apply(line)
        except click.ClickException as exc:
            raise click.ClickException(
                f"line {line.number}: {exc.message} ({done} line(s) written before it; run "
                "again to see what is left)."
            ) from None
    click.echo(
        f"{file.name}: created {count['create']}, updated {count['update']}, "
        f"{count['unchanged']} unchanged."
    )
