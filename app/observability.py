"""What operators see: structured logs, Prometheus metrics, `/readyz` and `/metrics`.

- **Logs**: one JSON object per line on stderr (`LOG_FORMAT=json`, the default; `text` for a
  terminal), and one `request` line per request with method, route template, status, duration,
  request id, tenant slug, token name and client address. Never the query string, headers or
  body, and every line passes through `redact`, which blanks bearer tokens, `lmsscim_` secrets,
  `password` values and argon2 hashes should any code ever log one.
- **The tenant in logs**: where the tenant is decided — a SCIM token accepted, an OAuth client
  authenticated at the token endpoint, an `/admin` page entered, a relay turn or a CLI command
  given `--tenant` — its slug is set once (`log_tenant`, `tenant_logged`), and every line
  logged meanwhile carries it as `tenant` (`TenantField`): no log call names it itself.
- **Metrics** (prometheus_client): requests by method, route template and status; latency by
  route; provisioning writes by resource and operation; database errors by kind; failed
  fetches of an Entra directory's key set by reason. With
  `METRICS_TENANT_LABEL` the request and provisioning counters also carry `tenant` (a slug).
  Under gunicorn every worker writes to `PROMETHEUS_MULTIPROC_DIR` (set up by
  `gunicorn.conf.py`) and `/metrics` adds them up; without it each process reports its own.
- **Relay metrics**: the backlog, the age of the oldest waiting change and the dead letters of
  each LMS target (`tenant` slug and `target` name labels; targets without an LMS and with
  nothing queued are left out; past `RELAY_SERIES_LIMIT` targets the smallest backlogs are
  summed under `_other`), read from the database at each scrape in one grouped query; and the
  delivery latency (change made → delivered), observed by the relay process, which serves its
  own `/metrics` with `relay run --metrics-port`.
- `/readyz`: 200 when a `SELECT 1` answers, 503 with `Retry-After` otherwise (a load balancer
  takes an instance out while its database is unreachable; `/healthz` says the process lives).
- `/metrics` is served with `METRICS_TOKEN` as a bearer token, or, when that is unset, only to
  loopback clients whose request did not pass a proxy (no `X-Forwarded-For`/`Forwarded`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hmac
import ipaddress
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.config import Config, names_an_lms
from app.errors import is_database_outage, outage_cause
from app.store import db, outbox, tenancy
from app.store.models import utcnow

log = logging.getLogger(__name__)
REQUEST_LOG = logging.getLogger("lms_scim.request")


class _Labelled:
    """A counter, and its twin with a `tenant` label under the same name (`METRICS_TENANT_LABEL`).
    A request is counted in one of the two, so sums over both stay right; the twin is not
    registered itself (one name, one registration): `_Merged` shows both as one family, and under
    gunicorn the multiprocess files keep each sample's labels."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.plain = Counter(name, documentation, labels, registry=None)
        self.by_tenant = Counter(name, documentation, [*labels, "tenant"], registry=None)

    def inc(self, tenant: str | None, *values: str) -> None:
        if tenant is None:
            self.plain.labels(*values).inc()
        else:
            self.by_tenant.labels(*values, tenant).inc()


class _Merged(Collector):
    """The samples of both twins as one metric family each."""

    def __init__(self, *counters: _Labelled) -> None:
        self.counters = counters

    def collect(self) -> Iterable[Metric]:
        for counter in self.counters:
            family, *_ = counter.plain.collect()
            for twin in counter.by_tenant.collect():
                family.samples.extend(twin.samples)
            yield family


