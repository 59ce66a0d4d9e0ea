"""`/admin` over real HTTP (gunicorn, SQLite and PostgreSQL): what only the bytes on the wire
show — a CR or LF in `next=`, a cookie replayed after sign-out, the cookie's `Secure` flag behind
a trusted proxy that terminated TLS, and under the Procfile's `web:` command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.live import LiveServer, Servers
from tests.helpers import OPERATOR, PASSWORD

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COOKIE = "lms_scim_admin"
HTTPS_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.20"}


class Visitor:
    """A browser on /admin that keeps the session cookie itself: `requests` would not send a
    `Secure` cookie back over plain http, and the tests need to replay old cookies."""

    def __init__(self, server: LiveServer, **headers: str) -> None:
        self.base_url = server.base_url
        self.headers = headers
        self.cookie: str | None = None
        self.set_cookies: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(self.headers)
        if self.cookie:
            headers["Cookie"] = f"{COOKIE}={self.cookie}"
        response = requests.request(
            method,
            f"{self.base_url}{path}",
            headers=headers,
            allow_redirects=False,
            timeout=15,
            **kwargs,
        )
        set_cookie = response.headers.get("Set-Cookie")
        if set_cookie:
            self.set_cookies.append(set_cookie)
            match = re.match(rf"{COOKIE}=([^;]*)", set_cookie)
            assert match, set_cookie
            self.cookie = match[1] or None
        return response

    def csrf(self, path: str = "/admin/login") -> str:
        page = self.request("GET", path)
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, f"{page.status_code}: {page.text[:500]}"
        return match[1]

    def sign_in(self, query: str = "") -> requests.Response:
        data = {"csrf": self.csrf(), "name": OPERATOR, "password": PASSWORD}
        return self.request("POST", f"/admin/login{query}", data=data)

    def sign_out(self) -> requests.Response:
        return self.request("POST", "/admin/logout", data={"csrf": self.csrf("/admin/")})

    def signed_in(self) -> bool:
        status = self.request("GET", "/admin/").status_code
        assert status in (200, 302)
        return status == 200


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
