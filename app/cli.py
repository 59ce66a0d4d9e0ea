"""The `lms-scim` command: Flask's CLI group plus database, token, audit, user, operator and
statistics commands. Thin: the store (`app.store.*`) and `app.auth` do the work."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup

from app import auth, marshal
from app.errors import NotFound, ScimError
from app.store import audit, migrations, outbox, status
from app.store import enrolments as enrolment_store
from app.store import operators as operator_store
from app.store import tokens as token_store
from app.store import users as user_store
from app.store.db import database
from app.store.models import utcnow
from scim_schemas import CORE_USER, resource_type

db_group = click.Group("db", help="Database schema.")
tokens_group = click.Group("tokens", help="API tokens for identity providers.")
users_group = click.Group("users", help="LMS users: look up, list, add.")
operators_group = click.Group("operators", help="People who may sign in to /admin.")
enrolments_group = click.Group("enrolments", help="Course enrolment rules on groups.")
relay_group = click.Group("relay", help="The LMS relay: keep Moodle or Totara in step.")

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Duration(click.ParamType):
    """`90d`, `24h`, `30m`, `45s`, `2w` → a timedelta."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(value).lower())
        if not match:
            self.fail(f"{value!r} is not a duration like 90d, 24h, 30m or 45s", param, ctx)
        return dt.timedelta(**{_UNITS[match[2]]: int(match[1])})


DURATION = Duration()


def _config() -> Any:
    return current_app.config["SCIM"]


def _when(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """A store refusal (not found, already exists, invalid) becomes a one-line CLI error."""
    try:
        yield
    except (ScimError, status.Ambiguous, enrolment_store.AmbiguousGroup, ValueError) as exc:
        raise click.ClickException(exc.detail if isinstance(exc, ScimError) else str(exc)) from None


def _table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """Aligned columns (for small results; streams use `_stream_table`)."""
    rows = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))


# -- db --------------------------------------------------------------------------------------


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database (numbered migrations, safe to run again), then prune
    audit events older than AUDIT_RETENTION_DAYS."""
    applied = migrations.upgrade(database.obj, report=click.echo)
    click.echo(f"database is up to date ({len(applied)} migration(s) applied now)")
    removed = _prune(_config().audit_retention_days)
    if removed:
        click.echo(f"pruned {removed} audit event(s) older than the retention period", err=True)


# -- tokens ----------------------------------------------------------------------------------


@tokens_group.command("create")
@click.argument("name")
@click.option("--expires-in", type=DURATION, help="Lifetime, e.g. 90d (default: no expiry).")
@click.option("--read-only", is_flag=True, help="May read (GET, POST .search) but not write.")
def tokens_create(name: str, expires_in: dt.timedelta | None, read_only: bool) -> None:
    """Create a token; the secret is printed once, alone on the last line."""
    with _reported():
        secret = auth.issue(name, read_only=read_only, expires_in=expires_in)
    click.echo(f"Created token {name!r}. Store it now: it is not shown again.", err=True)
    click.echo(secret)


@tokens_group.command("rotate")
@click.argument("name")
@click.option(
    "--grace",
    type=DURATION,
    default="24h",
    show_default=True,
    help="How long the old secret keeps working, so the IdP can be switched without downtime.",
)
@click.option("--expires-in", type=DURATION, help="Lifetime of the new token (default: none).")
def tokens_rotate(name: str, grace: dt.timedelta, expires_in: dt.timedelta | None) -> None:
    """Issue a new secret for NAME; the old one stops when the grace period ends."""
    with _reported():
        secret = auth.rotate(name, grace=grace, expires_in=expires_in)
    ends = utcnow() + grace
    click.echo(
        f"Rotated token {name!r}; the old secret works until {ends:%Y-%m-%d %H:%M} UTC. "
        "Store the new one now: it is not shown again.",
        err=True,
    )
    click.echo(secret)


@tokens_group.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Refuse NAME from now on (other server processes within TOKEN_CACHE_SECONDS)."""
    with _reported():
        count = auth.revoke(name)
    click.echo(f"Revoked {count} token(s) named {name!r}.")


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
    base = f"http://{_config().host}:{_config().port}"
    click.echo(f"First API token {name!r} (shown once; keep it safe):", err=True)
    click.echo(f"  curl -H 'Authorization: Bearer {secret}' {base}/scim/v2/Users", err=True)
    click.echo(secret)


