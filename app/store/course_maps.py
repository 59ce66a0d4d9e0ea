"""Courses made from groups (issue 17 §4): a group's course on an LMS target, its templates, and
what the relay found or made there (m0017).

A map says: the target has a course for this group, with a shortname, fullname and category
path rendered from templates over the group's `displayName`, `externalId` and `id`, in the
casing asked for. The relay (`app.relay.courses`) finds the course on first sight by its
idnumber (`idnumber_of`, stable: made from the group id) and then by shortname, creates it only
when neither exists, and from then on knows it by its LMS id (`lms_id`). The values it last gave
the course are kept (`applied_*`): a renamed group changes them only with `follow_renames`.

Category paths ("School/7B") are linked level by level to the LMS categories the relay found or
made (`CategoryLink`), per target.

An enrolment rule whose course is `mapped` (`MAPPED`) enrols the group's members in the group's
mapped course: it is stored with the course `mapped:<group id>` (`mapped_course`), which keeps
naming the group's course in enrolments kept after leaving.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import peewee

from app.errors import InvalidValue, NotFound
from app.store import audit, enrolments, lms_targets
from app.store.db import database
from app.store.models import (
    MAX_INDEXED_LENGTH,
    CategoryLink,
    CourseMap,
    EnrolmentRule,
    Group,
    LmsTarget,
    Outbox,
    utcnow,
)
from app.store.outbox import GROUP, PENDING

AUDIT_TYPE = "CourseMap"
PLACEHOLDERS = ("displayName", "externalId", "id")
CASINGS = ("none", "lower", "upper")
MAPPED = "mapped"
_MAPPED_PREFIX = f"{MAPPED}:"
IDNUMBER_PREFIX = "lms-scim:"
# Moodle's limits: course shortname 255, fullname 254, category name 255 characters.
MAX_SHORTNAME, MAX_FULLNAME, MAX_CATEGORY_NAME = 255, 254, 255
_POSITIVE = re.compile(r"[1-9][0-9]{0,17}")


class RenderError(ValueError):
    """The group's values cannot fill the templates (no externalId, an empty level, too long)."""


@dataclass(frozen=True)
class Rendered:
    shortname: str
    fullname: str
    category: tuple[str, ...]  # the path's levels; empty: the LMS's default category

    @property
    def path(self) -> str | None:
        return "/".join(self.category) or None


@dataclass(frozen=True)
class Map:
    target_id: int
    lms: str
    group_id: str
    group_name: str | None  # None: the group is gone (the course and the map stay)
    shortname: str
    fullname: str
    category: str | None
    template_course: int | None
    casing: str
    follow_renames: bool
    lms_id: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "lms": self.lms,
            "groupId": self.group_id,
            "group": self.group_name,
            "shortname": self.shortname,
            "fullname": self.fullname,
            "category": self.category,
            "templateCourse": self.template_course,
            "casing": self.casing,
            "followRenames": self.follow_renames,
            "lmsCourseId": self.lms_id,
        }


# -- templates -------------------------------------------------------------------------------


def check_template(option: str, template: str) -> None:
    """Refuse, at map time, a template the relay could not fill: unknown placeholders,
    unbalanced braces, conversions or format specs."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidValue(
            f"{option} {template!r}: {exc} (write {{{{ or }}}} for a brace)."
        ) from None
    known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise InvalidValue(
                f"{option} {template!r}: unknown placeholder {{{name}}}; the placeholders are "
                f"{known}."
            )
        if spec or conversion:
            raise InvalidValue(
                f"{option} {template!r}: write a placeholder as {{{name}}}, without a format."
            )
    if not template.strip():
        raise InvalidValue(f"{option} must not be empty.")


def _fill(template: str, values: Mapping[str, str | None], what: str) -> str:
    missing = [
        name for _, name, _, _ in string.Formatter().parse(template) if name and not values[name]
    ]
    if missing:
        raise RenderError(f"the group has no {missing[0]} for the course {what} {template!r}")
    return template.format_map(values)


def _cased(text: str, casing: str) -> str:
    return text.lower() if casing == "lower" else text.upper() if casing == "upper" else text


def render(course_map: CourseMap, group: Group) -> Rendered:
    """The course's shortname, fullname and category levels for the group as it is now."""
    values = {"displayName": group.display_name, "externalId": group.external_id, "id": group.id}
    casing = course_map.casing
    shortname = _cased(_fill(course_map.shortname, values, "shortname"), casing).strip()
    fullname = _cased(_fill(course_map.fullname, values, "fullname"), casing).strip()
    levels: tuple[str, ...] = ()
    if course_map.category:
        path = _cased(_fill(course_map.category, values, "category"), casing)
        levels = tuple(level.strip() for level in path.split("/"))
        if not all(levels):
            raise RenderError(f"the category path {path!r} has an empty level")
        if any(len(level) > MAX_CATEGORY_NAME for level in levels):
            raise RenderError(f"a category name in {path!r} is over {MAX_CATEGORY_NAME} characters")
        if len("/".join(levels)) > MAX_INDEXED_LENGTH:
            raise RenderError(f"the category path {path!r} is over {MAX_INDEXED_LENGTH} characters")
    if not shortname or not fullname:
        raise RenderError("the course shortname or fullname comes out empty")
    if len(shortname) > MAX_SHORTNAME or len(fullname) > MAX_FULLNAME:
        raise RenderError(
            f"the course shortname (at most {MAX_SHORTNAME}) or fullname (at most "
            f"{MAX_FULLNAME}) is too long"
        )
    return Rendered(shortname, fullname, levels)


