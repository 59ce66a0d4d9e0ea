"""Recent SCIM request outcomes per credential (m0020): what the `/admin` connection pages show.

A credential is what the audit trail calls a token: a static token's name, or `oauth:` and an
OAuth client's name (`app.auth.Principal.token_name`), so a rotated token keeps its history.
Requests are counted per UTC hour and status (`request_tally`); failed ones (400 and up) are
kept with their SCIM `scimType` and `detail` (`request_error`). Both are bounded: counts older
than `TALLY_DAYS` go, and only the newest `ERRORS_KEPT` failures of a credential stay.
Processes write in batches (`app.connections`), never one row per request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from peewee import EXCLUDED, fn

from app.datetimes import as_datetime
from app.store import tenancy
from app.store.db import database, is_postgres
from app.store.models import ApiToken, OAuthClient, RequestError, RequestTally, utcnow

TALLY_DAYS = 8
ERRORS_KEPT = 20
WINDOW = dt.timedelta(hours=24)
OAUTH_PREFIX = "oauth:"


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Failure:
    """One failed request, as a batch carries it to `write`."""

    tenant_id: int
    credential: str
    at: dt.datetime
    method: str
    path: str
    status: int
    scim_type: str | None
    detail: str | None
    request_id: str | None


def write(
    tallies: dict[tuple[int, str, dt.datetime, int], tuple[int, dt.datetime]],
    failures: Sequence[Failure],
) -> None:
    """One batch: counts added to their hour's row (one upsert), failures inserted, and the
    credentials that failed trimmed to their newest `ERRORS_KEPT` failures."""
    with database.atomic():
        if tallies:
            rows = [
                {
                    "tenant_id": tenant,
                    "credential": credential,
                    "hour": hour,
                    "status": status,
                    "n": n,
                    "last_at": last,
                }
                # In key order, so two processes writing at once lock rows in the same order.
                for (tenant, credential, hour, status), (n, last) in sorted(tallies.items())
            ]
            RequestTally.insert_many(rows).on_conflict(
                conflict_target=[
                    RequestTally.tenant_id,
                    RequestTally.credential,
                    RequestTally.hour,
                    RequestTally.status,
                ],
                update={
                    RequestTally.n: RequestTally.n + EXCLUDED.n,
                    RequestTally.last_at: _greater(RequestTally.last_at, EXCLUDED.last_at),
                },
            ).execute()
        if failures:
            RequestError.insert_many([vars(f) for f in failures]).execute()
            _trim({(f.tenant_id, f.credential) for f in failures})


def _greater(a: Any, b: Any) -> Any:
    """The later of two values: GREATEST on PostgreSQL, SQLite's two-argument MAX."""
    return fn.GREATEST(a, b) if is_postgres() else fn.MAX(a, b)


def _trim(credentials: Iterable[tuple[int, str]]) -> None:
    """Keep the newest `ERRORS_KEPT` failures of each credential (an index range each)."""
    for tenant, credential in credentials:
        with tenancy.use(tenant):
            mine = RequestError.credential == credential
            oldest_kept = (
                RequestError.select(RequestError.id)
                .where(mine)
                .order_by(RequestError.id.desc())
                .offset(ERRORS_KEPT - 1)
                .limit(1)
                .scalar()
            )
            if oldest_kept is not None:
                RequestError.delete().where(mine & (RequestError.id < oldest_kept)).execute()


def prune(now: dt.datetime | None = None) -> int:
    """Counts older than `TALLY_DAYS`, of every tenant (the deployment's policy)."""
    cutoff = hour_of(now or utcnow()) - dt.timedelta(days=TALLY_DAYS)
    with tenancy.everywhere():
        return RequestTally.delete().where(RequestTally.hour < cutoff).execute()


# -- what the pages read (in the tenant at hand) ------------------------------------------------


