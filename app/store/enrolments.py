"""Course enrolment rules on groups, and the enrolments users get from them.

A rule says: members of this group are enrolled in this LMS course with this role. A user's
enrolments are computed, never copied per member: the rules of the groups they belong to, plus
the enrolments they kept (`KeptEnrolment`) when they left a group whose rule keeps previous
enrolments. So adding a member to a 100,000-member group with rules writes one membership row,
not one row per course. Deactivation changes nothing here: the user keeps the enrolments and the
relay suspends the LMS account.

Removing a rule unenrols the group's members, unless the rule keeps previous enrolments — then
they keep them, as they would on leaving.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import peewee
from peewee import fn

from app.errors import InvalidValue, NotFound
from app.store import (
    audit,
    course_maps,
    enrolment_dates,
    generation,
    lms_targets,
    outbox,
    prepared,
)
from app.store.db import database, locked
from app.store.models import EnrolmentRule, Group, KeptEnrolment, LmsTarget, Membership, User
from scim_schemas import identity_key

ROLES = ("student", "teacher")
_COURSE_ID = re.compile(r"[1-9][0-9]{0,17}")
AUDIT_TYPE = "EnrolmentRule"


class AmbiguousGroup(LookupError):
    """More than one group has the displayName given."""


@dataclass(frozen=True)
class Rule:
    group_id: str
    group_name: str
    course_id: str
    role: str
    keep_on_leave: bool
    created: dt.datetime
    members: int
    lms: str  # the name of the LMS target the rule enrols in
    start: dt.datetime | None = None  # Moodle's timestart (naive UTC; None: none)
    end: dt.datetime | None = None  # Moodle's timeend, unless the role is in `no_end_for`
    no_end_for: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "lms": self.lms,
            "groupId": self.group_id,
            "group": self.group_name,
            "courseId": self.course_id,
            "role": self.role,
            "keepOnLeave": self.keep_on_leave,
            "created": self.created.isoformat() + "Z",
            "members": self.members,
            "start": enrolment_dates.iso(self.start),
            "end": enrolment_dates.iso(self.end),
            "noEndFor": list(self.no_end_for),
        }


def find_group(ref: str, *, lock: bool = False) -> Group:
    """The group whose id or (case-insensitive) displayName is `ref` (its row locked, for
    writers, so rules and member removals never interleave)."""
    select = (lambda q: locked(q)) if lock else (lambda q: q)
    found = select(Group.select().where(Group.id == ref)).first()
    if found is not None:
        return found
    rows = list(select(Group.select().where(Group.display_name_key == identity_key(ref)).limit(2)))
    if len(rows) > 1:
        raise AmbiguousGroup(f"More than one group is called {ref!r}; use the id.")
    if not rows:
        raise NotFound(f"No group with id or displayName {ref!r}.")
    return rows[0]


def _check(course_id: str, role: str, roles: Sequence[str] = ROLES) -> None:
    if not _COURSE_ID.fullmatch(course_id) and course_id != course_maps.MAPPED:
        raise InvalidValue(
            f"{course_id!r} is not an LMS course id (a positive whole number) or `mapped`."
        )
    check_role(role, roles)


def check_role(role: str, roles: Sequence[str]) -> None:
    """A role the target has an LMS role id for (its `--roles` map): refused when the rule is
    made, not when the relay delivers it."""
    if role not in roles:
        raise InvalidValue(
            f"Unknown role {role!r}: the LMS target's roles are {', '.join(roles)} "
            "(add one with `lms-scim lms set NAME roles=…`)."
        )


@dataclass(frozen=True)
class Dates:
    """A rule's dates as `enrolments add` gives them (naive UTC; None: none)."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    no_end_for: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "no_end_for", tuple(sorted(set(self.no_end_for))))

    def check(self, roles: Sequence[str]) -> None:
        enrolment_dates.check_order(self.start, self.end)
        for role in self.no_end_for:
            check_role(role, roles)

    def columns(self) -> dict[str, Any]:
        return {
            "time_start": self.start,
            "time_end": self.end,
            "no_end_roles": enrolment_dates.roles_text(self.no_end_for),
        }

    @classmethod
    def of(cls, rule: Any) -> Dates:
        roles = tuple(enrolment_dates.roles_of(rule.no_end_roles))
        return cls(rule.time_start, rule.time_end, roles)

    def trail(self) -> dict[str, Any]:
        return {
            "start": enrolment_dates.iso(self.start),
            "end": enrolment_dates.iso(self.end),
            "noEndFor": list(self.no_end_for) or None,
        }