def idnumber_of(group_id: str) -> str:
    """The course's idnumber: stable (the group id), so a retry finds what an earlier, lost
    attempt created, whatever the templates render."""
    return f"{IDNUMBER_PREFIX}{group_id}"


# -- mapped enrolment rules ------------------------------------------------------------------


def mapped_course(group_id: str) -> str:
    """The course id a `mapped` enrolment rule of the group is stored with."""
    return f"{_MAPPED_PREFIX}{group_id}"


def shown(course_id: str) -> str:
    """A rule's course as the operator wrote it: an LMS course id, or `mapped`."""
    return MAPPED if course_id.startswith(_MAPPED_PREFIX) else course_id


def mapped_group(course_id: str) -> str | None:
    """The group whose mapped course `course_id` names, or None for an LMS course id."""
    return course_id[len(_MAPPED_PREFIX) :] if course_id.startswith(_MAPPED_PREFIX) else None


def show_mapped(found: dict[str, set[tuple[str, str]]]) -> None:
    """In users' (course, role) pairs, a `mapped:<group>` course becomes the LMS id of the
    group's course (of its first target that has one), or `mapped` while none is known yet.
    One query, and only when a mapped course is there."""
    groups = {g for pairs in found.values() for c, _ in pairs if (g := mapped_group(c))}
    if not groups:
        return
    known: dict[str, str] = {}
    query = (
        CourseMap.select(CourseMap.group_id, CourseMap.lms_id)
        .where(CourseMap.group_id.in_(sorted(groups)) & CourseMap.lms_id.is_null(False))
        .order_by(CourseMap.target_id.desc())
        .tuples()
    )
    for group_id, lms_id in query:
        known[group_id] = str(lms_id)
    for user_id, pairs in found.items():
        found[user_id] = {
            (known.get(g, MAPPED) if (g := mapped_group(c)) else c, role) for c, role in pairs
        }


def _mapped_rules(group_id: str, target: int) -> int:
    return (
        EnrolmentRule.select()
        .where(
            (EnrolmentRule.group == group_id)
            & (EnrolmentRule.target_id == target)
            & (EnrolmentRule.course_id == mapped_course(group_id))
        )
        .count()
    )


def require_map(group_id: str, target: int) -> None:
    """A `mapped` rule needs the group's course on its target."""
    if get(target, group_id) is None:
        raise InvalidValue(
            "The group has no course on that LMS target; map one first with "
            "`lms-scim courses map GROUP --shortname TEMPLATE`."
        )


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    shortname: str
    fullname: str | None = None  # default: "{displayName}"
    category: str | None = None
    template_course: str | int | None = None  # an LMS course id
    casing: str = "none"
    follow_renames: bool = False


def _checked(fields: Fields) -> dict[str, Any]:
    check_template("--shortname", fields.shortname)
    fullname = fields.fullname if fields.fullname is not None else "{displayName}"
    check_template("--fullname", fullname)
    if fields.category is not None:
        check_template("--category", fields.category)
        if any(not level.strip() for level in fields.category.split("/")):
            raise InvalidValue(
                f"--category {fields.category!r}: each level of the path (between slashes) "
                "needs a name."
            )
    if fields.casing not in CASINGS:
        raise InvalidValue(f"--casing must be one of {', '.join(CASINGS)}.")
    if fields.template_course is not None and not _POSITIVE.fullmatch(str(fields.template_course)):
        raise InvalidValue("--template-course must be an LMS course id (a positive whole number).")
    return {
        "shortname": fields.shortname,
        "fullname": fullname,
        "category": fields.category,
        "template_course": int(fields.template_course) if fields.template_course else None,
        "casing": fields.casing,
        "follow_renames": fields.follow_renames,
    }


def _queue(group_id: str, target: int) -> None:
    """The relay makes sure of the course: a `group` row for that target only."""
    Outbox.insert(
        target_id=target,
        kind=GROUP,
        group_id=group_id,
        created=utcnow(),
        state=PENDING,
        attempts=0,
    ).execute()


def _where(target: int, group_id: str) -> Any:
    return (CourseMap.target_id == target) & (CourseMap.group_id == group_id)


def any_on(target: int) -> bool:
    return CourseMap.select().where(CourseMap.target_id == target).exists()