REQUESTS = _Labelled(
    "lms_scim_http_requests", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "lms_scim_http_request_duration_seconds",
    "Time to answer (until the body starts; streamed bodies continue after it).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
OPERATIONS = _Labelled(
    "lms_scim_provisioning_operations",
    "Provisioning writes that succeeded.",
    ["resource", "operation"],
)
REGISTRY.register(_Merged(REQUESTS, OPERATIONS))
DATABASE_ERRORS = Counter(
    "lms_scim_database_errors", "Requests answered 503 because the database failed.", ["kind"]
)
# `app.oauth.entra`: a fetch of an Entra directory's key set that brought no keys (`reason`:
# unreachable, status, invalid); the keys held before stayed in use.
ENTRA_JWKS_FAILURES = Counter(
    "lms_scim_entra_jwks_fetch_failures",
    "Entra ID key-set fetches that failed (the keys held before stayed in use).",
    ["reason"],
)

# The relay (app/relay): how long a change waited from its write to its delivery. Observed in
# the relay process (`relay run`), labelled by tenant slug and target name: one series per LMS
# target, a number the operator sets (`lms add`), never one that requests can grow.
RELAY_DELIVERY = Histogram(
    "lms_scim_relay_delivery_seconds",
    "Time from a change to its delivery to the LMS (observed by the relay).",
    ["tenant", "target"],
    buckets=(0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0),
)
# At most this many targets get series of their own in the backlog gauges.
RELAY_SERIES_LIMIT = 200
OTHER = "_other"


def observe_delivery(labels: tuple[str, str], created: dt.datetime, now: dt.datetime) -> None:
    """A change (made at `created`) reached the LMS of target `labels` (slug, name) at `now`."""
    RELAY_DELIVERY.labels(*labels).observe(max(0.0, (now - created).total_seconds()))


class RelayBacklog(Collector):
    """The relay's queue per LMS target, read at scrape time (`outbox.backlog_by_target`: one
    grouped query, and no other: whether a tenant's `default` target has an LMS comes from the
    settings that query reads and `config`'s, not from each tenant's settings in turn)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def _shown(self, line: outbox.TargetBacklog) -> bool:
        """Targets with rows, added ones (each has a URL), and `default` where it has an LMS:
        a tenant without one has no series (its relay is off, nothing waits)."""
        if line.backlog or line.dead or not line.default:
            return True
        default_tenant = line.tenant_id == tenancy.DEFAULT_TENANT
        return names_an_lms(self.config, line.settings, default_tenant=default_tenant)

    def collect(self) -> Iterable[Metric]:
        try:
            lines = [line for line in outbox.backlog_by_target() if self._shown(line)]
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            log.warning("metrics: relay backlog unavailable: %s", outage_cause(exc))
            return
        finally:
            db.release()
        now = utcnow()
        backlog = GaugeMetricFamily(
            "lms_scim_relay_backlog",
            "Changes waiting for an LMS target (retries included).",
            labels=["tenant", "target"],
        )
        oldest = GaugeMetricFamily(
            "lms_scim_relay_oldest_waiting_seconds",
            "Age of the oldest change waiting for an LMS target (0: none waits).",
            labels=["tenant", "target"],
        )
        dead = GaugeMetricFamily(
            "lms_scim_relay_dead_letters",
            "Changes an LMS target refused for good (`lms-scim relay retry` requeues them).",
            labels=["tenant", "target"],
        )
        for labels, (waiting, age, failed) in _bounded(lines, now).items():
            backlog.add_metric(list(labels), waiting)
            oldest.add_metric(list(labels), age)
            dead.add_metric(list(labels), failed)
        yield from (backlog, oldest, dead)


def _bounded(
    lines: list[outbox.TargetBacklog], now: dt.datetime
) -> dict[tuple[str, str], tuple[int, float, int]]:
    """(backlog, oldest age, dead letters) per (tenant, target): the largest backlogs first,
    up to `RELAY_SERIES_LIMIT` series, the rest summed under (`_other`, `_other`)."""
    ranked = sorted(lines, key=lambda line: (-line.backlog, -line.dead, line.target_id))
    if len(ranked) > RELAY_SERIES_LIMIT:
        own, rest = ranked[: RELAY_SERIES_LIMIT - 1], ranked[RELAY_SERIES_LIMIT - 1 :]
    else:
        own, rest = ranked, []

    def age(line: outbox.TargetBacklog) -> float:
        return max(0.0, (now - line.oldest).total_seconds()) if line.oldest else 0.0

    found = {(line.tenant, line.target): (line.backlog, age(line), line.dead) for line in own}
    if rest:
        found[(OTHER, OTHER)] = (
            sum(line.backlog for line in rest),
            max(age(line) for line in rest),
            sum(line.dead for line in rest),
        )
    return found


_WRITES = {"POST": "create", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}
# Label values come from fixed sets, so junk requests cannot grow the metrics document: a
# method the service does not serve counts as `other`, an unknown path as `<unmatched>`.
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
_RESOURCES = {"Users": "User", "Groups": "Group"}
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})

# --------------------------------------------------------------------------------------------
# Logging

_SECRETS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;]+"), r"\1 [redacted]"),
    (re.compile(r"lmsscim_[A-Za-z0-9_\-]+"), "lmsscim_[redacted]"),
    (
        re.compile(r"(?i)(['\"]?password['\"]?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,}]+)"),
        r"\1[redacted]",
    ),
    (re.compile(r"\$argon2[a-z]*\$[^\s'\"]+"), "$argon2[redacted]"),
)


def redact(text: str) -> str:
    """Blank anything that looks like a secret (defence in depth: nothing should log one)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the request fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """`LOG_FORMAT=text`: the classic line, request fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", {})
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(line)


# The slug of the tenant the code at hand works for, as its log lines name it (None: no tenant
# decided yet, or none at all).
_LOGGED_TENANT: ContextVar[str | None] = ContextVar("lms_scim_logged_tenant", default=None)
_LOGGED_TENANT_RESET = "logged_tenant_reset"  # where `g` keeps the reset point


def log_tenant(slug: str) -> None:
    """From here to the end of the request, every line it logs (its request line too) names
    tenant `slug`: called where a request's tenant is decided (a SCIM token or OAuth client
    accepted, an `/admin` page entered)."""
    token = _LOGGED_TENANT.set(slug)
    g.setdefault(_LOGGED_TENANT_RESET, token)  # the first: resetting to it undoes any later


def _forget_tenant(_exc: BaseException | None) -> None:
    token = g.pop(_LOGGED_TENANT_RESET, None)
    if token is not None:
        try:
            _LOGGED_TENANT.reset(token)
        except ValueError:  # ended in another contextvars.Context than it began in
            _LOGGED_TENANT.set(None)


@contextlib.contextmanager
def tenant_logged(slug: str | None) -> Iterator[None]:
    """Lines logged inside the block name tenant `slug` (a relay turn, a CLI command)."""
    token = _LOGGED_TENANT.set(slug)
    try:
        yield
    finally:
        _LOGGED_TENANT.reset(token)


class TenantField(logging.Filter):
    """Adds `tenant` to every record logged while the code works for a known tenant, unless
    the record names one itself: the one place log lines get their tenant."""

    def filter(self, record: logging.LogRecord) -> bool:
        slug = _LOGGED_TENANT.get()
        if slug is not None:
            fields = getattr(record, "fields", {})
            if "tenant" not in fields:
                record.fields = {**fields, "tenant": slug}
        return True


def configure_logging(config: Config, stream: Any = None) -> None:
    """Send every log record to `stream` (stderr) in the configured format, with the tenant
    at hand (idempotent)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "lms_scim", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter())
    handler.addFilter(TenantField())
    handler.lms_scim = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(config.log_level)


