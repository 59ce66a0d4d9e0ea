"""The relay's part of courses made from groups (issue 17 §4): make sure the LMS has the group's
course, in its category path, and resolve `mapped` enrolment rules to that course.

First sight (no LMS id yet): the course is looked up by its idnumber (`lms-scim:<group id>`,
which our own earlier attempts set), then by shortname (a course made by hand is adopted); only
when neither exists is it created — copied from the template course with
`core_course_duplicate_course` (which cannot set an idnumber, so it is set right after), else
with `core_course_create_courses`. A response lost after the LMS made the course is therefore
harmless: the retry finds the course by idnumber (or, for a copy whose idnumber was not set yet,
by shortname) instead of making a second one. From then on the course is known by its LMS id
and the LMS is not asked again, unless the group is renamed and the map follows renames.

The category path is made level by level: each level is looked up by its idnumber (made from
the path up to it), then by name under its parent, and created only when neither exists. Two
relays making the same path at once both miss it, both create, and the LMS refuses the second
with `categoryidnumbertaken`: that one reads the winner's category by idnumber and goes on, so a
path is never made twice. Found levels are remembered per target (`CategoryLink`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, TypeVar

from app.relay.moodle import LmsError, MoodleClient
from app.store import course_maps
from app.store.models import CourseMap, Group

V = TypeVar("V")

# Where a course goes when its map names no category: Moodle's first category, made at install.
DEFAULT_CATEGORY = 1
# The web-service functions course maps need beyond the relay's own (`moodle.REQUIRED_FUNCTIONS`).
COURSE_FUNCTIONS = (
    "core_course_get_courses_by_field",
    "core_course_create_courses",
    "core_course_duplicate_course",
    "core_course_update_courses",
    "core_course_get_categories",
    "core_course_create_categories",
)
_MAX_CATEGORY_IDNUMBER = 100  # Moodle's course_categories.idnumber


def functions_for(target: int) -> tuple[str, ...]:
    """The course functions a target's token must allow: only once a group has a course there
    (`lms-scim relay test`)."""
    return COURSE_FUNCTIONS if course_maps.any_on(target) else ()


def category_idnumber(path: str) -> str:
    """A category level's idnumber: the path up to it, hashed when too long for Moodle."""
    readable = f"{course_maps.IDNUMBER_PREFIX}{path}"
    if len(readable) <= _MAX_CATEGORY_IDNUMBER:
        return readable
    return f"{course_maps.IDNUMBER_PREFIX}sha256:{hashlib.sha256(path.encode()).hexdigest()}"


