"""The relay: delivers the outbox (`app.store.outbox`) to the LMS, in order, at least once.

Each row is applied by reading the current state and making the LMS match it, so a row
delivered twice (a relay restarted mid-delivery, a lease that ran out) changes nothing more:

- `user`: find the LMS account (the link table, else `core_user_get_users_by_field` by the
  configured match field — check before create — else create it), then update the profile and
  `suspended` (deactivated users keep their enrolments and are suspended); a deleted user's
  account is deleted. The target's actions for the user's type decide which of create, update
  and suspend run (`app.relay.actions`);
- `group`: the same for a cohort (link, else search by idnumber = our group id, else create),
  renamed with the group and deleted with it — on a target that has chosen its cohorts, only
  for the chosen groups (`lms_targets.receives_cohort`); and the group's course, when it has one
  (`app.relay.courses`);
- `member`: the user and cohort exist first (created now if their own rows failed), the cohort
  membership follows the stored membership (where the group is a cohort), and the user's
  enrolments are reconciled: enrol in what the rules give and the LMS lacks, unenrol from what
  the relay enrolled and no rule gives.

Failures: a transient `LmsError` (timeout, 5xx, site maintenance, a token that does not
unseal: logged as an error, it waits for an operator) puts the row back with
exponential back-off and jitter and pauses this relay the same way (the LMS is probably down:
no point hammering it row after row); after `max_attempts`, or at once for a permanent error,
the row becomes a dead letter with the reason, and the user's later changes go on.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app import observability
from app.config import TenantSettings
from app.relay import actions as relay_actions
from app.relay.courses import Courses
from app.relay.moodle import LmsError, MoodleClient, TokenUnreadable
from app.store import (
    enrolment_dates,
    enrolments,
    lms_actions,
    lms_links,
    lms_targets,
    outbox,
    tenancy,
)
from app.store.models import Outbox, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """How users look on the LMS: matched by `match_field`, created with `auth`, enrolled with
    the LMS role ids of our roles."""

    match_field: str = "email"
    auth: str = "manual"
    role_ids: dict[str, int] = field(default_factory=lambda: {"student": 5, "teacher": 3})

    @classmethod
    def from_config(cls, config: TenantSettings) -> Settings:
        """The relay's part of a tenant's settings (`LMS_MATCH_FIELD`, `LMS_AUTH`,
        `LMS_ROLE_IDS`, parsed and checked as `Config` does), with an id for every role."""
        roles = dict(config.lms_role_ids)
        missing = set(enrolments.ROLES) - set(roles)
        if missing:
            raise ValueError(f"LMS_ROLE_IDS has no id for {', '.join(sorted(missing))}")
        return cls(config.lms_match_field, config.lms_auth, roles)


def has_lms(config: TenantSettings) -> bool:
    """Whether a tenant's settings name an LMS to deliver to (without a URL nothing is queued;
    with a URL but no token, its changes wait)."""
    return bool(config.lms_url and config.lms_token)


def client_from(config: TenantSettings, timeout_ms: int) -> MoodleClient:
    """A client of the LMS web service a tenant's settings name (a sealed token is opened at
    its first call: `TokenUnreadable` then, not here)."""
    if not has_lms(config):
        raise ValueError("Set LMS_URL and LMS_TOKEN to reach the LMS web service.")
    return MoodleClient(config.lms_url, config.lms_token, timeout_ms / 1000)


def relay_from(config: TenantSettings, timeout_ms: int, batch: int = 50) -> Relay:
    """A relay to the LMS a tenant's settings name, with its match field, auth and roles."""
    return Relay(client_from(config, timeout_ms), Settings.from_config(config), batch=batch)


def username(user_name: str) -> str:
    """Moodle keeps usernames in lower case."""
    return user_name.strip().lower()


