"""`lms-scim enrolments`: Course enrolment rules on groups."""

from __future__ import annotations

import click

from app.cli.common import emit, for_tenant, format_option, reported, table
from app.store import audit, lms_targets
from app.store import enrolments as enrolment_store

enrolments_group = click.Group("enrolments", help="Course enrolment rules on groups.")

LMS_HELP = "The LMS target of the course (may be left out when the tenant has one)."


@enrolments_group.command("add", short_help="Enrol GROUP's members in COURSE.")
@for_tenant
@click.argument("group")
@click.argument("course")
@click.option("--role", type=click.Choice(enrolment_store.ROLES), required=True)
@click.option(
    "--keep-on-leave",
    is_flag=True,
    help="Members who leave the group (or when the rule is removed) stay enrolled.",
)
@click.option("--lms", "lms", metavar="NAME", help=LMS_HELP)
def enrolments_add(
    group: str, course: str, role: str, keep_on_leave: bool, lms: str | None
) -> None:
    """Enrol the members of GROUP (id or displayName) in LMS course COURSE (its id)."""
    with reported():
        rule = enrolment_store.add_rule(
            group, course, role, keep_on_leave=keep_on_leave, actor=audit.SYSTEM, lms=lms
        )
    keep = "; leavers keep it" if rule.keep_on_leave else "; leavers are unenrolled"
    where = f" on {rule.lms}" if lms is not None else ""
    click.echo(
        f"Members of {rule.group_name!r} ({rule.members}) are enrolled in course "
        f"{rule.course_id}{where} as {rule.role}{keep}."
    )


_COLUMNS = ("lms", "groupId", "group", "courseId", "role", "keepOnLeave", "created", "members")


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