# --------------------------------------------------------------------------------------------
# Requests


def _route() -> str:
    """The route template (`/scim/v2/Users/<user_id>`): bounded label values, no ids."""
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


def _started() -> None:
    g.started = time.perf_counter()


def _resource(route: str) -> str | None:
    """`User` or `Group` for a route under either base URL (`/scim/v2`, `/t/<slug>/scim/v2`)."""
    _, found, rest = route.partition("/scim/v2/")
    return _RESOURCES.get(rest.split("/", 1)[0]) if found else None


def _scim_tenant() -> str | None:
    """The slug of the tenant a SCIM request worked for (its state is kept in `g` once its
    token was accepted, `app.scim`): the metrics' `tenant` label."""
    state = g.get("tenant_state")
    return None if state is None else state.slug


def _count(route: str, method: str, status: int, elapsed: float, labelled: str | None) -> None:
    """Requests, latency, database errors and provisioning writes; `labelled` is the tenant
    label, given only when `METRICS_TENANT_LABEL` is on (one series per tenant: cardinality is
    the operator's call)."""
    label = method if method in _METHODS else "other"
    REQUESTS.inc(labelled, label, route, str(status))
    LATENCY.labels(label, route).observe(elapsed)
    if "database_error" in g:
        DATABASE_ERRORS.labels(g.database_error).inc()
    resource = _resource(route)
    if resource and method in _WRITES and 200 <= status < 300 and ".search" not in route:
        OPERATIONS.inc(labelled, resource, _WRITES[method])