class Relay:
    """One tenant's relay to its LMS. Several may run at once, on one or many machines; one
    process serves every tenant through `app.relay.dispatch`."""

    def __init__(
        self,
        client: MoodleClient,
        settings: Settings | None = None,
        *,
        batch: int = 50,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        max_attempts: int = 20,
        base_delay: float = 2.0,
        max_delay: float = 900.0,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
        target: int | None = None,
    ) -> None:
        self.client = client
        # The LMS target this relay delivers to (`app.relay.dispatch` sets it); None: the
        # tenant's `default`, looked up once per tenant.
        self.target_id = target
        self._defaults: dict[int | None, int] = {}
        self._labels: dict[int, tuple[str, str]] = {}  # target → (tenant slug, name)
        self.settings = settings or Settings()
        self.batch = batch
        self.lease = lease
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.failures = 0  # transient failures in a row: the pause before the next claim grows

    @property
    def target(self) -> int:
        """The id of the LMS target the rows and links of this relay are for."""
        if self.target_id is not None:
            return self.target_id
        tenant = tenancy.current()
        if tenant not in self._defaults:
            self._defaults[tenant] = lms_targets.default_id()
        return self._defaults[tenant]

    # -- the loop ----------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`: exponential, capped, with "equal jitter"
        (half fixed, half random) so retries of many rows spread out but never come at once."""
        delay = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Claim a batch and deliver it; how many rows were claimed (0: nothing to do now)."""
        claimed_at = self.clock()
        rows = outbox.claim(self.batch, self.lease, now=claimed_at, target=self.target)
        # Stop starting rows halfway through the lease: the row in hand then ends well before
        # its lease does, so no other relay can claim a row this one is still delivering.
        deadline = claimed_at + self.lease / 2
        for index, row in enumerate(rows):
            if (stop is not None and stop.is_set()) or self.clock() >= deadline:
                outbox.release(rows[index:])
                break
            if not self._deliver_one(row):  # a transient failure: pause before going on
                outbox.release(rows[index + 1 :])
                break
        return len(rows)

    def _deliver_one(self, row: Outbox) -> bool:
        """Deliver one row and record the outcome; False after a transient failure (pause)."""
        try:
            self.deliver(row)
        except LmsError as exc:
            attempt = row.attempts + 1
            if exc.transient and attempt < self.max_attempts:
                at = self.clock() + dt.timedelta(seconds=self.backoff(attempt))
                outbox.retry_later(row, str(exc), at)
                self.failures += 1
                # An unreadable token waits for an operator, not for the LMS: an error.
                level = logging.ERROR if isinstance(exc, TokenUnreadable) else logging.WARNING
                log.log(level, "LMS relay: row %s will be retried: %s", row.id, exc)
                return False
            reason = str(exc) if not exc.transient else f"gave up after {attempt} attempts: {exc}"
            outbox.dead(row, reason)
            log.error("LMS relay: row %s is a dead letter: %s", row.id, reason)
        except Exception as exc:  # an answer we do not understand: never block the queue
            log.exception("LMS relay: row %s failed unexpectedly", row.id)
            outbox.dead(row, f"unexpected {type(exc).__name__}: {exc}")
        else:
            outbox.delivered(row)
            self._observe(row)
        self.failures = 0
        return True

    def _observe(self, row: Outbox) -> None:
        """The delivery latency metric (change made → delivered), labelled by tenant slug and
        target name, looked up once per target."""
        target = self.target
        if target not in self._labels:
            self._labels[target] = lms_targets.labels(target)
        observability.observe_delivery(self._labels[target], row.created, self.clock())

    def deliver(self, row: Outbox) -> None:
        if row.kind == outbox.USER:
            self.sync_user(row.user_id)
        elif row.kind == outbox.GROUP:
            self.sync_group(row.group_id)
            Courses(self.client, self.target).sync(row.group_id)  # its course, if mapped
        elif row.kind == outbox.MEMBER:
            self.sync_member(row.user_id, row.group_id)
        else:
            raise LmsError(f"unknown outbox row kind {row.kind!r}", transient=False)

    # -- users -------------------------------------------------------------------------------

    def sync_user(self, user_id: str) -> int | None:
        """Make the LMS account match the user; its LMS id (None once deleted)."""
        profile = lms_links.profile(user_id)
        link = lms_links.user_link(self.target, user_id)
        if profile is None:
            forget = functools.partial(lms_links.forget_user, self.target, user_id)
            self._delete(link, self.client.delete_user, forget)
            lms_actions.release(self.target, user_id)
            return None
        if not lms_targets.admits(self.target, user_id):
            return self._shut_out(user_id, link)
        actions, _ = lms_actions.for_type(self.target, profile.user_type)
        caught_up = False
        if link is None:
            found = self._find_or_create_user(profile, actions)
            if found is None:
                return None  # held back: `users status` says why
            lms_id, created, matched = found
            caught_up = lms_actions.release(self.target, user_id)
        else:
            lms_id, created, matched = link.lms_id, False, link.matched
        if not created:
            # A matched account keeps its LMS username (people may sign in with it) and idnumber.
            account = self._account(profile, owned=not matched)
            changes = relay_actions.account_changes(account, actions)
            if changes:
                self.client.update_user(lms_id, changes)
        elif not profile.active and lms_actions.DEACTIVATE in actions:
            self.client.update_user(lms_id, {"suspended": 1})
        lms_links.user_synced(self.target, user_id)
        if caught_up:
            self._catch_up(user_id, lms_id)
        return lms_id

    def _catch_up(self, user_id: str, lms_user: int) -> None:
        """A user held back on this target got an account: the cohorts and enrolments their
        memberships' rows skipped meanwhile."""
        for group_id in lms_links.groups_of(user_id):
            cohort = self._cohort(group_id)
            if cohort is not None:
                self.client.add_cohort_member(cohort, lms_user)
        self.reconcile_enrolments(user_id, lms_user)

    def _shut_out(self, user_id: str, link: Any) -> int | None:
        """A user outside a restricted target's audiences: never created or matched there; one
        who had an account there (they left the last audience group) is suspended, never
        deleted, and comes back with it when they join one again."""
        if link is None:
            return None
        self.client.update_user(link.lms_id, {"suspended": 1})
        lms_links.user_synced(self.target, user_id)
        return int(link.lms_id)

    def _find_or_create_user(
        self, profile: lms_links.Profile, actions: frozenset[str] = lms_actions.ALL
    ) -> tuple[int, bool, bool] | None:
        """Check before create: an account with the same e-mail or username is linked. Returns
        (LMS id, created now, matched: an account lms-scim did not create), or None when none
        matched and the target may not create one for the user (held, with the reason)."""
        field_name = self.settings.match_field
        value = profile.email if field_name == "email" else username(profile.user_name)
        found = self.client.users_by_field(field_name, value) if value else []
        if len(found) > 1:
            raise LmsError(
                f"{len(found)} LMS accounts have {field_name} {value!r}: link one by hand",
                transient=False,
            )
        if found:
            # Ours if its idnumber is our id: created by an earlier delivery that did not finish.
            lms_id, created = int(found[0]["id"]), False
            matched = str(found[0].get("idnumber") or "") != profile.user_id
        elif reason := relay_actions.why_not_created(self.target, profile, actions):
            lms_actions.hold(
                self.target, profile.user_id, f"{reason}; no account matched by {field_name}"
            )
            return None
        else:
            account = {
                **self._account(profile),
                "auth": self.settings.auth,
                # Never used to sign in (the IdP does that); Moodle requires one.
                "password": f"{secrets.token_urlsafe(24)}aA1!",
            }
            account.pop("suspended")
            lms_id, created, matched = self.client.create_user(account), True, False
        lms_links.link_user(self.target, profile.user_id, lms_id, matched=matched)
        return lms_id, created, matched

    def _account(self, profile: lms_links.Profile, owned: bool = True) -> dict[str, Any]:
        name = username(profile.user_name)
        first, _, rest = (profile.display_name or "").partition(" ")
        account = {
            "username": name,
            "firstname": profile.given_name or first or name,
            "lastname": profile.family_name or rest or "-",
            "email": profile.email,
            "idnumber": profile.user_id,
            "suspended": 0 if profile.active else 1,
        }
        if not owned:
            del account["username"], account["idnumber"]
        return account

    def _lms_user(self, user_id: str) -> int | None:
        link = lms_links.user_link(self.target, user_id)
        return link.lms_id if link is not None else self.sync_user(user_id)

    # -- cohorts -----------------------------------------------------------------------------

    def sync_group(self, group_id: str) -> int | None:
        """Make the cohort match the group; its LMS id (None once deleted, or when the group is
        no cohort on this target: one that chose its cohorts without it is never called about
        it). A deleted group's linked cohort is deleted: the link is kept only while the
        target receives the group (`lms_targets._choose_cohorts`)."""
        name = lms_links.group_name(group_id)
        link = lms_links.cohort_link(self.target, group_id)
        if name is None:
            forget = functools.partial(lms_links.forget_cohort, self.target, group_id)
            self._delete(link, self.client.delete_cohort, forget)
            return None
        if not lms_targets.receives_cohort(self.target, group_id):
            return None
        if link is not None:
            lms_id = link.lms_id
            self.client.update_cohort(lms_id, name, group_id)
        else:
            lms_id = self.client.find_cohort(group_id)
            if lms_id is None:
                lms_id = self.client.create_cohort(name, group_id)
            else:
                self.client.update_cohort(lms_id, name, group_id)
            lms_links.link_cohort(self.target, group_id, lms_id)
        lms_links.cohort_synced(self.target, group_id)
        return lms_id

    def _cohort(self, group_id: str) -> int | None:
        """The group's cohort on this target (made now if it has none yet); None when the group
        is no cohort here."""
        if not lms_targets.receives_cohort(self.target, group_id):
            return None
        link = lms_links.cohort_link(self.target, group_id)
        return link.lms_id if link is not None else self.sync_group(group_id)

    def _delete(self, link: Any, delete: Callable[[int], None], forget: Callable[[], None]) -> None:
        """Delete the linked LMS record, then forget the link. Already gone (deleted there, or
        by an earlier delivery of the same change) is fine."""
        if link is None:
            return
        try:
            delete(link.lms_id)
        except LmsError as exc:
            if not exc.missing:
                raise
        forget()

    # -- memberships and enrolments ----------------------------------------------------------

    def sync_member(self, user_id: str, group_id: str) -> None:
        # On a restricted target a membership may let the user in or shut them out: their
        # account is brought in step (created, matched, unsuspended or suspended) first.
        restricted = lms_targets.is_restricted(self.target)
        lms_user = self.sync_user(user_id) if restricted else self._lms_user(user_id)
        if lms_user is None:
            return  # deleted (the account and its cohorts went with it), or never let in
        if lms_links.group_name(group_id) is not None:
            cohort = self._cohort(group_id)
            if cohort is not None:
                if lms_links.is_member(user_id, group_id):
                    self.client.add_cohort_member(cohort, lms_user)
                else:
                    self.client.remove_cohort_member(cohort, lms_user)
        self.reconcile_enrolments(user_id, lms_user)
        lms_links.user_synced(self.target, user_id)

    def reconcile_enrolments(self, user_id: str, lms_user: int) -> None:
        """Enrol in what the rules give and the LMS lacks; unenrol from courses the relay
        enrolled the user in and no rule gives any more. Each step is remembered as soon as the
        LMS confirms it, so a crash halfway repeats only harmless calls."""
        # A `mapped` rule's course is the group's own (`courses map`), made first if need be.
        courses = Courses(self.client, self.target)
        wanted = courses.resolve(enrolments.of_user(user_id, self.target))
        have = lms_links.delivered_enrolments(self.target, user_id)
        dates = courses.rekey(enrolment_dates.of_user(user_id, self.target))
        sent = lms_links.delivered_dates(self.target, user_id)
        for course_id, role in sorted(wanted - have):
            when = dates.get(course_id, sent.get(course_id, enrolment_dates.NO_DATES))
            self._enrol(lms_user, course_id, role, when)
            lms_links.enrolled(self.target, user_id, course_id, role, when)
            sent[course_id] = when
        for course_id, role in sorted(wanted & have):  # a rule's dates changed
            when = dates.get(course_id)
            if when is not None and sent.get(course_id) != when:
                self._enrol(lms_user, course_id, role, when)
                lms_links.dated(self.target, user_id, course_id, when)
                sent[course_id] = when
        wanted_courses = {course_id for course_id, _ in wanted}
        for course_id, role in sorted(have - wanted):
            # The course stays (another rule gives it) but no rule gives this role any more.
            if course_id in wanted_courses:
                self.client.unassign_role(lms_user, course_id, self._role_id(role, "take away"))
                lms_links.role_removed(self.target, user_id, course_id, role)
        for course_id in sorted({c for c, _ in have - wanted} - wanted_courses):
            # Moodle's unenrol removes the whole course enrolment: only when no role remains.
            self.client.unenrol(lms_user, course_id)
            lms_links.unenrolled(self.target, user_id, course_id)

    def _enrol(self, lms_user: int, course_id: str, role: str, when: enrolment_dates.Dates) -> None:
        start, end = (enrolment_dates.epoch(moment) for moment in when)
        self.client.enrol(lms_user, course_id, self._role_id(role, "give"), start, end)

    def _role_id(self, role: str, action: str) -> int:
        """The LMS id of one of our roles; a dead letter saying so when the map has none (a
        role dropped from it after it was given cannot be taken away either: never silently)."""
        role_id = self.settings.role_ids.get(role)
        if role_id is None:
            raise LmsError(
                f"no LMS role id for role {role!r} to {action} (LMS_ROLE_IDS or the target's "
                "roles): put it back in the map",
                transient=False,
            )
        return role_id