@tokens_group.command("list")
def tokens_list() -> None:
    """Name, prefix, created, expires, last used and state (tab-separated) — never the secret."""
    now = utcnow()
    for token in token_store.all_tokens():
        mode = " (read-only)" if token.read_only else ""
        fields = (
            token.name,
            f"{token.prefix}…",
            _when(token.created),
            _when(token.expires_at),
            _when(token.last_used_at),
            token_store.state(token, now) + mode,
        )
        click.echo("\t".join(fields))


# -- audit -----------------------------------------------------------------------------------


def _prune(days: int) -> int:
    return audit.prune(utcnow() - dt.timedelta(days=days))


def _resource_id(ref: str) -> str:
    """A user's id for `--user`; an unknown reference is taken as the id of a deleted user."""
    with _reported():
        try:
            return status.find_user(ref).id
        except NotFound:
            return ref


@click.group("audit", invoke_without_command=True)
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
        (_when(e.at), e.token_name, e.resource_type, e.resource_id, e.operation, e.summary(80))
        for e in found
    )
    _table(rows, ("time (UTC)", "token", "type", "id", "operation", "changes"))


@audit_group.command("prune")
@click.option("--days", type=click.IntRange(min=1), help="Default: AUDIT_RETENTION_DAYS.")
def audit_prune(days: int | None) -> None:
    """Delete audit events older than the retention period."""
    days = days or _config().audit_retention_days
    click.echo(f"pruned {_prune(days)} audit event(s) older than {days} days")


# -- users -----------------------------------------------------------------------------------


def _find(ref: str) -> str:
    with _reported():
        return status.find_user(ref).id


