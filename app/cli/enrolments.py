"""`lms-scim enrolments`: Course enrolment rules on groups."""

from __future__ import annotations

import datetime as dt

import click

from app import runtime
from app.cli.common import emit, for_tenant, format_option, reported, table
from app.store import audit, enrolment_dates, lms_targets
from app.store import enrolments as enrolment_store

enrolments_group = click.Group("enrolments", help="Course enrolment rules on groups.")

LMS_HELP = "The LMS target of the course (may be left out when the tenant has one)."
START_HELP = "Enrolment start: an ISO 8601 date or date-time, UTC (Moodle's timestart)."
END_HELP = "Enrolment end, after --start (Moodle's timeend)."
NO_END_HELP = "No end date for enrolments with this role (repeat for more)."


@enrolments_group.command("add", short_help="Enrol GROUP's members in COURSE.")
@for_tenant
@click.argument("group")
@click.argument("course")
@click.option("--role", required=True, help="A role of the LMS target's --roles map.")
@click.option(
    "--keep-on-leave",
    is_flag=True,
    help="Members who leave the group (or when the rule is removed) stay enrolled.",
)
@click.option("--lms", "lms", metavar="NAME", help=LMS_HELP)
@click.option("--start", metavar="DATE", help=START_HELP)
@click.option("--end", metavar="DATE", help=END_HELP)
@click.option("--no-end-for", "no_end_for", metavar="ROLE", multiple=True, help=NO_END_HELP)
def enrolments_add(
    group: str,
    course: str,
    role: str,
    keep_on_leave: bool,
    lms: str | None,
    start: str | None,
    end: str | None,
    no_end_for: tuple[str, ...],
) -> None:
    """Enrol the members of GROUP (id or displayName) in LMS course COURSE (its id); again for
    a rule that exists, it changes the rule (role, keep flag, dates)."""
    with reported():
        dates = enrolment_store.Dates(
            _date(start, "--start"), _date(end, "--end"), _no_end(no_end_for)
        )
        rule = enrolment_store.add_rule(
            group,
            course,
            role,
            keep_on_leave=keep_on_leave,
            actor=audit.SYSTEM,
            lms=lms,
            dates=dates,
            roles=_roles(lms),
        )
    keep = "; leavers keep it" if rule.keep_on_leave else "; leavers are unenrolled"
    where = f" on {rule.lms}" if lms is not None else ""
    click.echo(
        f"Members of {rule.group_name!r} ({rule.members}) are enrolled in course "
        f"{rule.course_id}{where} as {rule.role}{keep}{_dates_text(rule)}."
    )


def _date(text: str | None, option: str) -> dt.datetime | None:
    return None if text is None else enrolment_dates.parse_date(text, option)


def _no_end(roles: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(r.strip() for item in roles for r in item.split(",") if r.strip())


def _roles(lms: str | None) -> list[str]:
    """The role names the rule's LMS target has role ids for."""
    target = lms_targets.chosen(lms)
    return list(lms_targets.role_ids_of(target, runtime.current().tenant_settings()))


def _dates_text(rule: enrolment_store.Rule) -> str:
    parts = []
    if rule.start is not None:
        parts.append(f"from {enrolment_dates.iso(rule.start)}")
    if rule.end is not None:
        parts.append(f"until {enrolment_dates.iso(rule.end)}")
        if rule.no_end_for:
            parts.append(f"(no end for {', '.join(rule.no_end_for)})")
    return "; " + " ".join(parts) if parts else ""


@enrolments_group.command("set", short_help="Change the dates of a rule.")
@for_tenant
@click.argument("group")
@click.argument("course")
@click.option("--start", metavar="DATE|none", help=START_HELP + " `none`: no start.")
@click.option("--end", metavar="DATE|none", help=END_HELP + " `none`: no end.")
@click.option("--no-end-for", "no_end_for", metavar="ROLE|none", multiple=True, help=NO_END_HELP)
@click.option("--lms", "lms", metavar="NAME", help=LMS_HELP)
def enrolments_set(
    group: str,
    course: str,
    start: str | None,
    end: str | None,
    no_end_for: tuple[str, ...],
    lms: str | None,
) -> None:
    """Change the dates of GROUP's rule for COURSE; the enrolments it made follow."""
    changes: dict[str, object] = {}
    with reported():
        if start is not None:
            changes["start"] = None if start.strip().lower() == "none" else _date(start, "--start")
        if end is not None:
            changes["end"] = None if end.strip().lower() == "none" else _date(end, "--end")
        if no_end_for:
            roles = _no_end(no_end_for)
            changes["no_end_for"] = () if [r.lower() for r in roles] == ["none"] else roles
        if not changes:
            raise ValueError("Give --start, --end or --no-end-for.")
        rule = enrolment_store.set_dates(
            group, course, changes, actor=audit.SYSTEM, lms=lms, roles=_roles(lms)
        )
    dates = _dates_text(rule).removeprefix("; ") or "no dates"
    click.echo(f"{rule.group_name!r}, course {rule.course_id} ({rule.role}): {dates}.")


_COLUMNS = (
    "lms",
    "groupId",
    "group",
    "courseId",
    "role",
    "keepOnLeave",
    "created",
    "members",
    "start",
    "end",
    "noEndFor",
)


@enrolments_group.command("list")
@for_tenant
@click.argument("group", required=False)
@format_option()
def enrolments_list(group: str | None, fmt: str) -> None:
    """Enrolment rules, of every group or of GROUP."""
    with reported():
        found = enrolment_store.rules(group)
    if fmt != "table":
        emit([{**rule.as_json(), "created": rule.created} for rule in found], _COLUMNS, fmt)
        return
    rows = [
        (r.group_name, r.course_id, r.role, "keep" if r.keep_on_leave else "unenrol", r.members)
        for r in found
    ]
    headers = ("group", "course", "role", "on leave", "members")
    if any(r.start or r.end for r in found):  # dated rules: when
        rows = [
            (*row, _dates_text(r).removeprefix("; ") or "-")
            for row, r in zip(rows, found, strict=True)
        ]
        headers = (*headers, "dates")
    if len(lms_targets.all_targets()) > 1:  # which site each rule enrols in
        rows = [(*row, r.lms) for row, r in zip(rows, found, strict=True)]
        headers = (*headers, "lms")
    table(rows, headers)


@enrolments_group.command("remove", short_help="Drop GROUP's rule for COURSE.")
@for_tenant
@click.argument("group")
@click.argument("course")
@click.option("--lms", "lms", metavar="NAME", help=LMS_HELP)
def enrolments_remove(group: str, course: str, lms: str | None) -> None:
    """Drop GROUP's rule for COURSE: members are unenrolled unless the rule keeps enrolments."""
    with reported():
        rule = enrolment_store.remove_rule(group, course, actor=audit.SYSTEM, lms=lms)
    what = "keep their enrolment" if rule.keep_on_leave else "are unenrolled"
    click.echo(f"Removed; the members of {rule.group_name!r} {what} in course {course}.")