def _target(name: str | None) -> int:
    """The LMS target a rule names: `name`, or the tenant's only one."""
    return int(lms_targets.chosen(name).id)


def _rule_of(group_id: str, target: int, course_id: str) -> Any:
    return (
        (EnrolmentRule.group == group_id)
        & (EnrolmentRule.target_id == target)
        & (EnrolmentRule.course_id == course_id)
    )


def add_rule(
    group_ref: str,
    course_id: str,
    role: str,
    *,
    keep_on_leave: bool,
    actor: audit.Actor,
    lms: str | None = None,
    dates: Dates = Dates(),
    roles: Sequence[str] = ROLES,
) -> Rule:
    """Enrol the group's members in the course on the LMS target `lms` (default: the tenant's
    only one), or change the role, keep flag or dates of that rule (the dates of enrolments it
    already made follow). `roles`: the role names the target has LMS role ids for."""
    _check(course_id, role, roles)
    dates.check(roles)
    with database.atomic():
        target = _target(lms)
        row = find_group(group_ref, lock=True)
        if course_id == course_maps.MAPPED:  # the group's own course (`courses map`)
            course_maps.require_map(row.id, target)
            course_id = course_maps.mapped_course(row.id)
        existing = EnrolmentRule.get_or_none(_rule_of(row.id, target, course_id))
        if existing is None:
            EnrolmentRule.insert(
                group=row.id,
                target_id=target,
                course_id=course_id,
                role=role,
                keep_on_leave=keep_on_leave,
                **dates.columns(),
            ).execute()
            generation.changed_here()  # this process's cache learns the tenant has rules
            before: dict[str, Any] = {}
        else:
            before = {"role": existing.role, "keepOnLeave": existing.keep_on_leave}
            before |= Dates.of(existing).trail()
            if (existing.role, existing.keep_on_leave, Dates.of(existing)) == (
                role,
                keep_on_leave,
                dates,
            ):
                return _rules(EnrolmentRule.id == existing.id)[0]
            if existing.role != role and existing.keep_on_leave:
                _keep(row.id, course_id, _members(row.id), target)  # they keep the old role
            EnrolmentRule.update(role=role, keep_on_leave=keep_on_leave, **dates.columns()).where(
                EnrolmentRule.id == existing.id
            ).execute()
        after = {"role": role, "keepOnLeave": keep_on_leave, **dates.trail()}
        changes = {"courseId": {"after": course_id}, **audit.diff(before, after)}
        if lms is not None:
            changes["lms"] = {"after": lms}
        audit.record(actor, AUDIT_TYPE, row.id, "add", changes)
        _flag_keeping(row.id)
        outbox.group_members(row.id, target)
    return _rules(_rule_of(row.id, target, course_id))[0]


def remove_rule(
    group_ref: str, course_id: str, *, actor: audit.Actor, lms: str | None = None
) -> Rule:
    """Drop the rule: members are unenrolled unless it keeps previous enrolments."""
    with database.atomic():
        target = _target(lms)
        row = find_group(group_ref, lock=True)
        course_id = _course_of(row.id, course_id)
        found = _rules(_rule_of(row.id, target, course_id))
        if not found:
            shown = course_maps.shown(course_id)
            raise NotFound(f"Group {row.display_name!r} has no rule for course {shown}.")
        rule = found[0]
        if rule.keep_on_leave:
            _keep(row.id, course_id, _members(row.id), target)
        EnrolmentRule.delete().where(_rule_of(row.id, target, course_id)).execute()
        changes = {"courseId": {"before": course_id}, "role": {"before": rule.role}}
        if rule.lms != lms_targets.DEFAULT:
            changes["lms"] = {"before": rule.lms}
        audit.record(actor, AUDIT_TYPE, row.id, "remove", changes)
        _flag_keeping(row.id)
        outbox.group_members(row.id, target)
    return rule


