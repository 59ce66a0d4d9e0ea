"""Limits against the real server, over real sockets (issue 15):

- the bad-token brake: an IdP keeps being served while a guesser from its address is braked,
  long after the IdP's token left the token cache (SQLite and PostgreSQL);
- the SQLite database, its `-wal` and `-shm` files and `var/` are private to the owner.
"""

from __future__ import annotations

import os
import stat
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.e2e.live import Servers, unique_name, user_body

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


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
