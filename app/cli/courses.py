"""`lms-scim courses`: an LMS course (and category path) made from each mapped group."""

from __future__ import annotations

import click

from app.cli.common import emit, for_tenant, format_option, reported
from app.store import course_maps, lms_targets

courses_group = click.Group("courses", help="LMS courses and categories made from groups.")

LMS_HELP = "The LMS target (may be left out when the tenant has one)."
PLACEHOLDERS = ", ".join(f"{{{name}}}" for name in course_maps.PLACEHOLDERS)


@courses_group.command("map", short_help="Give GROUP its own course on an LMS target.")
@for_tenant
@click.argument("group")
@click.option("--lms", "lms", metavar="NAME", help=LMS_HELP)
@click.option(
    "--shortname",
    required=True,
    metavar="TEMPLATE",
    help=f"The course's shortname, e.g. '{{displayName}}-{{externalId}}' ({PLACEHOLDERS}).",
)
@click.option("--fullname", metavar="TEMPLATE", help="The course's full name [{displayName}].")
@click.option(
    "--category",
    metavar="PATH-TEMPLATE",
    help="Its category path, levels split by '/', e.g. 'School/{externalId}' (made as needed; "
    "default: the LMS's first category).",
)
@click.option(
    "--template-course",
    metavar="ID",
    help="Copy this LMS course (core_course_duplicate_course) instead of making an empty one.",
)
@click.option(
    "--casing",
    type=click.Choice(course_maps.CASINGS),
    default="none",
    show_default=True,
    help="Case of the rendered shortname, fullname and category names.",
)
@click.option(
    "--follow-renames",
    is_flag=True,
    help="A group renamed here renames its course (and moves it to the new category path).",
)
def courses_map(
    group: str,
    lms: str | None,
    shortname: str,
    fullname: str | None,
    category: str | None,
    template_course: str | None,
    casing: str,
    follow_renames: bool,
) -> None:
    """Make sure the LMS has a course for GROUP (id or displayName), or change its templates.
    The course is matched by idnumber, then by shortname, and made only when neither exists."""
    fields = course_maps.Fields(
        shortname=shortname,
        fullname=fullname,
        category=category,
        template_course=template_course,
        casing=casing,
        follow_renames=follow_renames,
    )
    with reported():
        mapped = course_maps.map_group(group, fields, lms=lms)
    where = f" on {mapped.lms}" if lms is not None or len(lms_targets.all_targets()) > 1 else ""
    copied = f", copied from course {template_course}" if template_course else ""
    click.echo(
        f"Group {mapped.group_name!r} has a course{where}: shortname {mapped.shortname!r}, "
        f"category {mapped.category or '(the default)'}{copied}; the relay makes sure of it."
    )


_COLUMNS = (
    "group",
    "lms",
    "shortname",
    "fullname",
    "category",
    "templateCourse",
    "casing",
    "followRenames",
    "lmsCourseId",
)
_HEADERS = ("group", "lms", "shortname", "fullname", "category", "template", "casing",
            "renames", "course")  # fmt: skip


@courses_group.command("list", short_help="Mapped groups and their LMS courses.")
@for_tenant
@format_option()
def courses_list(fmt: str) -> None:
    """The mapped groups, their templates and their LMS course ids (once found or made)."""
    with reported():
        found = course_maps.maps()
    rows = [m.as_json() for m in found]
    if fmt == "table":  # a deleted group is shown by its id
        for row, m in zip(rows, found, strict=True):
            row["group"] = m.group_name if m.group_name is not None else f"{m.group_id} (deleted)"
    emit(rows, _COLUMNS, fmt, headers=_HEADERS)


@courses_group.command("unmap", short_help="Forget GROUP's course (it stays on the LMS).")
@for_tenant
@click.argument("group")
@click.option("--lms", "lms", metavar="NAME", help=LMS_HELP)
def courses_unmap(group: str, lms: str | None) -> None:
    """Forget GROUP's course on the LMS target (the course itself stays on the LMS)."""
    with reported():
        removed = course_maps.unmap(group, lms=lms)
    course = f"course {removed.lms_id}" if removed.lms_id is not None else "its course"
    click.echo(f"Unmapped; {course} stays on {removed.lms}, no longer kept in step.")
