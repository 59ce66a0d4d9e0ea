"""One relay process for every tenant, each to its own LMS: fairness (a hung LMS never delays
another tenant, a large backlog never starves a small one), where each tenant's users go, and
`relay status/run/retry` across tenants."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from app import observability, runtime
from app.relay.dispatch import Dispatcher
from app.relay.worker import relay_from
from app.store import tenancy
from app.store import tenants as tenant_store
from app.store.models import Outbox
from tests.helpers import Scim, create_group, create_user, feed, invoke, run
from tests.relay.harness import A_URL, B_URL, created_auth, looked_up, one_site_hung
from tests.relay.moodle_sim import TOKEN, MoodleSim


def _connect(app: Flask, slug: str, url: str) -> None:
    result = feed(app, TOKEN + "\n", "tenants", "set", slug, "LMS_TOKEN", f"LMS_URL={url}")
    assert result.exit_code == 0, result.output


@pytest.fixture
def two_lms(app: Flask, acme: Scim) -> None:
    _connect(app, "default", A_URL)
    _connect(app, "acme", B_URL)


def _dispatcher(app: Flask, batch: int = 50, **options: Any) -> Dispatcher:
    current = runtime.of(app)
    return Dispatcher(
        settings_for=current.tenant_settings,
        build=lambda settings: relay_from(settings, 2000, batch),
        **options,
    )


def _emails(site: MoodleSim) -> set[str]:
    return {u["email"] for u in site.users.values()}


def _waiting(tenant_id: int) -> list[Outbox]:
    with tenancy.use(tenant_id):
        return list(Outbox.select().where(Outbox.state == "pending"))


def test_a_hung_lms_never_delays_another_tenants_deliveries(
    app: Flask, scim: Scim, acme: Scim, sites: tuple[MoodleSim, MoodleSim], two_lms: None
) -> None:
    site_a, site_b = sites
    create_user(scim, "ann@a.example")
    create_user(acme, "bob@b.example")
    dispatcher = _dispatcher(app, workers=2, idle=0.05)
    with one_site_hung(dispatcher, site_a, lambda: "bob@b.example" in _emails(site_b)) as took:
        # B's user arrived while A's first call was still hanging: B never waited for A.
        assert _emails(site_b) == {"bob@b.example"}
        print(f"acme's user delivered in {took * 1000:.0f} ms while default's LMS hung")
    acme_id = tenant_store.by_slug("acme").id
    assert _waiting(acme_id) == []
    (kept,) = _waiting(tenancy.DEFAULT_TENANT)
    assert "no answer within" in kept.last_error
    assert _emails(site_a) == set()  # ann is waiting for her own LMS, not sent anywhere else


def test_turns_go_round_so_a_large_backlog_never_starves_a_small_one(
    app: Flask, scim: Scim, acme: Scim, sites: tuple[MoodleSim, MoodleSim], two_lms: None
) -> None:
    site_a, site_b = sites
    for n in range(12):
        create_user(scim, f"a{n}@a.example")
    create_user(acme, "bob@b.example")
    a_created_before_b: list[int] = []
    create_in_b = site_b.core_user_create_users

    def spy(**params: Any) -> Any:
        a_created_before_b.append(site_a.count("core_user_create_users"))
        return create_in_b(**params)

    site_b.core_user_create_users = spy  # type: ignore[method-assign]
    assert _dispatcher(app, batch=5, workers=1).run_due() == 13
    # One worker, batches of 5: A's first batch, then B's turn (not A's backlog first).
    assert a_created_before_b == [5]
    assert len(_emails(site_a)) == 12
    assert _emails(site_b) == {"bob@b.example"}


def test_a_tenant_never_inherits_the_environments_lms(
    app: Flask, acme: Scim, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    """LMS_URL/LMS_TOKEN of the environment are the default tenant's: acme's users must not
    land in another organisation's LMS. Acme without its own LMS has no relay: its changes are
    not queued, and once it gets one, `relay sync --all` starts it from the full state."""
    from tests.helpers import app_with

    configured = app_with(app, lms_url=A_URL, lms_token=TOKEN)
    create_user(acme, "bob@b.example")
    acme_id = tenant_store.by_slug("acme").id
    with configured.app_context():
        assert runtime.of(configured).tenant_settings(acme_id).lms_url is None
    shown = json.loads(run(configured, "tenants", "show", "acme", "--format", "json").output)
    assert shown["settings"]["LMS_URL"]["value"] is None
    summary = run(configured, "relay", "run", "--once").stdout
    assert "acme: relay not configured (no LMS)" in summary
    assert _emails(sites[0]) == set()
    _connect(configured, "acme", B_URL)
    runtime.of(configured).tenants.clear()
    run(configured, "relay", "run", "--once", "--tenant", "acme")
    assert _emails(sites[1]) == set()  # nothing was queued while acme had no LMS
    synced = run(configured, "relay", "sync", "--all", "--tenant", "acme").stdout
    assert "default: queued 1 change(s) for a full reconciliation (1 users" in synced
    run(configured, "relay", "run", "--once", "--tenant", "acme")
    assert _emails(sites[1]) == {"bob@b.example"}


def test_a_tenants_own_match_field_auth_and_role_ids_are_what_its_deliveries_use(
    app: Flask, scim: Scim, acme: Scim, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    """`tenants set acme LMS_MATCH_FIELD=username LMS_AUTH=oauth2 LMS_ROLE_IDS=…` (its token
    from stdin): the relay looks acme's accounts up by username, creates them with auth oauth2
    and enrols acme's teachers as Moodle role 4, while the default tenant, with the
    environment's settings (e-mail, manual, teacher=3), does as before. A later `tenants set`
    is what the next delivery uses. Read from the calls each simulated site recorded."""
    site_a, site_b = sites
    _connect(app, "default", A_URL)
    own = ("LMS_MATCH_FIELD=username", "LMS_AUTH=oauth2", "LMS_ROLE_IDS=student=5,teacher=4")
    result = feed(app, TOKEN + "\n", "tenants", "set", "acme", "LMS_TOKEN", f"LMS_URL={B_URL}",
                  *own)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    carol_b = site_b.add_user("carol", "carol.old@b.example")  # acme's account, by username
    carol = create_user(acme, "carol", emails=[{"value": "carol@b.example", "primary": True}])
    bob = create_user(acme, "bob@b.example")
    ann = create_user(scim, "ann@a.example")
    create_group(acme, "Staff", carol["id"], bob["id"])
    create_group(scim, "Staff", ann["id"])
    for slug in ("acme", "default"):
        run(app, "enrolments", "add", "Staff", "101", "--role", "teacher", "--tenant", slug)
    _dispatcher(app).run_due()

    assert looked_up(site_b) == [("username", ["carol"]), ("username", ["bob@b.example"])]
    assert created_auth(site_b) == {"bob@b.example": "oauth2"}  # carol matched, not created
    assert site_b.users[carol_b]["email"] == "carol@b.example"  # the profile follows
    # acme's teacher=4: the simulated Moodle's role 4 is "teacher", its role 3 "editingteacher".
    assert sorted(site_b.state()["enrolments"]) == [
        ("bob@b.example", 101, "teacher"),
        ("carol", 101, "teacher"),
    ]
    assert looked_up(site_a) == [("email", ["ann@a.example"])]
    assert created_auth(site_a) == {"ann@a.example": "manual"}
    assert site_a.state()["enrolments"] == [("ann@a.example", 101, "editingteacher")]

    run(app, "tenants", "set", "acme", "LMS_MATCH_FIELD=email", "LMS_AUTH=saml2")
    create_user(acme, "dan@b.example")
    _dispatcher(app).run_due()
    assert looked_up(site_b)[-1] == ("email", ["dan@b.example"])
    assert created_auth(site_b)["dan@b.example"] == "saml2"
    assert created_auth(site_a) == {"ann@a.example": "manual"}  # nothing of acme's went there


def test_relay_commands_across_tenants(
    app: Flask, scim: Scim, acme: Scim, sites: tuple[MoodleSim, MoodleSim], two_lms: None
) -> None:
    create_user(scim, "ann@a.example")
    create_user(acme, "bad name", emails=[{"value": "bad@b.example"}])
    out = run(app, "relay", "run", "--once").stdout
    assert "default: backlog: 0 (0 retrying); failures: 0" in out
    assert "acme: backlog: 0 (0 retrying); failures: 1" in out
    assert _emails(sites[0]) == {"ann@a.example"}

    overview = run(app, "relay", "status").stdout.splitlines()
    assert overview[0].split()[:5] == ["tenant", "LMS", "backlog", "retrying", "failures"]
    assert overview[1].split()[:5] == ["default", A_URL, "0", "0", "0"]
    assert overview[2].split()[:5] == ["acme", B_URL, "0", "0", "1"]
    lines = json.loads(run(app, "relay", "status", "--format", "json").stdout)["tenants"]
    assert [(t["tenant"], t["failures"]) for t in lines] == [("default", 0), ("acme", 1)]
    assert lines[0]["lastDelivery"]
    assert lines[1]["lastDelivery"] is None  # acme's only change failed

    detail = json.loads(run(app, "relay", "status", "--tenant", "acme", "--format", "json").stdout)
    assert (detail["tenant"], detail["lms"], detail["failures"]) == ("acme", B_URL, 1)
    assert "Invalid username" in detail["deadLetters"][0]["reason"]

    refused = invoke(app, "relay", "retry", "--all")
    assert refused.exit_code != 0
    assert "name one with --tenant (default, acme)" in refused.output
    assert "requeued 1" in run(app, "relay", "retry", "--all", "--tenant", "acme").stdout
    assert "requeued 0" in run(app, "relay", "retry", "--all", "--tenant", "default").stdout


# -- a real `lms-scim relay run` process, one LMS hung at the socket ---------------------------


class _SiteHandler(BaseHTTPRequestHandler):
    """A `MoodleSim` over real HTTP (the relay process cannot see `responses`)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:  # type: ignore[attr-defined]
            status, headers, text = self.server.site._handle(SimpleNamespace(body=body))  # type: ignore[attr-defined]
        data = text.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def served_site() -> Iterator[tuple[MoodleSim, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SiteHandler)
    server.site = MoodleSim()  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.site, f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hung_site() -> Iterator[str]:
    """A site that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_relay_process_delivers_one_tenant_while_anothers_lms_hangs(
    tmp_path: Path, served_site: tuple[MoodleSim, str], hung_site: str
) -> None:
    site_b, b_url = served_site
    command = Path(sys.executable).parent / "lms-scim"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "SECRET_KEY": "relay-tenants-test",
        "LMS_TIMEOUT_MS": "8000",
    }

    def cli(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [command, *args], env=env, input=stdin, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("db", "upgrade")
    cli("tenants", "create", "acme", "--name", "Acme")
    cli("tenants", "set", "default", f"LMS_URL={hung_site}", "LMS_TOKEN", stdin=TOKEN + "\n")
    cli("tenants", "set", "acme", f"LMS_URL={b_url}", "LMS_TOKEN", stdin=TOKEN + "\n")
    cli("users", "add", "ann", "--email", "ann@a.example", "--tenant", "default")
    cli("users", "add", "bob", "--email", "bob@b.example", "--tenant", "acme")

    worker = subprocess.Popen(
        [command, "relay", "run", "--idle", "0.2"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        started = time.monotonic()
        while not _emails(site_b) and time.monotonic() - started < 30 and worker.poll() is None:
            time.sleep(0.05)
        delivered_in = time.monotonic() - started
        assert _emails(site_b) == {"bob@b.example"}
        # Default's first call has not even timed out yet: acme never waited for it.
        hung = json.loads(cli("relay", "status", "--tenant", "default", "--format", "json"))
        assert (hung["backlog"], hung["retrying"]) == (1, 0)
        print(f"acme delivered {delivered_in:.2f} s after the relay started; default's LMS hung")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert f"relay: delivering acme to {b_url}" in stderr
    assert f"relay: delivering default to {hung_site}" in stderr


def test_the_relays_log_lines_name_the_tenant(
    app: Flask, scim: Scim, acme: Scim, sites: tuple[MoodleSim, MoodleSim], two_lms: None
) -> None:
    """A delivery's lines (a retry, a dead letter) carry the tenant's slug, set once per turn
    (`Dispatcher._turn`), as the relay process writes them."""
    site_a, site_b = sites
    create_user(scim, "ann@a.example")
    create_user(acme, "bob@b.example")
    site_a.fail("core_user_get_users_by_field", "http503")  # default's: retried later
    site_b.fail("core_user_get_users_by_field", "invalidparameter")  # acme's: a dead letter
    config = runtime.of(app).config
    buffer = io.StringIO()
    observability.configure_logging(config, stream=buffer)
    try:
        _dispatcher(app, workers=2).run_due()
    finally:
        observability.configure_logging(config)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    relayed = [line for line in lines if line["logger"].startswith("app.relay")]
    assert {(line["level"], line["tenant"]) for line in relayed} == {
        ("WARNING", "default"),
        ("ERROR", "acme"),
    }, relayed
    assert any("will be retried" in line["message"] for line in relayed)
    assert any("dead letter" in line["message"] for line in relayed)
