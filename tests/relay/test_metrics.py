"""The relay's Prometheus metrics (issue 19 §2): backlog, oldest waiting change and dead letters
per LMS target, read at scrape time in one grouped query; delivery latency observed by the
relay, and served by `relay run --metrics-port`."""

from __future__ import annotations

import datetime as dt
import socket
import urllib.request
from typing import Any

import pytest
from flask import Flask
from playhouse.test_utils import count_queries
from prometheus_client.parser import text_string_to_metric_families

from app import observability
from app.relay.worker import Relay
from app.store import outbox, tenancy
from app.store.models import Outbox, utcnow
from tests.helpers import Scim, create_user, feed, run
from tests.relay.harness import B_URL, Clock, drain
from tests.relay.moodle_sim import TOKEN, MoodleSim

DEFAULT = ("default", "default")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return _samples(response.get_data(as_text=True))


def _value(found: dict[Any, float], name: str, tenant: str, target: str) -> float | None:
    return found.get((name, (("target", target), ("tenant", tenant))))


def _relay_series_of(found: dict[Any, float], tenant: str) -> list[Any]:
    """The relay's series for `tenant` (the process's other metrics may carry it from earlier
    requests, as counters do)."""
    return [k for k in found if k[0].startswith("lms_scim_relay") and ("tenant", tenant) in k[1]]


def test_backlog_oldest_and_dead_letters_per_target(
    app: Flask, scim: Scim, acme: Scim, moodle: MoodleSim, relay: Relay, clock: Clock
) -> None:
    found = before = _scrape(app)
    # The default tenant has an LMS: its (empty) queue is shown; acme has none: nothing shows.
    assert _value(found, "lms_scim_relay_backlog", *DEFAULT) == 0
    assert _value(found, "lms_scim_relay_oldest_waiting_seconds", *DEFAULT) == 0
    assert _value(found, "lms_scim_relay_dead_letters", *DEFAULT) == 0
    assert not _relay_series_of(found, "acme")

    for name in ("ann", "bob", "cy"):
        create_user(scim, f"{name}@example.com")
    create_user(acme, "dee@acme.example")  # acme has no LMS: not queued, not counted
    with tenancy.use(tenancy.DEFAULT_TENANT):
        first = Outbox.select().order_by(Outbox.id).first()
        Outbox.update(created=utcnow() - dt.timedelta(hours=1)).where(
            Outbox.id == first.id
        ).execute()
        outbox.dead(Outbox.select().order_by(Outbox.id.desc()).first(), "refused")
    with count_queries() as counted:
        found = _scrape(app)
    # One grouped query for every target's numbers, and no other.
    assert len(counted.get_queries()) == 1
    assert _value(found, "lms_scim_relay_backlog", *DEFAULT) == 2
    assert _value(found, "lms_scim_relay_dead_letters", *DEFAULT) == 1
    age = _value(found, "lms_scim_relay_oldest_waiting_seconds", *DEFAULT)
    assert age is not None
    assert 3590 < age < 3700
    assert not _relay_series_of(found, "acme")

    drain(relay, clock)
    found = _scrape(app)
    assert _value(found, "lms_scim_relay_backlog", *DEFAULT) == 0
    assert _value(found, "lms_scim_relay_oldest_waiting_seconds", *DEFAULT) == 0
    assert _value(found, "lms_scim_relay_dead_letters", *DEFAULT) == 1

    # Two rows delivered: two latencies observed, one of them about an hour (the histogram
    # is the process's: compared with the scrape before).
    def delta(name: str, *le: str) -> float:
        labels = (*((("le", le[0]),) if le else ()), ("target", "default"), ("tenant", "default"))
        return found.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert delta("lms_scim_relay_delivery_seconds_count") == 2
    assert delta("lms_scim_relay_delivery_seconds_bucket", "900.0") == 1
    assert delta("lms_scim_relay_delivery_seconds_bucket", "3600.0") == 2
    assert 3500 < delta("lms_scim_relay_delivery_seconds_sum") < 3700

    # Once acme has an LMS of its own, its (empty) queue has series too.
    run(app, "tenants", "set", "acme", f"LMS_URL={B_URL}")
    found = _scrape(app)
    assert _value(found, "lms_scim_relay_backlog", "acme", "default") == 0
    assert _value(found, "lms_scim_relay_dead_letters", "acme", "default") == 0


def test_series_are_bounded(
    app: Flask, scim: Scim, sites: tuple[MoodleSim, MoodleSim], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past RELAY_SERIES_LIMIT targets, the smallest backlogs are summed under `_other`: the
    label values are as many as the operator's targets, and never more than the limit."""
    create_user(scim, "ann@example.com")
    for name in ("b", "c"):
        result = feed(app, TOKEN + "\n", "lms", "add", name, "--url", B_URL)
        assert result.exit_code == 0, result.output
    create_user(scim, "bob@example.com")  # default: 2 waiting; b and c: 2 each (catch-up + bob)
    with tenancy.use(tenancy.DEFAULT_TENANT):
        outbox.dead(Outbox.select().order_by(Outbox.id.desc()).first(), "refused")  # c's bob
    monkeypatch.setattr(observability, "RELAY_SERIES_LIMIT", 2)
    found = _scrape(app)
    shown = {
        dict(labels)["target"]: value
        for (name, labels), value in found.items()
        if name == "lms_scim_relay_backlog"
    }
    # Two series at most: the largest backlog (ties: the older target), and the rest summed.
    assert shown == {"default": 2, "_other": 3}
    assert _value(found, "lms_scim_relay_dead_letters", "_other", "_other") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_relay_run_serves_its_own_metrics(app: Flask, scim: Scim, moodle: MoodleSim) -> None:
    create_user(scim, "ann@example.com")
    port = _free_port()
    result = run(app, "relay", "run", "--once", "--metrics-port", str(port))
    assert f"relay: metrics on http://127.0.0.1:{port}/metrics" in result.output
    assert moodle.count("core_user_create_users") == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        found = _samples(answer.read().decode())
    assert (_value(found, "lms_scim_relay_delivery_seconds_count", *DEFAULT) or 0) >= 1
    assert _value(found, "lms_scim_relay_backlog", *DEFAULT) == 0
