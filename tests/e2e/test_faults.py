"""Faults against the real server: kill -9 in a write burst, a database outage under load, and
SIGTERM while requests are in flight. Every check reads the database itself.

- kill -9 of one worker, then of the whole instance (master and workers), while six clients
  create users (two e-mails and a phone number each) and add them to a group; after a restart
  every acknowledged write is there and nothing is half-written (SQLite and PostgreSQL);
- PostgreSQL "stopped" and "started" under load through a TCP proxy in front of it (the shared
  server itself is never touched): 503 with `Retry-After` in the SCIM envelope while it is down,
  and 2xx again by itself once it is back, with the same processes (no restart);
- SIGTERM while requests are half sent: they complete, and the instance then exits cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.live import (
    CORE_GROUP,
    ERROR,
    SCIM_MEDIA_TYPE,
    LiveServer,
    Servers,
    patch_body,
    user_body,
)
from tests.e2e.tcp_proxy import TcpProxy
from tests.helpers import PG_DSN

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
WAIT_SECONDS = 20.0


@dataclass
class WriteBurst:
    """Client threads writing as fast as the server answers, remembering what was acknowledged.

    Each write is a POST of a user with two e-mails and a phone number, then a PATCH adding it
    to one group. A request that got no answer (connection cut by a kill) is "unknown": it may
    or may not have been applied, but if it was, it must be whole.
    """

    server: LiveServer
    group_id: str
    limit: int = 600
    users: dict[str, str] = field(default_factory=dict)  # userName → id, 201 received
    members: set[str] = field(default_factory=set)  # user ids whose PATCH got 204
    unknown: int = 0
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def _send(self, method: str, path: str, body: Any) -> requests.Response | None:
        with self.lock:
            self.sent += 1
        try:
            answer = requests.request(
                method,
                f"{self.server.scim_url}{path}",
                json=body,
                headers=self.server.headers(),
                timeout=15,
            )
        except requests.RequestException:
            with self.lock:
                self.unknown += 1
            time.sleep(0.05)  # the instance is down or restarting
            return None
        with self.lock:
            self.statuses[answer.status_code] += 1
        return answer

    def _write(self, thread: int) -> None:
        for number in range(self.limit):
            if self.stop.is_set() or self.sent >= self.limit:
                return
            name = f"burst-{self.prefix}-{thread}-{number}@example.com"
            body = user_body(
                name,
                emails=[{"value": name, "type": "work"}, {"value": f"home-{name}", "type": "home"}],
                phoneNumbers=[{"value": f"+1555{thread}{number:05d}", "type": "work"}],
            )
            created = self._send("POST", "/Users", body)
            if created is None or created.status_code != 201:
                continue
            user_id = created.json()["id"]
            with self.lock:
                self.users[name] = user_id
            operation = {"op": "add", "path": "members", "value": [{"value": user_id}]}
            patch = patch_body(operation)
            added = self._send("PATCH", f"/Groups/{self.group_id}", patch)
            if added is not None and added.status_code == 204:
                with self.lock:
                    self.members.add(user_id)

    def start(self, threads: int = 6) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._write, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        return workers

    def wait_for(self, acknowledged: int) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(self.users) < acknowledged and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.users) >= acknowledged, f"only {len(self.users)} writes acknowledged"


def _check_nothing_lost_or_half_written(server: LiveServer, burst: WriteBurst) -> dict[str, int]:
    like = f"burst-{burst.prefix}-%"
    rows = server.query(
        "SELECT u.id, u.user_name,"
        " SUM(CASE WHEN v.attr = 'emails' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN v.attr = 'phoneNumbers' THEN 1 ELSE 0 END)"
        " FROM lms_user u LEFT JOIN user_value v ON v.user_id = u.id"
        " WHERE u.user_name LIKE %s GROUP BY u.id, u.user_name",
        like,
    )
    stored = {name: user_id for user_id, name, _, _ in rows}
    # Every acknowledged user is there, under the id the client was given.
    missing = {n: i for n, i in burst.users.items() if stored.get(n) != i}
    assert not missing, f"{len(missing)} acknowledged users lost: {list(missing)[:3]}"
    # Whatever is stored (acknowledged or not) is whole: both e-mails and the phone number.
    half = [
        (name, emails, phones) for _, name, emails, phones in rows if (emails, phones) != (2, 1)
    ]
    assert not half, f"half-written users: {half[:3]}"
    members = {
        user_id
        for (user_id,) in server.query(
            "SELECT user_id FROM membership WHERE group_id = %s", burst.group_id
        )
    }
    assert burst.members <= members, f"{len(burst.members - members)} acknowledged adds lost"
    dangling = server.query(
        "SELECT COUNT(*) FROM membership m LEFT JOIN lms_user u ON u.id = m.user_id"
        " LEFT JOIN lms_group g ON g.id = m.group_id WHERE u.id IS NULL OR g.id IS NULL"
    )
    assert dangling == [(0,)]
    return {
        "sent": burst.sent,
        "acknowledged users": len(burst.users),
        "acknowledged member adds": len(burst.members),
        "no answer (cut by a kill)": burst.unknown,
        "users found": len(stored),
        "members found": len(members),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_of_a_worker_and_of_the_instance_loses_no_acknowledged_write(
    servers: Servers, backend: str
) -> None:
    server = servers.launch(backend, name=f"kill-{backend}")
    group = requests.post(
        f"{server.scim_url}/Groups",
        json={"schemas": [CORE_GROUP], "displayName": f"burst-{uuid.uuid4().hex[:6]}"},
        headers=server.headers(),
        timeout=15,
    ).json()
    burst = WriteBurst(server, group["id"])
    writers = burst.start()
    try:
        burst.wait_for(40)
        victim = server.wait_for_workers(2)[0]
        os.kill(victim, signal.SIGKILL)  # one worker dies; the master starts another
        burst.wait_for(len(burst.users) + 40)
        assert victim not in server.wait_for_workers(2)
        server.kill()  # the whole instance: master and workers, mid-write
        server.start()
        server.wait_until_healthy()
        burst.wait_for(len(burst.users) + 40)
    finally:
        burst.stop.set()
        for writer in writers:
            writer.join(timeout=WAIT_SECONDS)
    figures = _check_nothing_lost_or_half_written(server, burst)
    assert not set(burst.statuses) - {201, 204}, burst.statuses
    print(f"\n[{backend}] kill -9 worker + instance: {figures}")


def _proxied_url(schema: str, port: int) -> str:
    parts = urlsplit(PG_DSN)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return f"{parts.scheme}://{netloc}{parts.path}?options=-csearch_path%3D{schema}"


@dataclass
class Probe:
    """One request of the load: when it was sent and answered, and what came back."""

    sent: float
    answered: float
    status: int
    body: dict[str, Any] | None
    retry_after: str | None


@pytest.mark.postgres
def test_a_database_outage_answers_503_and_heals_without_a_restart(servers: Servers) -> None:
    database = servers.database("postgres")
    parts = urlsplit(PG_DSN)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    assert database[1] is not None
    server = servers.launch(
        "postgres",
        database,
        name="outage",
        # The token cache would hide the outage from the first step of each request.
        env={"TOKEN_CACHE_SECONDS": "0"},
        url=_proxied_url(database[1], proxy.port),
    )
    workers_before = sorted(server.wait_for_workers(2))
    probes: list[Probe] = []
    stop = threading.Event()
    prefix = uuid.uuid4().hex[:8]

    def load(thread: int) -> None:
        for number in range(2000):
            if stop.is_set():
                return
            sent = time.monotonic()
            if number % 2:
                body = user_body(f"outage-{prefix}-{thread}-{number}@example.com")
                answer = requests.post(
                    f"{server.scim_url}/Users", json=body, headers=server.headers(), timeout=30
                )
            else:
                answer = requests.get(
                    f"{server.scim_url}/Users?count=1", headers=server.headers(), timeout=30
                )
            is_json = answer.headers.get("Content-Type", "").startswith(SCIM_MEDIA_TYPE)
            probes.append(
                Probe(
                    sent,
                    time.monotonic(),
                    answer.status_code,
                    answer.json() if is_json else None,
                    answer.headers.get("Retry-After"),
                )
            )
            time.sleep(0.01)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        down = time.monotonic()
        proxy.down()
        time.sleep(3.0)
        ready_during = requests.get(f"{server.base_url}/readyz", timeout=10)
        up = time.monotonic()
        proxy.up()
        time.sleep(3.0)
        ready_after = requests.get(f"{server.base_url}/readyz", timeout=10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=WAIT_SECONDS)
        proxy.down()
    before = [p for p in probes if p.answered < down]
    during = [p for p in probes if p.sent > down + 0.05 and p.answered < up]
    after = [p for p in probes if p.sent > up + 0.5]
    assert before, "no request completed before the outage"
    assert {p.status for p in before} <= {200, 201}, Counter(p.status for p in before)
    assert during, "no request was sent during the outage"
    for probe in during:
        assert probe.status == 503, probe
        assert probe.body is not None
        assert probe.body["schemas"] == [ERROR]
        assert probe.body["status"] == "503"
        assert probe.retry_after is not None
        assert int(probe.retry_after) > 0
    assert ready_during.status_code == 503
    assert ready_during.headers["Retry-After"]
    # Back by itself: the same master and workers, no 5xx once the database answers again.
    assert after, "no request was sent after the outage"
    assert {p.status for p in after} <= {200, 201}, Counter(p.status for p in after)
    assert ready_after.status_code == 200
    assert sorted(server.worker_pids()) == workers_before
    assert server.process is not None
    assert server.process.poll() is None
    statuses = Counter(p.status for p in probes)
    print(
        f"\n[postgres] outage: {len(probes)} requests ({len(during)} during the 3 s outage,"
        f" all 503), statuses {dict(statuses)}, proxy connections {proxy.connections}"
    )


def _half_sent_post(server: LiveServer, name: str) -> tuple[socket.socket, bytes]:
    """Open a connection and send a POST's headers and half its body; the rest is returned."""
    import json

    body = json.dumps(user_body(name)).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_SECONDS)
    head = (
        f"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {server.token}\r\nContent-Type: {SCIM_MEDIA_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock, body[len(body) // 2 :]


def _finish(sock: socket.socket, rest: bytes) -> int:
    """Send the rest of the body and read the status of the answer."""
    sock.sendall(rest)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return int(answer.split(b" ", 2)[1])


def test_sigterm_lets_in_flight_requests_finish(servers: Servers) -> None:
    server = servers.launch("sqlite", name="graceful")
    names = [f"graceful-{uuid.uuid4().hex[:8]}-{i}@example.com" for i in range(6)]
    in_flight = [_half_sent_post(server, name) for name in names]
    time.sleep(0.5)  # the workers have read the headers and wait for the rest of each body
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # the workers have stopped accepting and wait for what they hold
    assert server.process.poll() is None
    statuses = [_finish(sock, rest) for sock, rest in in_flight]
    assert statuses == [201] * len(names)
    assert server.process.wait(timeout=WAIT_SECONDS) == 0
    stored = server.query(
        "SELECT COUNT(*) FROM lms_user WHERE user_name IN (%s, %s, %s, %s, %s, %s)", *names
    )
    assert stored == [(len(names),)]
