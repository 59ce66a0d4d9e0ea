"""`lms-scim lms`: a tenant's LMS targets (the sites the relay keeps in step).

The tenant's `LMS_*` settings are its target `default`; `lms add` makes more, each with its own
site, web-service token (read from a hidden prompt or stdin, never argv; stored sealed), match
field, auth plugin, role ids and, optionally, audience groups (whose members it receives) and
chosen cohorts (the groups that become cohorts there; by default every group).
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import click

from app import runtime
from app.cli.common import echo_json, emit, for_tenant, format_option, reported, table
from app.config import TenantSettings
from app.secretbox import masked
from app.store import enrolments, lms_actions, lms_targets
from app.store.models import LmsTarget

ROLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")  # stored in 16-character columns

lms_group = click.Group("lms", help="LMS targets: the sites the relay keeps in step.")


def read_token() -> str:
    """A web-service token from a hidden prompt at a terminal, else the first line of stdin
    (never from argv, where `ps` and shell history would show it)."""
    if sys.stdin.isatty():
        token = click.prompt("LMS web-service token", hide_input=True, default="")
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise ValueError("No token given: type it at the prompt or pipe it in on stdin.")
    return token.strip()


def _url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"The LMS URL must be http(s)://host[/path]: {text!r}.")
    return text.strip().rstrip("/")


def _roles(text: str) -> tuple[tuple[str, int], ...]:
    """`student=5,teacher=3` (as `LMS_ROLE_IDS`), with an id for every role."""
    config = runtime.current().config
    try:
        parsed = TenantSettings.overlay(config, {"LMS_ROLE_IDS": text}).lms_role_ids
    except ValueError:
        raise ValueError(f"--roles must look like student=5,teacher=3: {text!r}.") from None
    for name, _ in parsed:
        if not ROLE_NAME.fullmatch(name):
            raise ValueError(
                f"A role name is a letter, then up to 15 letters, digits, _ or -: {name!r}."
            )
    missing = sorted(set(enrolments.ROLES) - {name for name, _ in parsed})
    if missing or any(number < 1 for _, number in parsed):
        raise ValueError(
            f"--roles needs a positive LMS role id for {', '.join(enrolments.ROLES)}: {text!r}."
        )
    return parsed


def _match(text: str) -> str:
    value = text.strip().lower()
    if value not in ("email", "username"):
        raise ValueError(f"match must be email or username: {text!r}.")
    return value


def _auth(text: str) -> str:
    value = text.strip()
    if not value or not value.replace("_", "").isalnum():
        raise ValueError(f"auth must name a Moodle auth plugin (letters, digits, _): {text!r}.")
    return value


@lms_group.command("add", short_help="Add an LMS target (its token from a prompt or stdin).")
@for_tenant
@click.argument("name")
@click.option("--url", required=True, help="The site's base URL, e.g. https://moodle.example.com.")
@click.option("--match", "match", help="Match existing accounts by email or username.")
@click.option("--auth", help="The auth plugin of accounts it creates (default: the tenant's).")
@click.option("--roles", help="LMS role ids, e.g. student=5,teacher=3 (default: the tenant's).")
@click.option(
    "--audience",
    "audience",
    multiple=True,
    metavar="GROUP",
    help="Only members of GROUP (id or displayName) go there; repeat for more.",
)
@click.option(
    "--cohort",
    "cohort",
    multiple=True,
    metavar="GROUP",
    help="Only GROUP (id or displayName) becomes a cohort there; repeat for more "
    "(default: every group).",
)
def lms_add(
    name: str,
    url: str,
    match: str | None,
    auth: str | None,
    roles: str | None,
    audience: tuple[str, ...],
    cohort: tuple[str, ...],
) -> None:
    """Add an LMS target NAME; its web-service token is read from a hidden prompt or stdin.
    Every user (or every member of its audiences) and group is queued for it; every group
    (or each --cohort GROUP) becomes a cohort there."""
    with reported():
        fields = lms_targets.Fields(
            url=_url(url),
            match=_match(match) if match is not None else None,
            auth=_auth(auth) if auth is not None else None,
            roles=_roles(roles) if roles is not None else None,
            audiences=audience or None,
            cohorts=cohort or None,
        )
        lms_targets.check_name(name)
        fields = replace(fields, token=read_token())
        target = lms_targets.add(name, fields, runtime.current().secret_box.seal)
    whom = f"members of {', '.join(audience)}" if audience else "every user"
    which = f"cohorts {', '.join(cohort)}" if cohort else "every group as a cohort"
    click.echo(f"Added LMS target {target.name!r} ({target.url}): {whom}; {which}; token sealed.")


def _shown(target: LmsTarget, settings: TenantSettings) -> dict[str, Any]:
    """A target as `lms show` and `lms list` print it (the token masked, or shown unreadable
    when it does not open; only `masked` opens it)."""
    effective = lms_targets.settings_of(target, settings, runtime.current().secret_box)
    return {
        "name": target.name,
        "url": effective.lms_url,
        "token": masked(effective.lms_token),
        "match": effective.lms_match_field,
        "auth": effective.lms_auth,
        "roles": ",".join(f"{n}={i}" for n, i in effective.lms_role_ids),
        "source": "tenant settings (LMS_*)" if target.from_settings else "lms add/set",
        "sync_unenrolled": bool(target.sync_unenrolled),
    }


@lms_group.command("list", short_help="The tenant's LMS targets, backlog and dead letters.")
@for_tenant
@format_option()
def lms_list(fmt: str) -> None:
    """The tenant's LMS targets: name, site, match field, audiences, cohorts, backlog, dead
    letters."""
    with reported():
        found = lms_targets.lines()
        settings = runtime.current().tenant_settings()
        shown = [(line, _shown(line.target, settings)) for line in found]
    rows = (
        {
            "name": s["name"],
            "url": s["url"] or ("not configured" if fmt == "table" else None),
            "match": s["match"],
            "audiences": (line.audiences if line.target.restricted else None)
            if fmt == "json"
            else _audiences(line),
            "cohorts": (line.cohorts if line.target.chosen_cohorts else None)
            if fmt == "json"
            else _cohorts(line),
            "backlog": line.backlog,
            "deadLetters": line.dead,
        }
        for line, s in shown
    )
    emit(
        rows,
        ("name", "url", "match", "audiences", "cohorts", "backlog", "deadLetters"),
        fmt,
        headers=("name", "url", "match", "audiences", "cohorts", "backlog", "dead letters"),
    )


def _audiences(line: lms_targets.Line) -> str:
    if not line.target.restricted:
        return "everyone"
    return ", ".join(line.audiences) if line.audiences else "nobody (its groups are gone)"


def _cohorts(line: lms_targets.Line) -> str:
    if not line.target.chosen_cohorts:
        return "every group"
    return ", ".join(line.cohorts) if line.cohorts else "none (its groups are gone)"


@lms_group.command("show")
@for_tenant
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def lms_show(name: str, fmt: str) -> None:
    """One LMS target, its token masked."""
    with reported():
        target = lms_targets.by_name(name)
        shown = _shown(target, runtime.current().tenant_settings())
        line = next(x for x in lms_targets.lines() if x.target.id == target.id)
    shown["audiences"] = _audiences(line)
    shown["cohorts"] = _cohorts(line)
    shown["backlog"], shown["deadLetters"] = line.backlog, line.dead
    configured = lms_actions.of_target(target.id)
    if fmt == "json":
        shown["actions"] = {t: sorted(a, key=lms_actions.ACTIONS.index) for t, a in configured}
        echo_json(shown)
        return
    shown["actions"] = "; ".join(
        [f"{t}: {lms_actions.text(a)}" for t, a in configured] + ["other types: all"]
    )
    table(((key, value) for key, value in shown.items()), ("setting", "value"))


def _fields(assignments: tuple[str, ...]) -> lms_targets.Fields:
    """`url=…`, `match=…`, `auth=…`, `roles=…`, `audiences=G1,G2` (empty: everyone),
    `cohorts=G1,G2` (empty: every group) and a bare `token` (read from a hidden prompt or
    stdin)."""
    values: dict[str, Any] = {}
    for item in assignments:
        key, has_value, value = item.partition("=")
        key = key.strip().lower()
        if key == "token":
            if has_value:
                raise ValueError(
                    "The token is never taken from the command line; give `token` alone and "
                    "type it or pipe it in."
                )
            values["token"] = read_token()
            continue
        if key not in lms_targets.KEYS:
            raise ValueError(f"{key!r}: the keys are {', '.join(lms_targets.KEYS)} and token.")
        if not has_value:
            raise ValueError(f"{item!r}: write KEY=VALUE.")
        values[key] = _parsed(key, value)
    return lms_targets.Fields(**values)


def _parsed(key: str, value: str) -> Any:
    if key in ("audiences", "cohorts"):
        return tuple(ref.strip() for ref in value.split(",") if ref.strip())
    if key == "sync_unenrolled":
        return _switch(key, value)
    parse = {"url": _url, "match": _match, "auth": _auth, "roles": _roles}[key]
    return parse(value)


@lms_group.command("set", short_help="Change a target's url, roles, audiences, cohorts, ….")
@for_tenant
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE…")
def lms_set(name: str, assignments: tuple[str, ...]) -> None:
    """Change a target: url=, match=, auth=, roles=, audiences=G1,G2 (`audiences=`: everyone),
    cohorts=G1,G2 (only those groups become cohorts there; `cohorts=`: every group),
    sync_unenrolled=true|false (false: users no enrolment rule of the target gives are not
    created there); `token` alone reads a new token from a hidden prompt or stdin."""
    with reported():
        lms_targets.by_name(name)  # an unknown name before a prompt for a token
        fields = _fields(assignments)
        lms_targets.update(name, fields, runtime.current().secret_box.seal)
    for item in assignments:
        key = item.partition("=")[0].strip().lower()
        click.echo(f"{name}: token set (sealed)." if key == "token" else f"{name}: {item}")


def _switch(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "on", "off", "yes", "no", "1", "0"):
        raise ValueError(f"{key} is true or false: {text!r}.")
    return value in ("true", "on", "yes", "1")


@lms_group.command("actions", short_help="Which relay actions run for a userType.")
@for_tenant
@click.argument("name")
@click.argument("user_type", metavar="USERTYPE")
@click.argument("actions", metavar="ACTIONS")
def lms_actions_command(name: str, user_type: str, actions: str) -> None:
    """Which relay actions run on target NAME for users of USERTYPE: `none`, or a comma list
    of create, update, deactivate (the default for every type: all three). A type without
    `create` is only matched to existing accounts; without `update` its profile is not pushed;
    without `deactivate` deactivating a user does not suspend them there."""
    with reported():
        wanted = lms_actions.parse(actions)
        before = lms_actions.set_actions(name, user_type, wanted)
    was = f" (was: {lms_actions.text(before)})" if before != wanted else ""
    click.echo(f"{name}: userType {user_type}: {lms_actions.text(wanted)}{was}.")


@lms_group.command("remove", short_help="Remove an LMS target and what waits for it.")
@for_tenant
@click.argument("name")
@click.option("--force", is_flag=True, help="Also when changes still wait for it (they go).")
def lms_remove(name: str, force: bool) -> None:
    """Remove an LMS target with its links, enrolment rules and waiting changes (refused
    while changes wait, unless --force). Nothing is deleted on the LMS itself."""
    with reported():
        dropped = lms_targets.remove(name, force=force)
    extra = f"; {dropped} undelivered change(s) dropped" if dropped else ""
    click.echo(f"Removed LMS target {name!r}{extra}.")
