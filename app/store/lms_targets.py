"""A tenant's LMS targets: the sites the relay keeps in step (m0014).

Every tenant has `default`, whose site, token, match field, auth plugin and role ids are the
tenant's `LMS_*` settings, read when the relay delivers (`from_settings`); `lms add` makes more,
each with its own URL and token (sealed here by the caller's `seal`, bound to the tenant and the
target) and, optionally, audience groups: a restricted target receives only their members; and
chosen cohorts (m0022): only those groups become cohorts there (by default every group does).

Every change is written to the outbox once per target (`app.store.outbox.insert`), each target
has its own links, dead letters and back-off, and a removed target takes its rows along (the
composite keys of m0014 cascade).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import peewee
from peewee import fn

from app.config import TenantSettings
from app.errors import InvalidValue, NotFound, Uniqueness
from app.secretbox import SealedSecret, SecretBox, cannot_unseal
from app.store import audit, enrolment_dates, generation, tenancy
from app.store.db import database
from app.store.models import (
    EnrolmentRule,
    Group,
    KeptEnrolment,
    LmsCohortLink,
    LmsTarget,
    LmsTargetAudience,
    LmsTargetCohort,
    Membership,
    Outbox,
    Tenant,
)
from app.store.names import require_name

DEFAULT = "default"
AUDIT_TYPE = "LmsTarget"
MAX_NAME = 64
# What `lms set` may change (the token apart: it is read from a prompt or stdin, never argv).
KEYS = ("url", "match", "auth", "roles", "audiences", "cohorts", "sync_unenrolled")
Seal = Callable[[str, str], str]


def token_context(tenant_id: int, target_id: int) -> str:
    """What a target's sealed token is bound to (`app.secretbox`): another tenant's or target's
    row cannot be given this one's token by copying the column."""
    return f"tenant:{tenant_id}:lms_target:{target_id}:token"


def check_name(name: str) -> None:
    require_name("An LMS target name", name)
    if len(name) > MAX_NAME or name != name.strip() or "/" in name:
        raise InvalidValue(
            f"An LMS target name is 1-{MAX_NAME} characters, without slashes or outer spaces: "
            f"{name!r}."
        )


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiving:
    """What a tenant's writes and reads must do for the relay: which of its targets receive
    its changes, which do not (its `default` while the tenant's settings name no LMS; a target
    in neither was added since this was read: it has a URL, so it receives), and whether it has
    enrolments to compute at all (an enrolment rule, or enrolments kept after one)."""

    targets: tuple[int, ...]
    off: tuple[int, ...]
    enrolments: bool = True


def receiving(default_configured: bool) -> Receiving:
    """Every target added with `lms add` (each has a URL) receives the tenant's changes, and
    `default` only when the tenant's settings name an LMS (`default_configured`: LMS_URL is
    set). One query, which also asks whether any enrolment rule or kept enrolment exists."""
    rules = fn.EXISTS(EnrolmentRule.select(peewee.SQL("1")))
    kept = fn.EXISTS(KeptEnrolment.select(peewee.SQL("1")))
    query = LmsTarget.select(LmsTarget.id, LmsTarget.from_settings, rules, kept).order_by(
        LmsTarget.id
    )
    found = list(query.tuples())
    return Receiving(
        tuple(i for i, default, *_ in found if default_configured or not default),
        tuple(i for i, default, *_ in found if default and not default_configured),
        any(bool(has_rules) or bool(has_kept) for *_, has_rules, has_kept in found),
    )


def create_default(tenant_id: int) -> None:
    """A new tenant's `default` target (its `LMS_*` settings), inside the caller's transaction."""
    with tenancy.use(tenant_id):
        LmsTarget.insert(name=DEFAULT, from_settings=True, restricted=False).execute()


