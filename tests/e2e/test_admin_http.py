"""`/admin` over real HTTP (gunicorn, SQLite and PostgreSQL): what only the bytes on the wire
show — a CR or LF in `next=`, a cookie replayed after sign-out, the cookie's `Secure` flag behind
a trusted proxy that terminated TLS, and under the Procfile's `web:` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.live import LiveServer, Servers, Visitor
from tests.helpers import OPERATOR, PASSWORD

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HTTPS_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.20"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def admin_server(request: pytest.FixtureRequest, servers: Servers) -> LiveServer:
    """A server behind one trusted proxy hop (`TRUSTED_PROXY_HOPS=1`), with an operator."""
    server = servers.launch(request.param, name=f"admin-{request.param}",
                            env={"TRUSTED_PROXY_HOPS": "1"})  # fmt: skip
    server.cli("operators", "create", OPERATOR, "--password", PASSWORD)
    return server


@pytest.mark.parametrize(
    "target",
    ["/admin/%0d%0aSet-Cookie:%20evil=1", "/admin/users%0a", "%0d%0a/admin/", "/admin/%0d"],
)
def test_a_cr_or_lf_in_next_never_gives_a_500(admin_server: LiveServer, target: str) -> None:
    visitor = Visitor(admin_server)
    response = visitor.sign_in(f"?next={target}")
    assert response.status_code == 302, response.text[:500]
    assert response.headers["Location"] in ("/admin/", f"{admin_server.base_url}/admin/")
    assert "evil" not in response.headers.get("Set-Cookie", "")
    # Signed in already, the sign-in page sends the visitor on the same way.
    again = visitor.request("GET", f"/admin/login?next={target}")
    assert again.status_code == 302
    assert again.headers["Location"] in ("/admin/", f"{admin_server.base_url}/admin/")
    assert visitor.sign_out().status_code == 302


def test_a_cookie_replayed_after_sign_out_is_refused(admin_server: LiveServer) -> None:
    visitor = Visitor(admin_server)
    assert visitor.sign_in().status_code == 302
    assert visitor.signed_in()
    stolen = visitor.cookie
    assert visitor.sign_out().status_code == 302
    replay = Visitor(admin_server)
    replay.cookie = stolen
    assert not replay.signed_in()


def test_the_cookie_is_secure_when_a_trusted_proxy_says_https(admin_server: LiveServer) -> None:
    behind_tls = Visitor(admin_server, **HTTPS_PROXY)
    assert behind_tls.sign_in().status_code == 302
    assert behind_tls.set_cookies
    assert all("; Secure" in cookie for cookie in behind_tls.set_cookies), behind_tls.set_cookies
    assert behind_tls.signed_in()
    # Plain http on loopback (HOST=127.0.0.1), as `make run` serves: not Secure, or it breaks.
    local = Visitor(admin_server)
    assert local.sign_in().status_code == 302
    assert not any("Secure" in cookie for cookie in local.set_cookies), local.set_cookies


def test_the_procfile_web_process_sets_secure_cookies(servers: Servers) -> None:
    """The Procfile's `web:` line as a platform runs it: HOST unset, PORT set, TLS in front."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    web = next(line for line in lines if line.startswith("web:")).removeprefix("web:").strip()
    server = servers.launch("sqlite", name="procfile", command=web, env={"HOST": ""})
    server.cli("operators", "create", OPERATOR, "--password", PASSWORD)
    visitor = Visitor(server)
    assert visitor.sign_in().status_code == 302
    assert all("; Secure" in cookie for cookie in visitor.set_cookies), visitor.set_cookies