def set_dates(
    group_ref: str,
    course_id: str,
    changes: dict[str, Any],
    *,
    actor: audit.Actor,
    lms: str | None = None,
    roles: Sequence[str] = ROLES,
) -> Rule:
    """Change some of a rule's dates (`changes`: `start`, `end`, `no_end_for`); the enrolments
    it already made get the new ones (its members are queued for the target)."""
    with database.atomic():
        target = _target(lms)
        row = find_group(group_ref, lock=True)
        course_id = _course_of(row.id, course_id)
        existing = EnrolmentRule.get_or_none(_rule_of(row.id, target, course_id))
        if existing is None:
            shown = course_maps.shown(course_id)
            raise NotFound(f"Group {row.display_name!r} has no rule for course {shown}.")
        before = Dates.of(existing)
        after = replace(before, **changes)
        after.check(roles)
        if after != before:
            EnrolmentRule.update(**after.columns()).where(EnrolmentRule.id == existing.id).execute()
            trail = audit.diff(before.trail(), after.trail())
            audit.record(actor, AUDIT_TYPE, row.id, "dates", {"courseId": course_id, **trail})
            outbox.group_members(row.id, target)
    return _rules(_rule_of(row.id, target, course_id))[0]


def _course_of(group_id: str, course_id: str) -> str:
    """The stored course of a rule: `mapped` is the group's own course (`courses map`)."""
    return course_maps.mapped_course(group_id) if course_id == course_maps.MAPPED else course_id


def _flag_keeping(group_id: str) -> None:
    """`lms_group.keeps_enrolments`: whether any rule of the group keeps previous enrolments."""
    keeping = EnrolmentRule.select().where(
        (EnrolmentRule.group == group_id) & EnrolmentRule.keep_on_leave
    )
    Group.update(keeps_enrolments=fn.EXISTS(keeping)).where(Group.id == group_id).execute()


def _rules(where: Any) -> list[Rule]:
    members = Membership.select(fn.COUNT(Membership.user)).where(
        Membership.group == EnrolmentRule.group
    )
    query = (
        EnrolmentRule.select(
            EnrolmentRule.group,
            Group.display_name,
            EnrolmentRule.course_id,
            EnrolmentRule.role,
            EnrolmentRule.keep_on_leave,
            EnrolmentRule.created,
            members.alias("members"),
            LmsTarget.name,
            EnrolmentRule.time_start,
            EnrolmentRule.time_end,
            EnrolmentRule.no_end_roles,
        )
        .join(Group)
        .switch(EnrolmentRule)
        .join(LmsTarget, on=LmsTarget.id == EnrolmentRule.target_id)
        .where(where)
        .order_by(Group.display_name_key, Group.id, LmsTarget.id, EnrolmentRule.course_id)
        .tuples()
    )
    return [
        Rule(
            *row[:2],
            course_maps.shown(row[2]),
            *row[3:-1],
            tuple(enrolment_dates.roles_of(row[-1])),
        )
        for row in query
    ]


def rules(group_ref: str | None = None) -> list[Rule]:
    """Every rule, or one group's, with each group's member count."""
    if group_ref is None:
        return _rules(peewee.SQL("1 = 1"))
    return _rules(EnrolmentRule.group == find_group(group_ref).id)


def rules_of_groups(group_ids: list[str]) -> list[Rule]:
    """The rules of these groups (one query), for pages that list groups."""
    return _rules(EnrolmentRule.group.in_(group_ids)) if group_ids else []


# -- kept enrolments (inside the caller's transaction) ---------------------------------------