def default_id() -> int:
    """The id of the tenant's `default` target (the one its `LMS_*` settings describe)."""
    found = LmsTarget.select(LmsTarget.id).where(LmsTarget.from_settings == True).scalar()  # noqa: E712
    if found is None:
        raise NotFound("This tenant has no default LMS target (the database predates m0014?).")
    return int(found)


def all_targets() -> list[LmsTarget]:
    """The tenant's targets, `default` first, then in the order they were added."""
    return list(LmsTarget.select().order_by(LmsTarget.from_settings.desc(), LmsTarget.id))


def labels(target_id: int) -> tuple[str, str]:
    """(tenant slug, target name) of a target of the tenant at hand: how metrics name it."""
    found = (
        LmsTarget.select(Tenant.slug, LmsTarget.name)
        .join(Tenant, on=Tenant.id == LmsTarget.tenant_id)
        .where(LmsTarget.id == target_id)
        .tuples()
        .first()
    )
    if found is None:
        raise NotFound(f"No LMS target with id {target_id}.")
    return found[0], found[1]


def by_name(name: str) -> LmsTarget:
    found = LmsTarget.get_or_none(LmsTarget.name == name)
    if found is None:
        names = ", ".join(t.name for t in all_targets())
        raise NotFound(f"No LMS target {name!r} (this tenant has: {names}).")
    return found


def chosen(name: str | None) -> LmsTarget:
    """The target `name`, or, when none is named, the tenant's only one (refused, listing them,
    when it has several)."""
    if name is not None:
        return by_name(name)
    found = all_targets()
    if len(found) > 1:
        names = ", ".join(t.name for t in found)
        raise InvalidValue(f"This tenant has several LMS targets; name one with --lms ({names}).")
    return found[0]


# A target's groups of one kind: its audiences (m0014) or its chosen cohorts (m0022).
TargetGroups = type[LmsTargetAudience] | type[LmsTargetCohort]