class Courses:
    """Course and category calls for one relay (its LMS client and target)."""

    def __init__(self, client: MoodleClient, target: int) -> None:
        self.client = client
        self.target = target

    # -- the group's course ------------------------------------------------------------------

    def sync(self, group_id: str) -> int | None:
        """Make sure the group's course exists (and follows a rename, when asked to); its LMS
        id, or None when the group has no course on this target."""
        course_map = course_maps.get(self.target, group_id)
        if course_map is None:
            return None
        group = Group.get_or_none(Group.id == group_id)
        if group is None:  # gone: its course stays, as it was
            return int(course_map.lms_id) if course_map.lms_id is not None else None
        try:
            rendered = course_maps.render(course_map, group)
        except course_maps.RenderError as exc:
            raise LmsError(f"course for group {group_id}: {exc}", transient=False) from None
        if course_map.lms_id is None:
            lms_id = self._first_sight(course_map, rendered)
            course_maps.linked(self.target, group_id, lms_id, rendered)
            return lms_id
        lms_id = int(course_map.lms_id)
        if course_map.follow_renames and _applied(course_map) != rendered:
            self._rename(lms_id, rendered)
            course_maps.linked(self.target, group_id, lms_id, rendered)
        return lms_id

    def resolve(self, wanted: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """(course, role) pairs with each `mapped:<group>` course replaced by that group's LMS
        course id (made now if need be); dropped when the group has no course here."""
        resolved = set()
        for course_id, role in wanted:
            group_id = course_maps.mapped_group(course_id)
            if group_id is None:
                resolved.add((course_id, role))
                continue
            course_map = course_maps.get(self.target, group_id)
            if course_map is None:
                continue
            lms_id = course_map.lms_id if course_map.lms_id is not None else self.sync(group_id)
            if lms_id is not None:
                resolved.add((str(lms_id), role))
        return resolved

    def rekey(self, per_course: dict[str, V]) -> dict[str, V]:
        """`per_course` (a rule's dates, say) with each `mapped:<group>` key replaced by that
        group's LMS course id, known once `resolve` has run; a course some rule names by its
        id keeps that rule's value."""
        rekeyed: dict[str, V] = {}
        for course_id, value in per_course.items():
            group_id = course_maps.mapped_group(course_id)
            if group_id is None:
                rekeyed[course_id] = value
                continue
            course_map = course_maps.get(self.target, group_id)
            if course_map is not None and course_map.lms_id is not None:
                rekeyed.setdefault(str(course_map.lms_id), value)
        return rekeyed

    def _first_sight(self, course_map: CourseMap, rendered: course_maps.Rendered) -> int:
        idnumber = course_maps.idnumber_of(course_map.group_id)
        found = self._find(idnumber, rendered.shortname)
        if found is not None:
            return found
        category = self.category(rendered.category)
        try:
            if course_map.template_course is not None:
                copied = self.client.call(
                    "core_course_duplicate_course",
                    courseid=int(course_map.template_course),
                    fullname=rendered.fullname,
                    shortname=rendered.shortname,
                    categoryid=category,
                )
                lms_id = int(copied["id"])
                self._update(lms_id, idnumber=idnumber)
                return lms_id
            created = self.client.call(
                "core_course_create_courses",
                courses=[
                    {
                        "fullname": rendered.fullname,
                        "shortname": rendered.shortname,
                        "categoryid": category,
                        "idnumber": idnumber,
                    }
                ],
            )
            return int(created[0]["id"])
        except LmsError as exc:
            # Made meanwhile (another relay, or by hand): read it back.
            if exc.errorcode in ("shortnametaken", "courseidnumbertaken"):
                found = self._find(idnumber, rendered.shortname)
                if found is not None:
                    return found
            if exc.errorcode == "errorcatcontextnotvalid" and rendered.category:
                # A linked category was deleted on the LMS: look the path up again next time.
                course_maps.forget_categories(self.target, _prefixes(rendered.category))
                raise LmsError(str(exc), errorcode=exc.errorcode, transient=True) from None
            raise

    def _find(self, idnumber: str, shortname: str) -> int | None:
        """The course with our idnumber, else the one with the shortname (adopted: given our
        idnumber when it has none, so the next first sight finds it by idnumber; one made by
        hand keeps its own; another group's is refused)."""
        found = self._courses("idnumber", idnumber)
        if found:
            return int(found[0]["id"])
        found = self._courses("shortname", shortname)
        if not found:
            return None
        course = found[0]
        theirs = str(course.get("idnumber") or "")
        if theirs.startswith(course_maps.IDNUMBER_PREFIX):  # another group's course: not ours
            raise LmsError(
                f"the shortname {shortname!r} is taken by the course of another group "
                f"(idnumber {theirs}): make the shortname template unique",
                errorcode="shortnametaken",
                transient=False,
            )
        if not theirs:
            self._update(int(course["id"]), idnumber=idnumber)
        return int(course["id"])

    def _courses(self, field: str, value: str) -> list[dict[str, Any]]:
        answer = self.client.call("core_course_get_courses_by_field", field=field, value=value)
        return list((answer or {}).get("courses", ()))

    def _rename(self, lms_id: int, rendered: course_maps.Rendered) -> None:
        self._update(
            lms_id,
            shortname=rendered.shortname,
            fullname=rendered.fullname,
            categoryid=self.category(rendered.category),
        )

    def _update(self, lms_id: int, **changes: Any) -> None:
        """`core_course_update_courses` reports a course it could not change as a warning."""
        answer = self.client.call("core_course_update_courses", courses=[{"id": lms_id, **changes}])
        for warning in (answer or {}).get("warnings", ()):
            raise LmsError(
                f"core_course_update_courses: {warning.get('warningcode')}: "
                f"{warning.get('message')}",
                errorcode=warning.get("warningcode"),
                transient=False,
            )

    # -- categories --------------------------------------------------------------------------

    def category(self, levels: tuple[str, ...]) -> int:
        """The LMS id of the category path's last level, made level by level as needed."""
        if not levels:
            return DEFAULT_CATEGORY
        known = course_maps.category_link(self.target, "/".join(levels))
        if known is not None:
            return int(known)
        parent = 0
        for depth in range(1, len(levels) + 1):
            path = "/".join(levels[:depth])
            linked = course_maps.category_link(self.target, path)
            if linked is None:
                try:
                    linked = self._category_level(path, levels[depth - 1], parent)
                except LmsError as exc:
                    if exc.errorcode != "unknowcategory":
                        raise
                    # A linked level was deleted on the LMS: look the path up again next time.
                    course_maps.forget_categories(self.target, _prefixes(levels))
                    raise LmsError(str(exc), errorcode=exc.errorcode, transient=True) from None
                course_maps.link_category(self.target, path, linked)
            parent = int(linked)
        return parent

    def _category_level(self, path: str, name: str, parent: int) -> int:
        idnumber = category_idnumber(path)
        found = self._category_by(idnumber=idnumber)
        if found is None:
            found = self._category_by(name=name, parent=str(parent))
        if found is not None:
            return found
        category = {"name": name, "parent": parent, "idnumber": idnumber}
        try:
            created = self.client.call("core_course_create_categories", categories=[category])
        except LmsError as exc:
            if exc.errorcode != "categoryidnumbertaken":
                raise
            found = self._category_by(idnumber=idnumber)  # another relay made it just now
            if found is None:
                raise
            return found
        return int(created[0]["id"])

    def _category_by(self, **criteria: str) -> int | None:
        """The category matching every criterion (the lowest id if several: the oldest)."""
        answer = self.client.call(
            "core_course_get_categories",
            criteria=[{"key": key, "value": value} for key, value in criteria.items()],
            addsubcategories=0,
        )
        matching = [
            int(c["id"])
            for c in answer or ()
            if all(str(c.get(key)) == value for key, value in criteria.items())
        ]
        return min(matching) if matching else None


def _applied(course_map: CourseMap) -> course_maps.Rendered:
    path = course_map.applied_category
    return course_maps.Rendered(
        course_map.applied_shortname or "",
        course_map.applied_fullname or "",
        tuple(path.split("/")) if path else (),
    )


def _prefixes(levels: tuple[str, ...]) -> list[str]:
    return ["/".join(levels[:depth]) for depth in range(1, len(levels) + 1)]