@users_group.command("status")
@click.argument("user")
@click.option("--history", default=10, show_default=True, help="Recent events to show.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def users_status(user: str, history: int, fmt: str) -> None:
    """Is USER active, since when, who changed it; groups and recent history.

    USER is a userName, e-mail address, id or externalId."""
    found = status.user_status(_find(user), history=history)
    if fmt == "json":
        _json(found.as_json())
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
        ("state", f"{found.state} since {_when(found.state_since)} UTC{by}"),
        ("created", f"{_when(u.created)} UTC"),
        ("last modified", f"{_when(u.last_modified)} UTC"),
        (
            "last event",
            f"{last.operation} at {_when(last.at)} UTC by token {last.token_name or '-'}"
            if last
            else "-",
        ),
        ("groups", ", ".join(name for _, name in found.groups) or "-"),
        ("enrolments", ", ".join(_enrolment(e) for e in found.enrolments) or "-"),
        ("LMS", found.lms.summary if found.lms else "-"),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<15}{value}")
    if found.history:
        click.echo("\nrecent history (newest first):")
        _table(
            (
                (_when(e.at), e.operation, e.token_name, e.request_id, e.summary(70))
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
    body["userType"] = user_type or _config().default_user_type
    body["timezone"] = _config().default_timezone
    with _reported():
        resource = marshal.load_resource(resource_type("User"), body)
        created = user_store.create(resource, None, audit.SYSTEM)
    click.echo(f"Created user {created['userName']!r} with id {created['id']}.", err=True)
    click.echo(created["id"])


# -- operators -------------------------------------------------------------------------------


MIN_PASSWORD_LENGTH = 12


def _long_enough(_ctx: Any, _param: Any, password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(f"use at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _password_option() -> Any:
    return click.option(
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        callback=_long_enough,
        help=f"Prompted for when omitted (input hidden); {MIN_PASSWORD_LENGTH}+ characters.",
    )


@operators_group.command("create")
@click.argument("name")
@_password_option()
def operators_create(name: str, password: str) -> None:
    """An operator who may sign in to /admin (read-only status pages)."""
    with _reported():
        auth.create_operator(name, password)
    click.echo(f"Created operator {name!r}.")


@operators_group.command("password")
@click.argument("name")
@_password_option()
def operators_password(name: str, password: str) -> None:
    """Set a new password for NAME (also lifts a sign-in back-off)."""
    with _reported():
        auth.set_operator_password(name, password)
    click.echo(f"Password of {name!r} changed.")


@operators_group.command("list")
def operators_list() -> None:
    """Operators with their last sign-in."""
    _table(
        (
            (o.name, _when(o.created), _when(o.last_sign_in_at))
            for o in operator_store.all_operators()
        ),
        ("name", "created", "last sign-in"),
    )


# -- enrolments -------------------------------------------------------------------------------


@enrolments_group.command("add")
@click.argument("group")
@click.argument("course")
@click.option("--role", type=click.Choice(enrolment_store.ROLES), required=True)
@click.option(
    "--keep-on-leave",
    is_flag=True,
    help="Members who leave the group (or when the rule is removed) stay enrolled.",
)
def enrolments_add(group: str, course: str, role: str, keep_on_leave: bool) -> None:
    """Enrol the members of GROUP (id or displayName) in LMS course COURSE (its id)."""
    with _reported():
        rule = enrolment_store.add_rule(
            group, course, role, keep_on_leave=keep_on_leave, actor=audit.SYSTEM
        )
    keep = "; leavers keep it" if rule.keep_on_leave else "; leavers are unenrolled"
    click.echo(
        f"Members of {rule.group_name!r} ({rule.members}) are enrolled in course "
        f"{rule.course_id} as {rule.role}{keep}."
    )


@enrolments_group.command("list")
@click.argument("group", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def enrolments_list(group: str | None, fmt: str) -> None:
    """Enrolment rules, of every group or of GROUP."""
    with _reported():
        found = enrolment_store.rules(group)
    if fmt == "json":
        _json([rule.as_json() for rule in found])
        return
    _table(
        (
            (r.group_name, r.course_id, r.role, "keep" if r.keep_on_leave else "unenrol", r.members)
            for r in found
        ),
        ("group", "course", "role", "on leave", "members"),
    )


@enrolments_group.command("remove")
@click.argument("group")
@click.argument("course")
def enrolments_remove(group: str, course: str) -> None:
    """Drop GROUP's rule for COURSE: members are unenrolled unless the rule keeps enrolments."""
    with _reported():
        rule = enrolment_store.remove_rule(group, course, actor=audit.SYSTEM)
    what = "keep their enrolment" if rule.keep_on_leave else "are unenrolled"
    click.echo(f"Removed; the members of {rule.group_name!r} {what} in course {course}.")


# -- relay -----------------------------------------------------------------------------------


def _relay() -> Any:
    from app.relay import worker

    with _reported():
        return worker.Relay(worker.client_from(_config()), worker.Settings.from_config(_config()))


@relay_group.command("run")
@click.option("--batch", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--idle", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def relay_run(batch: int, idle: float, once: bool) -> None:
    """Deliver the outbox to the LMS until SIGTERM (a long-running worker; run several if
    you like: they never deliver the same change at once)."""
    relay = _relay()
    relay.batch = batch
    stop = threading.Event()
    if once:
        while relay.run_once(stop) and not relay.failures:
            pass
        _relay_summary()
        return

    def _stop(signum: int, _frame: Any) -> None:
        click.echo(f"relay: {signal.Signals(signum).name}, finishing the change in hand", err=True)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    click.echo(f"relay: delivering to {relay.client.url}", err=True)
    relay.run(stop, idle)
    click.echo("relay: stopped", err=True)


@relay_group.command("test")
def relay_test() -> None:
    """Check LMS_URL and LMS_TOKEN, and which required functions the token may not call."""
    from app.relay.moodle import LmsError

    relay = _relay()
    try:
        info, missing = relay.client.check()
    except LmsError as exc:
        raise click.ClickException(f"cannot use the LMS web service: {exc}") from None
    click.echo(
        f"connected to {info.get('sitename', '?')} ({info.get('release', '?')}) "
        f"as {info.get('username', '?')}"
    )
    if missing:
        click.echo("the token may not call:", err=True)
        for name in missing:
            click.echo(f"  {name}", err=True)
        raise click.ClickException(
            f"{len(missing)} required function(s) missing from the web service"
        )
    click.echo("every required function is allowed")


def _relay_summary() -> None:
    found = outbox.relay_status(limit=0)
    click.echo(
        f"backlog: {found.backlog} ({found.retrying} retrying); failures: {found.dead_total}"
    )


@relay_group.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--limit", default=20, show_default=True, help="Dead letters to show.")
def relay_status(fmt: str, limit: int) -> None:
    """Backlog, failures (dead letters with their reasons) and the last delivery."""
    found = outbox.relay_status(limit=limit)
    if fmt == "json":
        _json(found.as_json())
        return
    oldest = f", oldest from {_when(found.oldest)} UTC" if found.oldest else ""
    click.echo(f"backlog:       {found.backlog} change(s) waiting{oldest}")
    click.echo(
        f"retrying:      {found.retrying}" + (f" ({found.last_error})" if found.last_error else "")
    )
    click.echo(f"failures:      {found.dead_total} dead letter(s)")
    last = f"{_when(found.last_delivery)} UTC" if found.last_delivery else "never"
    click.echo(f"last delivery: {last}")
    if found.dead:
        click.echo("\ndead letters (newest first; `lms-scim relay retry` requeues them):")
        _table(
            (
                (r.id, _when(r.created), r.kind, r.user_id or r.group_id, r.attempts, r.last_error)
                for r in found.dead
            ),
            ("id", "changed (UTC)", "kind", "resource", "attempts", "reason"),
        )


@relay_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
def relay_retry(ids: tuple[int, ...], everything: bool) -> None:
    """Put dead letters (IDS, or --all) back in the queue, e.g. after fixing the cause."""
    if not ids and not everything:
        raise click.UsageError("name dead letters by id, or use --all")
    count = outbox.requeue(None if everything else ids)
    click.echo(f"requeued {count} change(s)")


# -- stats -----------------------------------------------------------------------------------


@click.command("stats")
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def stats_command(days: int, fmt: str) -> None:
    """Users by state and type, tokens by state, and provisioning activity per day."""
    found = status.stats(days)
    if fmt == "json":
        _json(found.as_json())
        return
    click.echo(f"users: {found.users} ({found.active} active, {found.inactive} inactive)")
    click.echo(f"groups: {found.groups}")
    tokens = ", ".join(f"{n} {state}" for state, n in sorted(found.tokens.items())) or "none"
    click.echo(f"tokens: {tokens}")
    click.echo("\nusers by type:")
    _table(found.by_type, ("userType", "users"))
    click.echo(f"\nprovisioning events, last {days} days (UTC):")
    operations = list(found.activity)
    _table(
        (
            (day.isoformat(), *(found.activity[op][n] for op in operations))
            for n, day in enumerate(found.days)
        ),
        ("day", *operations),
    )


def register(app: Flask) -> None:
    for command in (
        db_group,
        tokens_group,
        audit_group,
        users_group,
        operators_group,
        stats_command,
        enrolments_group,
        relay_group,
    ):
        app.cli.add_command(command)


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