def _group_names(model: TargetGroups, target_ids: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {t: [] for t in target_ids}
    if target_ids:
        query = (
            model.select(model.target_id, Group.display_name)
            .join(Group)
            .where(model.target_id.in_(list(target_ids)))
            .order_by(Group.display_name_key, Group.id)
            .tuples()
        )
        for target, name in query:
            found[target].append(name)
    return found


def audiences(target_ids: Sequence[int]) -> dict[int, list[str]]:
    """The displayNames of each target's audience groups (one query)."""
    return _group_names(LmsTargetAudience, target_ids)


def cohorts(target_ids: Sequence[int]) -> dict[int, list[str]]:
    """The displayNames of each target's chosen cohort groups (one query)."""
    return _group_names(LmsTargetCohort, target_ids)


def _only_if_listed(target_id: int, flag: peewee.Field, listed: peewee.Query) -> bool:
    """The target has no list (`flag` off: everything goes there), or `listed` finds a row."""
    row = LmsTarget.select(flag, fn.EXISTS(listed)).where(LmsTarget.id == target_id).tuples()
    found = row.first()
    return found is not None and (not found[0] or bool(found[1]))


def admits(target_id: int, user_id: str) -> bool:
    """Whether the user goes to the target: an unrestricted one receives everybody, a
    restricted one the members of its audience groups — nobody once they are all gone."""
    member = (
        LmsTargetAudience.select(peewee.SQL("1"))
        .join(
            Membership,
            on=(Membership.group == LmsTargetAudience.group)
            & (Membership.tenant_id == LmsTargetAudience.tenant_id),
        )
        .where((LmsTargetAudience.target_id == target_id) & (Membership.user == user_id))
    )
    return _only_if_listed(target_id, LmsTarget.restricted, member)


def receives_cohort(target_id: int, group_id: str) -> bool:
    """Whether the group is a cohort on the target (the relay asks as it delivers): every group
    is on a target that has not chosen its cohorts, only the chosen ones on one that has — none
    once they are all gone, never every one."""
    chosen = LmsTargetCohort.select(peewee.SQL("1")).where(
        (LmsTargetCohort.target_id == target_id) & (LmsTargetCohort.group == group_id)
    )
    return _only_if_listed(target_id, LmsTarget.chosen_cohorts, chosen)


def is_restricted(target_id: int) -> bool:
    return bool(LmsTarget.select(LmsTarget.restricted).where(LmsTarget.id == target_id).scalar())


def role_ids_text(target: LmsTarget) -> str | None:
    """The target's own role ids as `LMS_ROLE_IDS` writes them (None: the tenant's)."""
    if not target.role_ids:
        return None
    return ",".join(f"{name}={number}" for name, number in json.loads(target.role_ids).items())


def role_ids_of(target: LmsTarget, tenant: TenantSettings) -> dict[str, int]:
    """The target's LMS role id per role name: its own `--roles`, else the tenant's
    `LMS_ROLE_IDS` (what enrolment rules may name, custom roles included)."""
    if target.role_ids and not target.from_settings:
        return dict(json.loads(target.role_ids))
    return dict(tenant.lms_role_ids)


def settings_of(target: LmsTarget, tenant: TenantSettings, box: SecretBox | None) -> TenantSettings:
    """What the relay of `target` works with: the tenant's settings, with the target's own site,
    token, match field, auth and role ids over them (`default`: the tenant's as they are). The
    token stays sealed until the relay uses it (`box` opens it then; a token that does not
    open fails the target's deliveries, not whoever reads its settings)."""
    if target.from_settings:
        return tenant
    token = None
    if target.token:
        if box is None:
            raise ValueError(f"LMS target {target.name!r}: no key to open its token with")
        token = SealedSecret(
            box,
            target.token,
            token_context(target.tenant_id, target.id),
            store=partial(_store_resealed, target),
            explain=partial(_unreadable, target),
        )
    roles = json.loads(target.role_ids) if target.role_ids else None
    return replace(
        tenant,
        lms_url=target.url,
        lms_token=token,
        lms_match_field=target.match_field or tenant.lms_match_field,
        lms_auth=target.auth or tenant.lms_auth,
        lms_role_ids=tuple(roles.items()) if roles else tenant.lms_role_ids,
    )


def _unreadable(target: LmsTarget, reason: str) -> str:
    """Why the target's token does not open and how to set it again (asked only then: it looks
    up the tenant's slug)."""
    slug = Tenant.select(Tenant.slug).where(Tenant.id == target.tenant_id).scalar()
    return cannot_unseal(
        f"the token of LMS target {target.name!r} of tenant {slug!r}",
        f"`lms-scim lms set {shlex.quote(target.name)} token --tenant {slug}` (the token on stdin)",
        reason,
    )


def _store_resealed(target: LmsTarget, resealed: str) -> None:
    """The target's token sealed again under the current SECRET_KEY, in place of the one read
    (unless it changed meanwhile: an `lms set`, another process's reseal). Not audited: the
    token is the same."""
    LmsTarget.update(token=resealed).where(
        (LmsTarget.id == target.id) & (LmsTarget.token == target.token)
    ).execute()


# -- changing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """A target's own values, as `lms add`/`lms set` give them (None: not given). `roles` is
    already parsed (`LMS_ROLE_IDS`'s parser), `audiences` and `cohorts` are group ids or
    displayNames (empty: everyone, every group)."""

    url: str | None = None
    match: str | None = None
    auth: str | None = None
    roles: tuple[tuple[str, int], ...] | None = None
    audiences: tuple[str, ...] | None = None
    cohorts: tuple[str, ...] | None = None  # the groups that become cohorts there
    token: str | None = None
    sync_unenrolled: bool | None = None  # off: users no rule of the target enrols stay away


def _group_ids(refs: Sequence[str]) -> list[str]:
    from app.store.enrolments import find_group  # enrolments writes the outbox, which needs us

    return list(dict.fromkeys(find_group(ref).id for ref in refs))


def _columns(fields: Fields) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    if fields.url is not None:
        columns["url"] = fields.url
    if fields.match is not None:
        columns["match_field"] = fields.match
    if fields.auth is not None:
        columns["auth"] = fields.auth
    if fields.roles is not None:
        columns["role_ids"] = json.dumps(dict(fields.roles))
    if fields.audiences is not None:
        columns["restricted"] = bool(fields.audiences)
    if fields.cohorts is not None:
        columns["chosen_cohorts"] = bool(fields.cohorts)
    if fields.sync_unenrolled is not None:
        columns["sync_unenrolled"] = fields.sync_unenrolled
    return columns


def _trail(
    columns: Mapping[str, Any], groups: Mapping[str, list[str]], token: bool
) -> dict[str, Any]:
    """What the audit trail says of a change: values, the group ids of its audiences or cohorts
    (`groups`, those given), never the token (only that it was set)."""
    flags = ("restricted", "chosen_cohorts")  # the lists say it
    trail: dict[str, Any] = {k: v for k, v in columns.items() if k not in flags}
    trail.update(groups)
    if token:
        trail["token"] = "set"  # noqa: S105 - that it changed, never the value
    return trail


def _set_groups(model: TargetGroups, target_id: int, group_ids: list[str]) -> None:
    model.delete().where(model.target_id == target_id).execute()
    if group_ids:
        model.insert_many([{"target_id": target_id, "group": g} for g in group_ids]).execute()


def _given(fields: Fields) -> dict[str, list[str]]:
    """The group ids of the audiences and cohorts `fields` give (resolved: an unknown or
    ambiguous reference is refused before anything changes)."""
    return {
        key: _group_ids(refs)
        for key, refs in (("audiences", fields.audiences), ("cohorts", fields.cohorts))
        if refs is not None
    }


def add(name: str, fields: Fields, seal: Seal, actor: audit.Actor = audit.SYSTEM) -> LmsTarget:
    """A new target of the tenant at hand; 409 if the name is taken. Its existing users and
    groups are queued for it, so it catches up with the others."""
    check_name(name)
    if not fields.url or not fields.token:
        raise InvalidValue("An LMS target needs a URL and a token.")
    columns = _columns(fields)
    try:
        with database.atomic():
            groups = {key: ids for key, ids in _given(fields).items() if ids}
            target_id = LmsTarget.insert(name=name, from_settings=False, **columns).execute()
            tenant = tenancy.owner()
            sealed = seal(fields.token, token_context(tenant, target_id))
            LmsTarget.update(token=sealed).where(LmsTarget.id == target_id).execute()
            _set_groups(LmsTargetAudience, target_id, groups.get("audiences", []))
            _set_groups(LmsTargetCohort, target_id, groups.get("cohorts", []))
            audit.record(
                actor,
                AUDIT_TYPE,
                str(target_id),
                "lms_add",
                _trail({"name": name, **columns}, groups, token=True),
            )
            _catch_up(target_id)
        generation.changed_here()
    except peewee.IntegrityError as exc:
        raise Uniqueness(f"An LMS target called {name!r} exists.") from exc
    return LmsTarget.get_by_id(target_id)


def _catch_up(target_id: int) -> None:
    """Queue every user and group of the tenant, and every membership, for a new target (or
    one whose audiences changed) — unless it receives nothing (`default` without an LMS: it
    starts from `relay sync --all` once one is set)."""
    from app.store import outbox  # the outbox writes per target: it imports this module

    outbox.everything_for(target_id)


def update(name: str, fields: Fields, seal: Seal, actor: audit.Actor = audit.SYSTEM) -> LmsTarget:
    """Change some of a target's values. `default` takes only audiences, cohorts and
    sync_unenrolled (its site, token and the rest are the tenant's `LMS_*` settings: `tenants
    set`). A change of audiences queues the tenant's users again for this target, so joiners are
    created and leavers suspended; a change of cohorts queues the groups it now receives
    (`_choose_cohorts`); a change of sync_unenrolled queues its users."""
    with database.atomic():
        target = by_name(name)
        if target.from_settings and (
            fields.url or fields.match or fields.auth or fields.roles or fields.token
        ):
            raise InvalidValue(
                "The default target's site, token, match field, auth and roles are the tenant's "
                "LMS_* settings: change them with `lms-scim tenants set SLUG LMS_URL=…`."
            )
        if fields.roles is not None:
            check_roles_kept([target], (n for n, _ in fields.roles), f"LMS target {target.name!r}")
        groups = _given(fields)
        columns = _columns(fields)
        if fields.token:
            columns["token"] = seal(fields.token, token_context(target.tenant_id, target.id))
        if columns:
            LmsTarget.update(**columns).where(LmsTarget.id == target.id).execute()
        if "cohorts" in groups:  # queued here unless the audiences' catch-up queues everything
            _choose_cohorts(target, groups["cohorts"], queue="audiences" not in groups)
        if "audiences" in groups:
            _set_groups(LmsTargetAudience, target.id, groups["audiences"])
            _catch_up(target.id)
        elif fields.sync_unenrolled is not None and fields.sync_unenrolled != bool(
            target.sync_unenrolled
        ):
            from app.store import outbox  # the outbox writes per target: it imports this module

            outbox.users_for(target.id)  # who may be created there changed
        trail = _trail(
            {k: v for k, v in columns.items() if k != "token"}, groups, token=bool(fields.token)
        )
        if trail:
            audit.record(actor, AUDIT_TYPE, str(target.id), "lms_set", trail)
    return LmsTarget.get_by_id(target.id)


def _choose_cohorts(target: LmsTarget, chosen: list[str], *, queue: bool) -> None:
    """The groups `target` receives as cohorts from now on (`chosen`; none: every group, as
    before m0022). A group it now receives and did not is queued for it (the group, then its
    memberships: its cohort is made there and filled with the members the target receives). A
    group it no longer receives loses its cohort link on this target, so the relay leaves that
    cohort on the LMS as it is — never updated, never deleted — and finds it again by idnumber
    if the group is chosen again; links of groups deleted here stay, so their deletion still
    reaches the LMS."""
    from app.store import outbox  # the outbox writes per target: it imports this module

    before = [
        g
        for (g,) in LmsTargetCohort.select(LmsTargetCohort.group_id)
        .where(LmsTargetCohort.target_id == target.id)
        .tuples()
    ]
    _set_groups(LmsTargetCohort, target.id, chosen)
    if chosen:
        LmsCohortLink.delete().where(
            (LmsCohortLink.target_id == target.id)
            & LmsCohortLink.group_id.not_in(chosen)
            & LmsCohortLink.group_id.in_(Group.select(Group.id))
        ).execute()
    if not queue:
        return
    if not target.chosen_cohorts and not chosen:
        return  # every group before and after
    if not chosen:
        outbox.groups_for(target.id, but=before)  # every group again: those it lacked
    elif target.chosen_cohorts:
        outbox.groups_for(target.id, only=[g for g in chosen if g not in before])
    # From every group to some: it has them all already.


def on_tenant_roles() -> list[LmsTarget]:
    """The tenant's targets whose role map is its `LMS_ROLE_IDS` (as `role_ids_of` reads it):
    `default` and every target added without `--roles`."""
    return [t for t in all_targets() if t.from_settings or not t.role_ids]


def check_roles_kept(targets: Sequence[LmsTarget], names: Iterable[str], whose: str) -> None:
    """A new role map of `targets` (`lms set NAME roles=…`, or the tenant's `LMS_ROLE_IDS`)
    must keep every role an enrolment rule of theirs names, as its role or in its
    `--no-end-for`: an unknown role is refused when the rule is made (issue 17 §3), so dropping
    one later must not make the rule fail at delivery instead. InvalidValue naming the rules
    (`whose`: what the map belongs to) before anything is changed."""
    from app.store.course_maps import shown  # course_maps imports this module

    kept = set(names)
    several = len(targets) > 1
    query = (
        EnrolmentRule.select(
            EnrolmentRule.role,
            EnrolmentRule.no_end_roles,
            Group.display_name,
            EnrolmentRule.course_id,
            LmsTarget.name,
        )
        .join(Group)
        .switch(EnrolmentRule)
        .join(LmsTarget, on=LmsTarget.id == EnrolmentRule.target_id)
        .where(
            EnrolmentRule.target_id.in_([t.id for t in targets])
            & (EnrolmentRule.role.not_in(list(kept)) | EnrolmentRule.no_end_roles.is_null(False))
        )
        .order_by(
            LmsTarget.from_settings.desc(),
            LmsTarget.id,
            Group.display_name_key,
            EnrolmentRule.course_id,
        )
        .tuples()
    )
    found = []
    for role, no_end, group, course, target in query:
        where = f"{group} → course {shown(course)}" + (f" on {target}" if several else "")
        if role not in kept:
            found.append((role, f"{role} ({where})"))
        found.extend(
            (extra, f"{extra} ({where}, --no-end-for)")
            for extra in enrolment_dates.roles_of(no_end)
            if extra not in kept and extra != role
        )
    if found:
        listed = ", ".join(text for _, text in sorted(found, key=lambda item: item[0]))
        raise InvalidValue(
            f"{whose}: enrolment rules use roles the new map lacks: {listed}; "
            "change or remove those rules first."
        )


def undelivered(target_id: int) -> int:
    """Rows waiting for the target (dead letters too: they were never delivered)."""
    return Outbox.select().where(Outbox.target_id == target_id).count()


def remove(name: str, *, force: bool, actor: audit.Actor = audit.SYSTEM) -> int:
    """Remove a target, its links, rules and rows (the keys cascade); refused for `default` and,
    unless `force`, while changes wait for it. How many undelivered rows went with it."""
    with database.atomic():
        target = by_name(name)
        if target.from_settings:
            raise InvalidValue(
                "The default target stays (it is the tenant's LMS_* settings); "
                "to stop using it, remove LMS_URL with `lms-scim tenants set SLUG LMS_URL=`."
            )
        waiting = undelivered(target.id)
        if waiting and not force:
            raise InvalidValue(
                f"LMS target {name!r} has {waiting} undelivered change(s); "
                "deliver them first, or use --force to drop them."
            )
        LmsTarget.delete().where(LmsTarget.id == target.id).execute()
        generation.changed_here()
        audit.record(
            actor, AUDIT_TYPE, str(target.id), "lms_remove", {"name": name, "dropped": waiting}
        )
    return waiting


@dataclass(frozen=True)
class Line:
    """One target in `lms list` and `relay status`."""

    target: LmsTarget
    audiences: list[str]
    cohorts: list[str]  # its chosen cohorts (`target.chosen_cohorts`; else every group)
    backlog: int
    dead: int


def lines() -> list[Line]:
    """Every target of the tenant with its audiences, chosen cohorts, backlog and dead letters
    (four queries)."""
    found = all_targets()
    ids = [t.id for t in found]
    names, chosen = audiences(ids), cohorts(ids)
    dead_case = peewee.Case(None, [(Outbox.state == "dead", 1)], 0)
    counts = {
        target: (int(total or 0) - int(dead or 0), int(dead or 0))
        for target, total, dead in Outbox.select(
            Outbox.target_id, fn.COUNT(Outbox.id), fn.SUM(dead_case)
        )
        .group_by(Outbox.target_id)
        .tuples()
    }
    return [Line(t, names[t.id], chosen[t.id], *counts.get(t.id, (0, 0))) for t in found]
