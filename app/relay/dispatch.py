"""One relay process for every LMS target of every tenant, fairly.

A scheduler asks the outbox which targets have changes due (one query across tenants) and
gives each a *turn* on a small pool of worker threads: one batch (`Relay.run_once`) of that
target's rows, delivered to that target's LMS, inside `tenancy.use(tenant)` so every query the
relay makes is the tenant's. A target is a tenant's `default` (its `LMS_*` settings) or one
added with `lms-scim lms add`; each has its own rows, back-off and dead letters. Fairness
comes from three rules, between the targets of one tenant as between tenants:

- a target has at most one turn in flight, so a stalled LMS (a site that accepts connections
  and never answers) holds one worker, never the pool: with `workers` threads, up to
  `workers - 1` sites can hang at once while the others' deliveries go on;
- a turn is one batch, and when more targets are due than workers are free, the ones served
  longest ago go first (round-robin), so a target with a large backlog does not starve a small
  one;
- a target whose LMS failed (a timeout, a 5xx, maintenance) is paused with the relay's
  back-off before its next turn, so its retries never crowd out the others.

Each target's relay is built from its settings (the tenant's, with the target's own site,
token, match field, auth and roles over them) and rebuilt when they change; a target without a
site or token is skipped (its changes wait) and looked at again after `unconfigured_pause`. A
sealed token is opened at the relay's first call: one that does not open fails that target's
rows like an LMS that is down (`TokenUnreadable`: the reason on the row, the usual back-off).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from app import observability
from app.config import TenantSettings
from app.relay.worker import Relay, has_lms
from app.secretbox import SecretBox
from app.store import lms_targets, outbox, tenancy
from app.store import tenants as tenant_store
from app.store.db import database
from app.store.models import LmsTarget, utcnow

log = logging.getLogger(__name__)


@dataclass
class TenantTurns:
    """What the scheduler knows of one target (of one tenant) between turns."""

    relay: Relay | None = None
    settings: TenantSettings | None = None  # what `relay` was built from
    not_before: dt.datetime | None = None  # paused (back-off, nothing to claim, no LMS)
    last_turn: int = 0  # when it last had a turn, by turn number (0: never)
    busy: bool = False
    stopped: bool = False  # `run_due`: nothing claimed, or a failure, ends its share
    slug: str | None = None  # the tenant's, which every line its turns log carries


Key = tuple[int, int]  # (tenant, target)


@dataclass
class Dispatcher:
    settings_for: Callable[[int], TenantSettings]  # a tenant's settings (cached by the caller)
    build: Callable[[TenantSettings], Relay]  # a relay for settings that name an LMS
    workers: int = 4
    idle: float = 2.0
    unconfigured_pause: float = 60.0
    only: Collection[int] | None = None  # these tenants (default: every tenant)
    clock: Callable[[], dt.datetime] = utcnow
    # Opens a target's sealed token when its relay first calls the LMS; without it, only the
    # tenants' `default` targets (whose token is in their settings) are served.
    secret_box: SecretBox | None = None
    _turns: dict[Key, TenantTurns] = field(default_factory=dict)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Give turns until `stop` is set; then the turns in flight finish the row in hand."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="relay") as pool:
            while not stop.is_set():
                self._wake.clear()
                self._start_turns(pool, stop)
                self._wake.wait(self.idle)

    def run_due(self, stop: threading.Event | None = None) -> int:
        """Deliver what is due now for every tenant, in rounds of one turn each, until nothing
        more can go (a tenant whose LMS fails is left for later); rows claimed in all."""
        stop = stop or threading.Event()
        total = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="relay") as pool:
            while not stop.is_set():
                started = self._start_turns(pool, stop, once=True)
                if not started:
                    break
                total += sum(turn.result() for turn in started)
        return total

    # -- turns -------------------------------------------------------------------------------

    def _start_turns(
        self, pool: ThreadPoolExecutor, stop: threading.Event, once: bool = False
    ) -> list[Future[int]]:
        now = self.clock()
        ready = [key for key in outbox.due_targets(now) if self._ready(key, now, once)]
        ready.sort(key=lambda key: self._turns[key].last_turn)
        started = []
        with self._lock:
            free = self.workers - sum(1 for t in self._turns.values() if t.busy)
            for key in ready[: max(0, free)]:
                turns = self._turns[key]
                turns.busy, turns.last_turn = True, next(self._numbers)
                started.append(key)
        return [pool.submit(self._turn, key, stop, once) for key in started]

    def _ready(self, key: Key, now: dt.datetime, once: bool) -> bool:
        if self.only is not None and key[0] not in self.only:
            return False
        turns = self._turns.setdefault(key, TenantTurns())
        paused = turns.not_before is not None and turns.not_before > now
        return not (turns.busy or turns.stopped or (paused and not once))

    def _turn(self, key: Key, stop: threading.Event, once: bool) -> int:
        """One batch of one target's rows; never raises (a failure pauses the target). Every
        line it logs names the tenant (`observability.tenant_logged`)."""
        turns = self._turns[key]
        with observability.tenant_logged(self._slug(key[0], turns)):
            return self._delivered(key, turns, stop, once)

    def _slug(self, tenant: int, turns: TenantTurns) -> str | None:
        """The tenant's slug, looked up once per target; None while it cannot be (the turn's
        own failure is logged all the same)."""
        if turns.slug is None:
            try:
                turns.slug = tenant_store.stored(tenant).slug
            except Exception:  # the database or the tenant gone: the turn will say so
                return None
        return turns.slug

    def _delivered(self, key: Key, turns: TenantTurns, stop: threading.Event, once: bool) -> int:
        tenant = key[0]
        claimed = 0
        try:
            with tenancy.use(tenant):
                relay = self._relay(key, turns)
                if relay is None:
                    self._pause(turns, self.unconfigured_pause)
                    turns.stopped = once
                    return 0
                claimed = relay.run_once(stop)
            if relay.failures:
                self._pause(turns, relay.backoff(relay.failures))
            elif not claimed:  # due rows, all waiting for earlier ones: look again later
                self._pause(turns, self.idle)
            else:
                turns.not_before = None
            turns.stopped = once and (not claimed or bool(relay.failures))
        except ValueError as exc:  # settings that cannot work
            log.error("LMS relay: tenant %s, target %s: %s", tenant, key[1], exc)
            self._pause(turns, self.unconfigured_pause)
            turns.stopped = once
        except Exception:
            log.exception("LMS relay: tenant %s, target %s: the turn failed", tenant, key[1])
            self._pause(turns, self.idle)
            turns.stopped = once
        finally:
            if not database.is_closed():  # back to the pool: a worker thread owns none
                database.close()
            with self._lock:
                turns.busy = False
            self._wake.set()
        return claimed

    def _relay(self, key: Key, turns: TenantTurns) -> Relay | None:
        """The target's relay, built again only when its settings changed (a relay keeps its
        failure count, which sets the back-off, between turns)."""
        tenant, target_id = key
        target = LmsTarget.get_or_none(LmsTarget.id == target_id)
        if target is None:  # removed meanwhile (its rows went with it)
            return None
        settings = lms_targets.settings_of(target, self.settings_for(tenant), self.secret_box)
        if settings != turns.settings:
            if not has_lms(settings):
                log.warning(
                    "LMS relay: tenant %s, target %s has no LMS URL/token; changes wait",
                    tenant,
                    target.name,
                )
                turns.relay = None
            else:
                turns.relay = self.build(settings)
                turns.relay.target_id = target_id
            turns.settings = settings
        return turns.relay

    def _pause(self, turns: TenantTurns, seconds: float) -> None:
        turns.not_before = self.clock() + dt.timedelta(seconds=seconds)
