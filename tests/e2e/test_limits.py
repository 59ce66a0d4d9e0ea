"""Limits against the real server, over real sockets (issue 15):

- the bad-token brake: an IdP keeps being served while a guesser from its address is braked,
  long after the IdP's token left the token cache (SQLite and PostgreSQL);
- request bodies: `Transfer-Encoding: chunked` bodies are bounded by `MAX_BODY_BYTES` like those
  with a `Content-Length`, and a client that sends an oversized body whole before it reads
  (`http.client`, `urllib`) reads the 413 instead of a broken pipe; an endless body is cut off
  after a bounded amount;
- the SQLite database, its `-wal` and `-shm` files and `var/` are private to the owner.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.live import ERROR, SCIM_MEDIA_TYPE, LiveServer, Servers, unique_name, user_body

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
MIB = 1024 * 1024


def _scim_error(status: int, content_type: str | None, body: bytes) -> dict[str, Any]:
    assert (content_type or "").split(";")[0].strip() == SCIM_MEDIA_TYPE, body[:200]
    error = json.loads(body)
    assert error["schemas"] == [ERROR]
    assert error["status"] == str(status)
    return error


# --------------------------------------------------------------------------------------------
# The bad-token brake


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_idp_is_served_throughout_while_a_guesser_from_its_address_is_braked(
    servers: Servers, backend: str
) -> None:
    """The IdP sends its valid token every 0.3 s while 200 bad tokens arrive from the same
    address (127.0.0.1, as behind a proxy with TRUSTED_PROXY_HOPS=0). The guesses outlast the
    token cache several times over, so a brake that spares only cached tokens would refuse the
    IdP; every IdP request must get 200."""
    # A short cache: the guessing lasts many cache lifetimes (the default, 5 s, would only
    # make the test slower; the brake must spare a valid token whatever the cache time).
    server = servers.launch(backend, name=f"brake-{backend}", env={"TOKEN_CACHE_SECONDS": "1"})
    done = threading.Event()
    idp: Counter[int] = Counter()
    guesses: Counter[int] = Counter()
    lock = threading.Lock()

    def guesser(count: int) -> None:
        with requests.Session() as session:
            for _ in range(count):
                headers = {"Authorization": f"Bearer lmsscim_{uuid.uuid4().hex}"}
                answer = session.get(f"{server.scim_url}/Users", headers=headers, timeout=30)
                with lock:
                    guesses[answer.status_code] += 1
                time.sleep(0.04)  # ~5 s of guessing in all: five cache lifetimes at least

    def identity_provider() -> None:
        with requests.Session() as session:
            session.headers.update(server.headers())
            while True:
                stop = done.is_set()
                answer = session.get(f"{server.scim_url}/Users?count=1", timeout=30)
                idp[answer.status_code] += 1
                if stop:
                    return
                time.sleep(0.3)

    threads = [threading.Thread(target=guesser, args=(100,)) for _ in range(2)]
    watcher = threading.Thread(target=identity_provider)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    watcher.join(timeout=60)
    assert sum(guesses.values()) == 200
    assert set(guesses) <= {401, 429}, guesses
    assert guesses[429] > 0, f"the brake never engaged: {guesses}"
    assert set(idp) == {200}, f"the IdP was refused: {idp}"
    assert idp[200] >= 10, idp


# --------------------------------------------------------------------------------------------
# Request bodies


@pytest.fixture(scope="module")
def server(servers: Servers) -> LiveServer:
    """One SQLite server for the body tests: they are about HTTP, not the database."""
    return servers.launch("sqlite", name="bodies")


def _chunks(first: bytes, filler: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """`first`, then `filler` bytes of spaces, as a generator: requests sends it chunked."""
    yield first
    while filler > 0:
        piece = min(size, filler)
        filler -= piece
        yield b" " * piece


def test_a_chunked_body_over_max_body_bytes_is_a_413(server: LiveServer) -> None:
    """Valid JSON followed by 3 MiB of spaces, chunked: over the 1 MiB limit like it would be
    with a Content-Length (before: the body was cut at 1 MiB, still parsed, and accepted)."""
    name = unique_name()
    body = json.dumps(user_body(name)).encode()
    answer = requests.post(
        f"{server.scim_url}/Users",
        data=_chunks(body, 3 * MIB),
        headers=server.headers(),
        timeout=60,
    )
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 413, answer.text[:300]
    _scim_error(413, answer.headers.get("Content-Type"), answer.content)
    assert server.query("SELECT COUNT(*) FROM lms_user WHERE user_name = %s", name) == [(0,)]
    # Within the limit, chunked is served like any other body, on the same server.
    within = requests.post(
        f"{server.scim_url}/Users",
        data=_chunks(body, MIB // 2),
        headers=server.headers(),
        timeout=60,
    )
    assert within.status_code == 201, within.text[:300]


@pytest.mark.parametrize("client", ["http.client", "urllib"])
def test_a_client_sending_8_mib_reads_the_413(server: LiveServer, client: str) -> None:
    """A client that writes its whole body before reading the answer (the standard library's)
    gets the 413, not a broken pipe: the server reads and discards a bounded amount first."""
    body = json.dumps(user_body(unique_name())).encode() + b" " * (8 * MIB)
    if client == "http.client":
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.request("POST", "/scim/v2/Users", body=body, headers=server.headers())
            answer = connection.getresponse()
            status, content_type = answer.status, answer.getheader("Content-Type")
            content = answer.read()
            # The whole body was read, so the connection stays good for the next request.
            connection.request("GET", "/scim/v2/ServiceProviderConfig", headers=server.headers())
            assert connection.getresponse().status == 200
        finally:
            connection.close()
    else:
        import urllib.error
        import urllib.request

        sent = urllib.request.Request(  # noqa: S310 - a fixed http URL on loopback
            f"{server.scim_url}/Users", data=body, headers=server.headers(), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(sent, timeout=60)  # noqa: S310
        status = refused.value.code
        content_type, content = refused.value.headers.get("Content-Type"), refused.value.read()
    assert status == 413
    error = _scim_error(413, content_type, content)
    assert "larger" in error["detail"]


def test_an_endless_body_is_cut_off_after_a_bounded_amount(server: LiveServer) -> None:
    """A client that never stops sending is answered (or cut off) after a bounded amount, not
    read forever: the discarding has a ceiling."""
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        piece = b" " * (256 * 1024)
        while sent < 512 * MIB:  # a safety stop far above any bound the server may use
            sent += len(piece)
            yield piece

    try:
        answer = requests.post(
            f"{server.scim_url}/Users", data=endless(), headers=server.headers(), timeout=60
        )
        assert answer.status_code == 413
    except requests.ConnectionError:
        pass  # cut off: what a server must do past its bound
    assert sent < 128 * MIB, f"the server read {sent // MIB} MiB"


# --------------------------------------------------------------------------------------------
# Files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_files_and_var_are_private_to_the_owner(
    servers: Servers, tmp_path: Path
) -> None:
    """`make run` on a fresh checkout: `lms-scim db upgrade` creates var/ and the database,
    the workers the WAL files; with the usual umask 022 none may be readable by others."""
    var = tmp_path / "var"
    database = var / "lms-scim.db"
    previous = os.umask(0o022)
    try:
        server = servers.launch(
            "sqlite",
            (f"sqlite:///{database}", None),
            name="files",
            env={"SECRET_KEY_FILE": str(var / "secret_key")},
        )
    finally:
        os.umask(previous)
    created = requests.post(
        f"{server.scim_url}/Users",
        json=user_body(unique_name()),
        headers=server.headers(),
        timeout=30,
    )
    assert created.status_code == 201
    files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    assert all(path.exists() for path in files), sorted(p.name for p in var.iterdir())
    assert _mode(var) == 0o700
    for path in [*files, var / "secret_key"]:
        assert _mode(path) & 0o077 == 0, f"{path.name}: {oct(_mode(path))}"
