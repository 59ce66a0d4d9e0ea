"""Fixtures that start the real server the way `make run` does, against SQLite and PostgreSQL
(the machinery is in tests/e2e/live.py).

Each test module gets its own server on a free port with a fresh database. PostgreSQL runs use a
schema of their own, dropped afterwards, and are skipped loudly when the server is unreachable —
unless REQUIRE_POSTGRES=1, where an unreachable server fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.live import SCIM_MEDIA_TYPE, LiveServer, Servers, servers_in


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Start servers as a test module needs them; all are stopped when the module ends."""
    with servers_in(tmp_path_factory.mktemp("e2e-servers")) as started:
        yield started


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Migrate, issue a token, start gunicorn and wait for /healthz; always stop it afterwards."""
    with servers_in(tmp_path_factory.mktemp(f"e2e-{request.param}")) as started:
        yield started.launch(request.param, name="server")


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[requests.Session]:
    """A session that speaks SCIM to the live server (token, media type), closed afterwards."""
    session = requests.Session()
    session.headers.update(
        {"Authorization": f"Bearer {live_server.token}", "Accept": SCIM_MEDIA_TYPE}
    )
    yield session
    session.close()


CONFORMANCE_NOTES = pytest.StashKey[list[str]]()


@pytest.fixture
def conformance_notes(request: pytest.FixtureRequest) -> list[str]:
    """Lines printed in the terminal summary, whether the test passes or fails."""
    return request.config.stash.setdefault(CONFORMANCE_NOTES, [])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    notes = config.stash.get(CONFORMANCE_NOTES, [])
    if notes:
        terminalreporter.section("scim2-tester conformance")
        for line in notes:
            terminalreporter.write_line(line)
