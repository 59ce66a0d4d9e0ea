"""What the relay may do to one user's account on one target (issue 17 §2, §3): the target's
actions for the user's type (`app.store.lms_actions`) and its "sync users with no enrolments"
switch, as plain decisions the worker applies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.store import enrolments, lms_actions
from app.store.lms_links import Profile
from app.store.models import LmsTarget


def account_changes(account: Mapping[str, Any], actions: frozenset[str]) -> dict[str, Any]:
    """The part of `account` (a profile with `suspended`) the relay may push to a linked
    account: the profile only with `update`, `suspended` only with `deactivate`."""
    changes = {}
    for key, value in account.items():
        allowed = lms_actions.DEACTIVATE if key == "suspended" else lms_actions.UPDATE
        if allowed in actions:
            changes[key] = value
    return changes


def why_not_created(target_id: int, profile: Profile, actions: frozenset[str]) -> str | None:
    """Why the relay must not create an account for the user on the target (none matched), or
    None when it may."""
    target = LmsTarget.get_by_id(target_id)
    if lms_actions.CREATE not in actions:
        kind = f"userType {profile.user_type}" if profile.user_type else "users without a userType"
        return f"{kind}: create not allowed on target {target.name}"
    if not target.sync_unenrolled and not enrolments.of_user(profile.user_id, target_id):
        return (
            f"no enrolment rule of target {target.name} gives them a course (sync_unenrolled=false)"
        )
    return None