@dataclass
class Connection:
    """One credential's recent traffic: the last request, the last day's requests by status,
    and its newest failures."""

    credential: str
    kind: str  # "token", "oauth" or "gone" (a token or client no longer there)
    last_request: dt.datetime | None = None
    by_status: dict[int, int] = field(default_factory=dict)  # the last 24 h
    errors: list[RequestError] = field(default_factory=list)
    tokens: list[ApiToken] = field(default_factory=list)
    client: OAuthClient | None = None

    @property
    def requests(self) -> int:
        return sum(self.by_status.values())

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 400)

    @property
    def client_name(self) -> str:
        return self.credential.removeprefix(OAUTH_PREFIX)


def _since(now: dt.datetime) -> dt.datetime:
    """The first hour counted as "the last 24 h": this hour and the 23 before."""
    return hour_of(now) - WINDOW + dt.timedelta(hours=1)


def _traffic(credentials: list[str] | None, now: dt.datetime) -> dict[str, Any]:
    """Per credential: (last request counted, {status: requests in the last 24 h}), in two
    grouped queries over the tenant's few hundred hourly rows."""
    mine = RequestTally.credential.in_(credentials) if credentials is not None else None

    def scoped(query: Any) -> Any:
        return query if mine is None else query.where(mine)

    found: dict[str, Any] = {}
    last = scoped(RequestTally.select(RequestTally.credential, fn.MAX(RequestTally.last_at)))
    for credential, moment in last.group_by(RequestTally.credential).tuples():
        found[credential] = (as_datetime(moment), {})
    day = scoped(
        RequestTally.select(RequestTally.credential, RequestTally.status, fn.SUM(RequestTally.n))
    ).where(RequestTally.hour >= _since(now))
    day = day.group_by(RequestTally.credential, RequestTally.status)
    for credential, status, n in day.tuples():
        found.setdefault(credential, (None, {}))[1][status] = int(n)
    return found


def connections(now: dt.datetime | None = None) -> list[Connection]:
    """Every credential of the tenant: its tokens (a rotation's two rows as one), its OAuth
    clients, and any name seen lately that no longer has either."""
    now = now or utcnow()
    tokens: dict[str, list[ApiToken]] = {}
    for token in ApiToken.select().order_by(ApiToken.name, ApiToken.created.desc()):
        tokens.setdefault(token.name, []).append(token)
    clients = {
        f"{OAUTH_PREFIX}{c.name}": c for c in OAuthClient.select().order_by(OAuthClient.name)
    }
    traffic = _traffic(None, now)
    names = sorted({*tokens, *clients, *traffic})
    return [_connection(name, tokens.get(name, []), clients.get(name), traffic) for name in names]


def _connection(
    name: str, tokens: list[ApiToken], client: OAuthClient | None, traffic: dict[str, Any]
) -> Connection:
    last, by_status = traffic.get(name, (None, {}))
    used = [t.last_used_at for t in tokens if t.last_used_at]
    if used and (last is None or max(used) > last):
        last = max(used)  # before m0020, or counted by a process that has not written yet
    kind = "oauth" if client is not None else "token" if tokens else "gone"
    return Connection(name, kind, last, dict(sorted(by_status.items())), [], tokens, client)


def connection(name: str, errors: int = 10, now: dt.datetime | None = None) -> Connection | None:
    """One credential with its newest `errors` failures; None if the tenant knows no such name."""
    now = now or utcnow()
    tokens = list(ApiToken.select().where(ApiToken.name == name).order_by(ApiToken.created.desc()))
    client = None
    if name.startswith(OAUTH_PREFIX):
        client = OAuthClient.get_or_none(OAuthClient.name == name.removeprefix(OAUTH_PREFIX))
    traffic = _traffic([name], now)
    failures = list(
        RequestError.select()
        .where(RequestError.credential == name)
        .order_by(RequestError.id.desc())
        .limit(errors)
    )
    if not tokens and client is None and name not in traffic and not failures:
        return None
    found = _connection(name, tokens, client, traffic)
    found.errors = failures
    return found
