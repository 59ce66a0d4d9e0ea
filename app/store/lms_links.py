"""What the LMS relay reads and remembers: the current state of a user, group or membership, and
the links to the LMS's own ids (accounts, cohorts) and the enrolments it made there.

Links outlive the rows they link (no foreign keys): when a user or group is deleted here, the
relay still needs the LMS id to delete the account or cohort there, and then forgets the link.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from peewee import fn

from app.store.db import database
from app.store.models import (
    Group,
    LmsCohortLink,
    LmsEnrolment,
    LmsUserLink,
    Membership,
    User,
    UserValue,
    utcnow,
)


@dataclass(frozen=True)
class Profile:
    """The user as the LMS sees it."""

    user_id: str
    user_name: str
    email: str | None
    given_name: str | None
    family_name: str | None
    display_name: str | None
    active: bool
    user_type: str | None = None  # which relay actions apply (`app.store.lms_actions`)


def profile(user_id: str) -> Profile | None:
    """The user's LMS-relevant attributes (primary e-mail first), or None if deleted."""
    user = (
        User.select(
            User.id,
            User.user_name,
            User.given_name,
            User.family_name,
            User.display_name,
            User.active,
            User.user_type,
        )
        .where(User.id == user_id)
        .first()
    )
    if user is None:
        return None
    email = (
        UserValue.select(UserValue.value)
        .where((UserValue.user == user_id) & (UserValue.attr == "emails"))
        .order_by(fn.COALESCE(UserValue.primary, False).desc(), UserValue.position)
        .scalar()
    )
    return Profile(
        user.id,
        user.user_name,
        email,
        user.given_name,
        user.family_name,
        user.display_name,
        user.active,
        user.user_type,
    )


def group_name(group_id: str) -> str | None:
    """The group's displayName, or None if deleted."""
    return Group.select(Group.display_name).where(Group.id == group_id).scalar()


def groups_of(user_id: str) -> list[str]:
    """The ids of the groups the user is a member of."""
    query = Membership.select(Membership.group).where(Membership.user == user_id)
    return [group_id for (group_id,) in query.order_by(Membership.group).tuples()]


def is_member(user_id: str, group_id: str) -> bool:
    return (
        Membership.select()
        .where((Membership.user == user_id) & (Membership.group == group_id))
        .exists()
    )


# -- accounts (each link is of one LMS target: `target`) -----------------------------------------


def user_link(target: int, user_id: str) -> LmsUserLink | None:
    return LmsUserLink.get_or_none(
        (LmsUserLink.target_id == target) & (LmsUserLink.user_id == user_id)
    )


def link_user(target: int, user_id: str, lms_id: int, *, matched: bool) -> None:
    """Remember the LMS account (an upsert: a second relay may have linked it meanwhile)."""
    LmsUserLink.insert(
        target_id=target, user_id=user_id, lms_id=lms_id, matched=matched, synced_at=utcnow()
    ).on_conflict(
        conflict_target=[LmsUserLink.tenant_id, LmsUserLink.target_id, LmsUserLink.user_id],
        update={LmsUserLink.lms_id: lms_id, LmsUserLink.synced_at: utcnow()},
    ).execute()


def user_synced(target: int, user_id: str) -> None:
    LmsUserLink.update(synced_at=utcnow()).where(
        (LmsUserLink.target_id == target) & (LmsUserLink.user_id == user_id)
    ).execute()


def forget_user(target: int, user_id: str) -> None:
    """The LMS account is gone: forget it and the enrolments it had."""
    with database.atomic():
        LmsEnrolment.delete().where(
            (LmsEnrolment.target_id == target) & (LmsEnrolment.user_id == user_id)
        ).execute()
        LmsUserLink.delete().where(
            (LmsUserLink.target_id == target) & (LmsUserLink.user_id == user_id)
        ).execute()


# -- cohorts ---------------------------------------------------------------------------------


def cohort_link(target: int, group_id: str) -> LmsCohortLink | None:
    return LmsCohortLink.get_or_none(
        (LmsCohortLink.target_id == target) & (LmsCohortLink.group_id == group_id)
    )


def link_cohort(target: int, group_id: str, lms_id: int) -> None:
    LmsCohortLink.insert(
        target_id=target, group_id=group_id, lms_id=lms_id, synced_at=utcnow()
    ).on_conflict(
        conflict_target=[LmsCohortLink.tenant_id, LmsCohortLink.target_id, LmsCohortLink.group_id],
        update={LmsCohortLink.lms_id: lms_id, LmsCohortLink.synced_at: utcnow()},
    ).execute()


def cohort_synced(target: int, group_id: str) -> None:
    LmsCohortLink.update(synced_at=utcnow()).where(
        (LmsCohortLink.target_id == target) & (LmsCohortLink.group_id == group_id)
    ).execute()


def forget_cohort(target: int, group_id: str) -> None:
    LmsCohortLink.delete().where(
        (LmsCohortLink.target_id == target) & (LmsCohortLink.group_id == group_id)
    ).execute()


# -- enrolments ------------------------------------------------------------------------------


def _enrolment(target: int, user_id: str) -> Any:
    return (LmsEnrolment.target_id == target) & (LmsEnrolment.user_id == user_id)


def delivered_enrolments(target: int, user_id: str) -> set[tuple[str, str]]:
    """(course id, role) pairs the relay enrolled the user in on the target."""
    query = LmsEnrolment.select(LmsEnrolment.course_id, LmsEnrolment.role).where(
        _enrolment(target, user_id)
    )
    return set(query.tuples())


def enrolled(
    target: int,
    user_id: str,
    course_id: str,
    role: str,
    dates: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
) -> None:
    """The LMS confirmed the enrolment (with `dates`, which are the course's: every role of
    the user there shares Moodle's one user enrolment)."""
    with database.atomic():
        LmsEnrolment.insert(
            target_id=target, user_id=user_id, course_id=course_id, role=role
        ).on_conflict_ignore().execute()
        dated(target, user_id, course_id, dates)


def dated(
    target: int, user_id: str, course_id: str, dates: tuple[dt.datetime | None, dt.datetime | None]
) -> None:
    LmsEnrolment.update(time_start=dates[0], time_end=dates[1]).where(
        _enrolment(target, user_id) & (LmsEnrolment.course_id == course_id)
    ).execute()


def delivered_dates(
    target: int, user_id: str
) -> dict[str, tuple[dt.datetime | None, dt.datetime | None]]:
    """The dates each course enrolment was last sent with."""
    query = LmsEnrolment.select(
        LmsEnrolment.course_id, LmsEnrolment.time_start, LmsEnrolment.time_end
    ).where(_enrolment(target, user_id))
    return {course: (start, end) for course, start, end in query.tuples()}


def unenrolled(target: int, user_id: str, course_id: str) -> None:
    LmsEnrolment.delete().where(
        _enrolment(target, user_id) & (LmsEnrolment.course_id == course_id)
    ).execute()


def role_removed(target: int, user_id: str, course_id: str, role: str) -> None:
    LmsEnrolment.delete().where(
        _enrolment(target, user_id)
        & (LmsEnrolment.course_id == course_id)
        & (LmsEnrolment.role == role)
    ).execute()