def _keep(group_id: str, course_id: str | None, users: Any, target: int | None = None) -> None:
    """Record, as kept, the enrolments the group's keep rules (of every target, or of one rule's
    `course_id` on `target`) give `users` (a User condition): one INSERT … SELECT, which inserts
    nothing when the group has no such rule."""
    where = (EnrolmentRule.group == group_id) & EnrolmentRule.keep_on_leave & users
    if course_id is not None:
        where &= (EnrolmentRule.course_id == course_id) & (EnrolmentRule.target_id == target)
    query = (
        EnrolmentRule.select(
            User.id,
            EnrolmentRule.target_id,
            EnrolmentRule.course_id,
            EnrolmentRule.role,
            User.tenant_id,
        )
        .from_(EnrolmentRule, User)
        .where(where & (User.tenant_id == EnrolmentRule.tenant_id))
    )
    # tenant_id named: INSERT … SELECT gets no Python defaults, and the database's (1) would
    # file the row under the default tenant (m0011's key refuses that).
    fields = [
        KeptEnrolment.user,
        KeptEnrolment.target_id,
        KeptEnrolment.course_id,
        KeptEnrolment.role,
        KeptEnrolment.tenant_id,
    ]
    KeptEnrolment.insert_from(query, fields).on_conflict_ignore().execute()


def _members(group_id: str) -> Any:
    return User.id.in_(Membership.select(Membership.user).where(Membership.group == group_id))


def keep_for_leavers(group_id: str, user_ids: Sequence[str]) -> None:
    """These users just left the group: keep what its keep rules gave them."""
    for start in range(0, len(user_ids), outbox.CHUNK):
        _keep(group_id, None, User.id.in_(list(user_ids[start : start + outbox.CHUNK])))


def keep_for_group(group_id: str) -> None:
    """Before the group is deleted: every member keeps what its keep rules gave them."""
    _keep(group_id, None, _members(group_id))


# -- reading ---------------------------------------------------------------------------------


def _enrolments_query(ids: list[str]) -> peewee.SelectBase:
    via_groups = (
        Membership.select(Membership.user, EnrolmentRule.course_id, EnrolmentRule.role)
        .join(EnrolmentRule, on=EnrolmentRule.group == Membership.group)
        .where(Membership.user.in_(ids))
    )
    kept = KeptEnrolment.select(
        KeptEnrolment.user, KeptEnrolment.course_id, KeptEnrolment.role
    ).where(KeptEnrolment.user.in_(ids))
    return via_groups | kept


def of_users(user_ids: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """`[{courseId, role}]` per user, sorted, for a page of users: one query."""
    ids = list(user_ids)
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    if ids and outbox.enrolments_in_use():  # no rule, nothing kept: no query
        query = prepared.tuples("enrolments_of_users", _enrolments_query, ids)
        for user_id, course_id, role in query:
            found[user_id].add((course_id, role))
    return listed(found)


def listed(found: dict[str, set[tuple[str, str]]]) -> dict[str, list[dict[str, str]]]:
    """`[{courseId, role}]` per user, sorted, from each user's (course id, role) pairs as stored
    (`mapped:<group>` becomes the group's LMS course id: one more query, only when one is there).
    """
    course_maps.show_mapped(found)
    return {
        uid: [{"courseId": c, "role": r} for c, r in sorted(pairs, key=_course_order)]
        for uid, pairs in found.items()
    }


def _course_order(pair: tuple[str, str]) -> tuple[int, str, str]:
    return (len(pair[0]), pair[0], pair[1])


def of_user(user_id: str, target: int) -> set[tuple[str, str]]:
    """(course id, role) pairs the user should have on the LMS target."""
    via_groups = (
        Membership.select(EnrolmentRule.course_id, EnrolmentRule.role)
        .join(EnrolmentRule, on=EnrolmentRule.group == Membership.group)
        .where((Membership.user == user_id) & (EnrolmentRule.target_id == target))
    )
    kept = KeptEnrolment.select(KeptEnrolment.course_id, KeptEnrolment.role).where(
        (KeptEnrolment.user == user_id) & (KeptEnrolment.target_id == target)
    )
    return set((via_groups | kept).tuples())
