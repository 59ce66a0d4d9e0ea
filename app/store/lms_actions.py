"""Which relay actions run on an LMS target for which userType, and the users it held back
(issue 17 §2, m0018).

An action is one of `create` (make an account when none matches), `update` (push the profile
to a linked account) and `deactivate` (suspend the account when the user is deactivated here,
and unsuspend it when they come back). A type with no row runs all three, as the relay always
did; users without a userType too. A user whose type lacks `create` is still matched to an
existing account by the target's match field; when none matches, the relay *holds* them: it
records why (`LmsUserHold`, shown by `users status`) and, once a later change links an account,
their cohorts and enrolments catch up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidValue
from app.store import audit, lms_targets, outbox
from app.store.db import database
from app.store.models import LmsTarget, LmsTargetAction, LmsUserHold, LmsUserLink, User, utcnow
from app.store.names import require_name
from scim_schemas import identity_key

CREATE, UPDATE, DEACTIVATE = "create", "update", "deactivate"
ACTIONS = (CREATE, UPDATE, DEACTIVATE)
ALL = frozenset(ACTIONS)
NONE = "none"
MAX_TYPE = 64


def parse(text: str) -> frozenset[str]:
    """`none`, or a comma list of create, update, deactivate (any order, case ignored)."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words == [NONE]:
        return frozenset()
    unknown = [w for w in words if w not in ACTIONS]
    if not words or unknown:
        what = f"unknown action {unknown[0]!r}" if unknown else "no action given"
        raise InvalidValue(f"{what}: ACTIONS is `none` or a comma list of {', '.join(ACTIONS)}.")
    return frozenset(words)


def text(actions: Iterable[str]) -> str:
    """`create, update` in the canonical order, or `none`."""
    listed = [a for a in ACTIONS if a in set(actions)]
    return ", ".join(listed) if listed else NONE


def _stored(actions: frozenset[str]) -> str:
    return ",".join(a for a in ACTIONS if a in actions)


def _loaded(stored: str) -> frozenset[str]:
    return frozenset(a for a in stored.split(",") if a)


def of_target(target_id: int) -> list[tuple[str, frozenset[str]]]:
    """(userType as given, actions) of every type the target has a row for, by type."""
    query = (
        LmsTargetAction.select(LmsTargetAction.user_type, LmsTargetAction.actions)
        .where(LmsTargetAction.target_id == target_id)
        .order_by(LmsTargetAction.user_type_key)
        .tuples()
    )
    return [(user_type, _loaded(stored)) for user_type, stored in query]


def for_type(target_id: int, user_type: str | None) -> tuple[frozenset[str], bool]:
    """The actions the target runs for users of `user_type`, and whether a row set them
    (False: the default, all three)."""
    if not user_type:
        return ALL, False
    stored = (
        LmsTargetAction.select(LmsTargetAction.actions)
        .where(
            (LmsTargetAction.target_id == target_id)
            & (LmsTargetAction.user_type_key == identity_key(user_type))
        )
        .scalar()
    )
    return (ALL, False) if stored is None else (_loaded(stored), True)


def set_actions(
    target_name: str,
    user_type: str,
    actions: frozenset[str],
    actor: audit.Actor = audit.SYSTEM,
) -> frozenset[str]:
    """Set what the target runs for `user_type` (audited), and queue that type's users for the
    target so the relay applies it at once (an account a type may now create is created, one
    made meanwhile by someone else is matched; their cohorts and enrolments follow). The
    actions before."""
    require_name("A userType", user_type)
    if len(user_type) > MAX_TYPE:
        raise InvalidValue(f"A userType is at most {MAX_TYPE} characters: {user_type!r}.")
    key = identity_key(user_type)
    with database.atomic():
        target = lms_targets.by_name(target_name)
        before, _ = for_type(target.id, user_type)
        LmsTargetAction.insert(
            target_id=target.id, user_type_key=key, user_type=user_type, actions=_stored(actions)
        ).on_conflict(
            conflict_target=[LmsTargetAction.target_id, LmsTargetAction.user_type_key],
            update={
                LmsTargetAction.actions: _stored(actions),
                LmsTargetAction.user_type: user_type,
            },
        ).execute()
        audit.record(
            actor,
            lms_targets.AUDIT_TYPE,
            str(target.id),
            "lms_actions",
            {
                "name": target.name,
                "userType": user_type,
                "actions": {"before": text(before), "after": text(actions)},
            },
        )
        # Also when unchanged: running it again looks again for accounts of held users.
        outbox.users_for(target.id, _of_type(key))
    return before


