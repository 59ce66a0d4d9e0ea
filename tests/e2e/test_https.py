"""gunicorn serving TLS itself (`--certfile`/`--keyfile`), as docs/https.md tells: a SCIM
conversation over https verified against the certificate's CA, links that say https, and the
`/admin` cookie `Secure` because the request arrived over TLS (HOST is loopback here, where plain
http would not get it).

The CA and the certificate for 127.0.0.1 are made by trustme, in the test's own folder.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests
import trustme

from tests.e2e.live import (
    CORE_USER,
    SCIM_MEDIA_TYPE,
    STARTUP_SECONDS,
    LiveServer,
    Servers,
    _server_env,
    free_port,
)
from tests.helpers import OPERATOR, PASSWORD

pytestmark = pytest.mark.e2e


def _wait_for_tls(server: LiveServer, url: str, ca: Path) -> None:
    assert server.process is not None
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log.read_text(errors="replace")[-2000:]
        try:
            if requests.get(f"{url}/healthz", verify=str(ca), timeout=1).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    pytest.fail(f"no https answer within {STARTUP_SECONDS} s")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_gunicorn_serves_scim_over_tls(servers: Servers, tmp_path: Path, backend: str) -> None:
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    ca, certfile, keyfile = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(certfile), append=True)
    issued.private_key_pem.write_to_path(str(keyfile))

    database_url, schema = servers.database(backend)
    port = free_port()
    # docs/https.md's command: gunicorn.conf.py binds HOST:PORT; exec, so the pid is gunicorn's.
    command = f"exec gunicorn --certfile {certfile} --keyfile {keyfile} 'app:create_app()'"
    env = _server_env(database_url, port, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m")})
    server = LiveServer(backend, database_url, port, "", env, tmp_path, None, schema,
                        name=f"tls-{backend}", command=command)  # fmt: skip
    servers.started.append(server)  # stopped at the end of the module in any case
    server.cli("db", "upgrade")
    server.token = server.cli("tokens", "create", "okta-tls").stdout.strip().splitlines()[-1]
    server.cli("operators", "create", OPERATOR, "--password", PASSWORD)
    server.start()
    origin = f"https://127.0.0.1:{port}"
    _wait_for_tls(server, origin, ca)

    headers = {**server.headers(), "Accept": SCIM_MEDIA_TYPE}
    body = {"schemas": [CORE_USER], "userName": "tls@example.com", "active": True}
    created = requests.post(f"{origin}/scim/v2/Users", json=body, headers=headers,
                            verify=str(ca), timeout=10)  # fmt: skip
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["meta"]["location"] == f"{origin}/scim/v2/Users/{user['id']}"
    assert created.headers["Location"] == user["meta"]["location"]
    found = requests.get(f"{origin}/scim/v2/Users", headers=headers, verify=str(ca), timeout=10,
                         params={"filter": 'userName eq "tls@example.com"'})  # fmt: skip
    assert [r["id"] for r in found.json()["Resources"]] == [user["id"]]

    # Really TLS: without the CA the certificate is refused, and plain http gets no answer.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{origin}/healthz", timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)

    # The /admin cookie is Secure because the request came over TLS, although HOST is loopback.
    page = requests.get(f"{origin}/admin/login", verify=str(ca), timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text[:300]
    form = {"csrf": csrf[1], "name": OPERATOR, "password": PASSWORD}
    signed = requests.post(f"{origin}/admin/login", data=form, cookies=page.cookies,
                           verify=str(ca), allow_redirects=False, timeout=10)  # fmt: skip
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
