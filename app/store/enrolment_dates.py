"""Enrolment dates (issue 17 §3): a rule's start and end, the roles whose enrolments get no end,
and the dates each of a user's courses should have on an LMS target.

Moodle keeps one `timestart`/`timeend` per user and course (the user enrolment), whatever
roles the user has there, and `enrol_manual_enrol_users` sets them on every call (a missing
one is 0: none). So the dates are worked out per course: of the rules that give the user the
course, the earliest start and the latest end, where a rule without a start (or without an end,
or whose role is in its `--no-end-for`) wins. Courses the user has only from kept enrolments
keep the dates they were last sent with.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from app.datetimes import parse, stored
from app.errors import InvalidValue
from app.store.models import EnrolmentRule, Membership

Dates = tuple[dt.datetime | None, dt.datetime | None]  # (start, end), naive UTC
NO_DATES: Dates = (None, None)
EXAMPLE = "e.g. 2027-01-15 or 2027-01-15T08:00:00Z"


def parse_date(text: str, option: str) -> dt.datetime:
    """An ISO 8601 date (00:00 UTC that day) or date-time (UTC when no offset is given; another
    offset is converted), as the naive UTC value the database keeps, to the second (Moodle's
    timestamps have no fraction)."""
    moment = parse(text.strip()) if text.strip() else None
    if moment is None:
        raise InvalidValue(f"{option} must be an ISO 8601 date or date-time ({EXAMPLE}): {text!r}.")
    return stored(moment).replace(microsecond=0)


def check_order(start: dt.datetime | None, end: dt.datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise InvalidValue(f"The end ({iso(end)}) must be after the start ({iso(start)}).")


def iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat() + "Z"


def roles_text(roles: Iterable[str]) -> str | None:
    """The `no_end_roles` column: a sorted comma list, None for none."""
    listed = sorted(set(roles))
    return ",".join(listed) if listed else None


def roles_of(text: str | None) -> list[str]:
    return [r for r in (text or "").split(",") if r]


def epoch(moment: dt.datetime | None) -> int | None:
    """Moodle's timestamp of a naive UTC value."""
    return None if moment is None else int(moment.replace(tzinfo=dt.UTC).timestamp())


def of_user(user_id: str, target: int) -> dict[str, Dates]:
    """(start, end) per course the rules of the user's groups give on the target."""
    query = (
        EnrolmentRule.select(
            EnrolmentRule.course_id,
            EnrolmentRule.role,
            EnrolmentRule.time_start,
            EnrolmentRule.time_end,
            EnrolmentRule.no_end_roles,
        )
        .join(Membership, on=EnrolmentRule.group == Membership.group)
        .where((Membership.user == user_id) & (EnrolmentRule.target_id == target))
        .tuples()
    )
    starts: dict[str, list[dt.datetime | None]] = defaultdict(list)
    ends: dict[str, list[dt.datetime | None]] = defaultdict(list)
    for course_id, role, start, end, no_end in query:
        starts[course_id].append(start)
        ends[course_id].append(None if role in roles_of(no_end) else end)
    return {course: (_earliest(starts[course]), _latest(ends[course])) for course in starts}


def _earliest(moments: list[dt.datetime | None]) -> dt.datetime | None:
    return None if None in moments else min(m for m in moments if m is not None)


def _latest(moments: list[dt.datetime | None]) -> dt.datetime | None:
    return None if None in moments else max(m for m in moments if m is not None)