def _of_type(key: str) -> Any:
    """Users whose userType's identity key is `key`: the tenant's distinct types are few, so
    they are folded here and the users found by the types' stored spellings (an index, not a
    function of the column)."""
    types = [t for (t,) in User.select(User.user_type).distinct().tuples() if t]
    return User.user_type.in_([t for t in types if identity_key(t) == key])


# -- users held back (the relay's bookkeeping) ------------------------------------------------


def hold(target: int, user_id: str, reason: str) -> None:
    """The relay did not create the user on the target, for `reason`."""
    LmsUserHold.insert(target_id=target, user_id=user_id, reason=reason, at=utcnow()).on_conflict(
        conflict_target=[LmsUserHold.tenant_id, LmsUserHold.target_id, LmsUserHold.user_id],
        update={LmsUserHold.reason: reason, LmsUserHold.at: utcnow()},
    ).execute()


def release(target: int, user_id: str) -> bool:
    """Forget a hold; whether there was one (then the user's cohorts and enrolments, which the
    relay skipped while they had no account there, must catch up)."""
    return bool(
        LmsUserHold.delete()
        .where((LmsUserHold.target_id == target) & (LmsUserHold.user_id == user_id))
        .execute()
    )


# -- `users status` ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetView:
    """One target as `users status` tells it for one user."""

    target: str
    actions: frozenset[str]
    configured: bool  # False: the default (no row for the user's type)
    lms_id: int | None
    matched: bool
    held: str | None  # why the relay did not create the user there
    held_at: dt.datetime | None
    admitted: bool  # False: outside a restricted target's audiences

    @property
    def summary(self) -> str:
        if not self.admitted:
            state = "not sent: outside the target's audiences"
        elif self.lms_id is not None:
            how = "matched" if self.matched else "created"
            state = f"account {self.lms_id} ({how})"
        elif self.held is not None:
            state = f"not created: {self.held}"
        else:
            state = "no account yet"
        origin = "" if self.configured else " (default)"
        return f"actions {text(self.actions)}{origin}; {state}"

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "actions": [a for a in ACTIONS if a in self.actions],
            "actionsConfigured": self.configured,
            "lmsId": self.lms_id,
            "matched": self.matched,
            "notCreated": self.held,
            "admitted": self.admitted,
            "summary": self.summary,
        }


def _by_target(user_id: str, model: Any, *fields: Any) -> dict[int, tuple[Any, ...]]:
    """A per-target table's `fields` for one user, by target id."""
    query = model.select(model.target_id, *fields).where(model.user_id == user_id).tuples()
    return {target: tuple(values) for target, *values in query}


def user_targets(user: User) -> list[TargetView]:
    """Per target that receives changes (none while the relay is off: a target without an LMS
    has no account to speak of): the actions that apply to the user's type, and their account
    or why they have none."""
    links = _by_target(user.id, LmsUserLink, LmsUserLink.lms_id, LmsUserLink.matched)
    holds = _by_target(user.id, LmsUserHold, LmsUserHold.reason, LmsUserHold.at)
    found = []
    for target in lms_targets.all_targets():
        if not outbox.receives(target.id):
            continue
        actions, configured = for_type(target.id, user.user_type)
        lms_id, matched = links.get(target.id, (None, False))
        reason, at = holds.get(target.id, (None, None))
        admitted = not target.restricted or lms_targets.admits(target.id, user.id)
        found.append(
            TargetView(target.name, actions, configured, lms_id, matched, reason, at, admitted)
        )
    return found


def target_lines(target: LmsTarget) -> list[str]:
    """`teacher: update, deactivate` per configured type, for `lms show`."""
    return [f"{user_type}: {text(actions)}" for user_type, actions in of_target(target.id)]