def get(target: int, group_id: str) -> CourseMap | None:
    return CourseMap.get_or_none(_where(target, group_id))


def map_group(
    group_ref: str, fields: Fields, *, lms: str | None = None, actor: audit.Actor = audit.SYSTEM
) -> Map:
    """Give the group a course on the target `lms` (default: the tenant's only one), or change
    its templates (the course already linked stays linked)."""
    values = _checked(fields)
    with database.atomic():
        target = lms_targets.chosen(lms)
        group = enrolments.find_group(group_ref, lock=True)
        existing = get(target.id, group.id)
        before: dict[str, Any] = {}
        if existing is None:
            CourseMap.insert(target_id=target.id, group_id=group.id, **values).execute()
        else:
            before = {key: getattr(existing, key) for key in values}
            if before == values:
                return _maps(_where(target.id, group.id))[0]
            CourseMap.update(**values).where(_where(target.id, group.id)).execute()
        changes = {"lms": {"after": target.name}, **audit.diff(before, values)}
        audit.record(actor, AUDIT_TYPE, group.id, "map", changes)
        _queue(group.id, target.id)
    return _maps(_where(target.id, group.id))[0]


def unmap(group_ref: str, *, lms: str | None = None, actor: audit.Actor = audit.SYSTEM) -> Map:
    """Forget the group's course on the target (the course stays on the LMS). Refused while a
    `mapped` enrolment rule enrols in it."""
    with database.atomic():
        target = lms_targets.chosen(lms)
        group_id = _group_id(group_ref)
        found = _maps(_where(target.id, group_id))
        if not found:
            raise NotFound(f"Group {group_ref!r} has no course on LMS target {target.name!r}.")
        rules = _mapped_rules(group_id, target.id)
        if rules:
            raise InvalidValue(
                f"Group {group_ref!r} has a `mapped` enrolment rule on {target.name!r}; remove "
                f"it first (lms-scim enrolments remove GROUP mapped --lms {target.name})."
            )
        CourseMap.delete().where(_where(target.id, group_id)).execute()
        before = {k: v for k, v in dataclasses.asdict(found[0]).items() if k in _AUDITED}
        changes = {"lms": {"before": target.name}, **audit.diff(before, {})}
        audit.record(actor, AUDIT_TYPE, group_id, "unmap", changes)
    return found[0]


_AUDITED = ("shortname", "fullname", "category", "template_course", "casing", "lms_id")


def _group_id(ref: str) -> str:
    """The group `ref` names, or, for a group that is gone, the id its map still has."""
    try:
        return str(enrolments.find_group(ref, lock=True).id)
    except NotFound:
        if CourseMap.select().where(CourseMap.group_id == ref).exists():
            return ref
        raise


def _maps(where: Any) -> list[Map]:
    query = (
        CourseMap.select(
            CourseMap.target_id,
            LmsTarget.name,
            CourseMap.group_id,
            Group.display_name,
            CourseMap.shortname,
            CourseMap.fullname,
            CourseMap.category,
            CourseMap.template_course,
            CourseMap.casing,
            CourseMap.follow_renames,
            CourseMap.lms_id,
        )
        .join(LmsTarget, on=LmsTarget.id == CourseMap.target_id)
        .switch(CourseMap)
        .join(Group, peewee.JOIN.LEFT_OUTER, on=Group.id == CourseMap.group_id)
        .where(where)
        .order_by(Group.display_name_key, CourseMap.group_id, LmsTarget.id)
        .tuples()
    )
    return [Map(*row) for row in query]


def maps() -> list[Map]:
    """Every course map of the tenant, by group name."""
    return _maps(peewee.SQL("1 = 1"))


# -- the relay's bookkeeping -----------------------------------------------------------------


def linked(target: int, group_id: str, lms_id: int, rendered: Rendered) -> None:
    """The course was found or made: remember its LMS id and the values it was given."""
    CourseMap.update(
        lms_id=lms_id,
        applied_shortname=rendered.shortname,
        applied_fullname=rendered.fullname,
        applied_category=rendered.path,
        synced_at=utcnow(),
    ).where(_where(target, group_id)).execute()


def category_link(target: int, path: str) -> int | None:
    return (
        CategoryLink.select(CategoryLink.lms_id)
        .where((CategoryLink.target_id == target) & (CategoryLink.path == path))
        .scalar()
    )


def link_category(target: int, path: str, lms_id: int) -> None:
    """An upsert: another relay may have linked the same path meanwhile (to the same one)."""
    CategoryLink.insert(target_id=target, path=path, lms_id=lms_id).on_conflict(
        conflict_target=[CategoryLink.tenant_id, CategoryLink.target_id, CategoryLink.path],
        update={CategoryLink.lms_id: lms_id},
    ).execute()


def forget_categories(target: int, paths: list[str]) -> None:
    """These links point at categories the LMS no longer has."""
    CategoryLink.delete().where(
        (CategoryLink.target_id == target) & CategoryLink.path.in_(paths)
    ).execute()
