"""gunicorn serving TLS itself (`--certfile`/`--keyfile`), as docs/https.md tells: a SCIM
conversation over https verified against the certificate's CA, links that say https, and the
`/admin` cookie `Secure` because the request arrived over TLS (HOST is loopback here, where plain
http would not get it).

The CA and the certificate for 127.0.0.1 are made by trustme, in the test's own folder.
"""

from __future__ import annotations

import os

import pytest
import requests

from tests.e2e.live import CORE_USER, SCIM_MEDIA_TYPE, Servers, Visitor
from tests.helpers import OPERATOR, PASSWORD

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_gunicorn_serves_scim_over_tls(servers: Servers, backend: str) -> None:
    server = servers.tls(backend, f"tls-{backend}")  # docs/https.md's command, stopped in any case
    server.cli("db", "upgrade")
    server.token = server.cli("tokens", "create", "okta-tls").stdout.strip().splitlines()[-1]
    server.cli("operators", "create", OPERATOR, "--password", PASSWORD)
    server.start()
    server.wait_until_healthy()  # over https, verifying the certificate against its CA
    origin, ca, port = server.base_url, server.verify, server.port
    assert origin == f"https://127.0.0.1:{port}"

    headers = {**server.headers(), "Accept": SCIM_MEDIA_TYPE}
    body = {"schemas": [CORE_USER], "userName": "tls@example.com", "active": True}
    created = requests.post(f"{origin}/scim/v2/Users", json=body, headers=headers,
                            verify=ca, timeout=10)  # fmt: skip
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["meta"]["location"] == f"{origin}/scim/v2/Users/{user['id']}"
    assert created.headers["Location"] == user["meta"]["location"]
    found = requests.get(f"{origin}/scim/v2/Users", headers=headers, verify=ca, timeout=10,
                         params={"filter": 'userName eq "tls@example.com"'})  # fmt: skip
    assert [r["id"] for r in found.json()["Resources"]] == [user["id"]]

    # Really TLS: without the CA the certificate is refused, and plain http gets no answer.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{origin}/healthz", timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)

    # The /admin cookie is Secure because the request came over TLS, although HOST is loopback.
    visitor = Visitor(server)
    signed = visitor.sign_in()
    assert signed.status_code == 302, signed.text[:300]
    cookie = signed.headers["Set-Cookie"]
    assert "; Secure" in cookie, cookie
    assert "; HttpOnly" in cookie, cookie

    assert server.process is not None
    pid = server.process.pid
    server.stop()  # SIGTERM to its pid (and process group), as a deploy would
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no such process any more