def _finished(response: Response, tenant_label: bool) -> Response:
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    route, method, status = _route(), request.method, response.status_code
    _count(route, method, status, elapsed, _scim_tenant() if tenant_label else None)
    principal = g.get("principal")
    # Probes and scrapes arrive every few seconds: kept out of the INFO log.
    level = logging.INFO if route not in _QUIET else logging.DEBUG
    REQUEST_LOG.log(
        level,
        "%s %s %s",
        method,
        route,
        status,
        extra={
            "fields": {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "request_id": g.get("request_id"),
                # The tenant the request worked for (`log_tenant`), null until it was decided.
                "tenant": _LOGGED_TENANT.get(),
                "token": principal.token_name if principal else None,
                "client": request.remote_addr,
            }
        },
    )
    return response


# --------------------------------------------------------------------------------------------
# /readyz and /metrics


def readyz() -> Response:
    """Ready when the database answers a `SELECT 1`; 503 with `Retry-After` otherwise."""
    try:
        db.ping()
    except Exception as exc:
        if not is_database_outage(exc):
            raise
        log.warning("readyz: database unavailable: %s", outage_cause(exc))
        DATABASE_ERRORS.labels(type(exc).__name__).inc()
        return Response("database unreachable\n", 503, {"Retry-After": "5"}, mimetype="text/plain")
    return Response("ready\n", mimetype="text/plain")


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def may_read_metrics(config: Config) -> bool:
    """`METRICS_TOKEN` as a bearer token, or (unset) a loopback client that no proxy relayed."""
    if config.metrics_token:
        supplied = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(supplied, f"Bearer {config.metrics_token}".encode())
    relayed = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    return _is_loopback(request.remote_addr) and not relayed


def metrics_text(multiproc_dir: str | None, relay: Collector | None = None) -> bytes:
    """The Prometheus exposition: all gunicorn workers' files, or this process's registry;
    and the relay's backlog, read now (`relay`: one app's, so it is not in the global
    registry)."""
    if multiproc_dir and os.path.isdir(multiproc_dir):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if relay is not None:
        extra = CollectorRegistry()
        extra.register(relay)
        text += generate_latest(extra)
    return text


def register(app: Flask, config: Config) -> None:
    """Request logging and metrics for every request; `/readyz` and `/metrics` (no SCIM token),
    with the relay's backlog."""
    configure_logging(config)
    app.before_request(_started)
    app.after_request(functools.partial(_finished, tenant_label=config.metrics_tenant_label))
    app.teardown_request(_forget_tenant)
    app.add_url_rule("/readyz", "readyz", readyz)

    def metrics() -> Response:
        if not may_read_metrics(config):
            return Response(
                "metrics: send METRICS_TOKEN as a bearer token, or ask from loopback\n",
                403,
                mimetype="text/plain",
            )
        text = metrics_text(config.prometheus_multiproc_dir, RelayBacklog(config))
        # content_type, not mimetype: CONTENT_TYPE_LATEST carries its own charset, and Flask
        # would append a second one to a text/* mimetype.
        return Response(text, content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics)
