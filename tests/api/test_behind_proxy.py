"""lms-scim behind one reverse proxy, as docs/https.md and its nginx and Caddy examples set it up
(`TRUSTED_PROXY_HOPS=1`, `SCIM_BASE_URL`): the request arrives from the proxy's address with the
headers the example configs set, and the service sees the IdP's address, answers with https links
on the public name, and sets the `/admin` cookie `Secure`.

The headers sent here are the ones `docs/examples/nginx.conf` sets (read from the file), so the
example and the test cannot drift apart.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import Scim, app_with, sign_in, user_body

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
PUBLIC = "https://lms.example.com"
PROXY = "10.0.0.2"  # the proxy's own address, what the service sees as the peer
IDP = "203.0.113.7"  # the IdP, as the proxy saw it
# What the IdP sent itself (the proxy appends the address it saw after it): never trusted.
SPOOFED = "198.51.100.99"


def nginx_headers() -> dict[str, str]:
    """`proxy_set_header NAME VALUE;` lines of the example, with nginx's variables filled in as
    for a request from IDP that came over https to lms.example.com with its own
    X-Forwarded-For."""
    text = (EXAMPLES / "nginx.conf").read_text(encoding="utf-8")
    values = {
        "$host": "lms.example.com",
        "$proxy_add_x_forwarded_for": f"{SPOOFED}, {IDP}",
        "$scheme": "https",
    }
    found = re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(\S+);", text, re.MULTILINE)
    return {name: values[value] for name, value in found}


class _Forwarded(FlaskClient):
    """A test client whose requests reach the app over plain http from the proxy, with the
    Host and forwarded headers of the nginx example."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("base_url", f"http://{nginx_headers()['Host']}")
        return super().open(*args, **kwargs)


def through_proxy(app: Flask) -> FlaskClient:
    """A client of `app` whose every request is as the proxy forwards it."""
    client = _Forwarded(app, app.response_class, use_cookies=True)
    client.environ_base.update(
        {"REMOTE_ADDR": PROXY}
        | {
            f"HTTP_{name.upper().replace('-', '_')}": value
            for name, value in nginx_headers().items()
            if name != "Host"
        }
    )
    return client


def test_the_examples_set_what_the_service_reads() -> None:
    assert set(nginx_headers()) == {"Host", "X-Forwarded-For", "X-Forwarded-Proto"}
    nginx = (EXAMPLES / "nginx.conf").read_text(encoding="utf-8")
    caddy = (EXAMPLES / "Caddyfile").read_text(encoding="utf-8")
    for example in (nginx, caddy):
        assert "TRUSTED_PROXY_HOPS=1" in example
        assert "SCIM_BASE_URL=https://lms.example.com/scim/v2" in example
        assert "127.0.0.1:8000" in example
    assert re.search(r"^\s*reverse_proxy 127\.0\.0\.1:8000$", caddy, re.MULTILINE)


@pytest.fixture
def proxied(app: Flask) -> Flask:
    return app_with(app, trusted_proxy_hops=1, scim_base_url=f"{PUBLIC}/scim/v2")


def _client_of_last_request(caplog: pytest.LogCaptureFixture) -> Any:
    records = [r for r in caplog.records if r.name == "lms_scim.request"]
    return records[-1].fields["client"]  # type: ignore[attr-defined]


def test_links_and_client_address_through_the_proxy(
    proxied: Flask, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lms_scim.request")
    scim = Scim(through_proxy(proxied), token)
    created = scim.post("/Users", user_body("proxied@example.com"))
    assert created.status_code == 201, created.get_json()
    user = created.get_json()
    assert user["meta"]["location"] == f"{PUBLIC}/scim/v2/Users/{user['id']}"
    assert created.headers["Location"] == user["meta"]["location"]
    assert _client_of_last_request(caplog) == IDP  # not the proxy, not what the IdP claimed
    config = scim.get("/ServiceProviderConfig").get_json()
    assert config["meta"]["location"] == f"{PUBLIC}/scim/v2/ServiceProviderConfig"
    assert config["documentationUri"] == f"{PUBLIC}/docs/idp-setup.md"


def test_without_scim_base_url_the_forwarded_host_and_scheme_make_the_links(
    app: Flask, token: str
) -> None:
    """The proxy passes the public Host on and says https: links are right even without
    SCIM_BASE_URL (which is still recommended: some proxies rewrite Host)."""
    scim = Scim(through_proxy(app_with(app, trusted_proxy_hops=1)), token)
    user = scim.post("/Users", user_body("hostonly@example.com")).get_json()
    assert user["meta"]["location"] == f"{PUBLIC}/scim/v2/Users/{user['id']}"


def test_x_forwarded_host_is_not_trusted(app: Flask, token: str) -> None:
    """Neither example sets X-Forwarded-Host, and the service ignores it: a client cannot
    choose the host name of the links it gets back."""
    client = through_proxy(app_with(app, trusted_proxy_hops=1))
    client.environ_base["HTTP_X_FORWARDED_HOST"] = "evil.example"
    user = Scim(client, token).post("/Users", user_body("xfh@example.com")).get_json()
    assert user["meta"]["location"].startswith(f"{PUBLIC}/scim/v2/Users/")


def test_an_untrusted_proxy_hop_changes_nothing(
    app: Flask, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With the default TRUSTED_PROXY_HOPS=0 the forwarded headers are ignored: the links say
    http and the client is the proxy — why docs/https.md says to set it."""
    caplog.set_level(logging.INFO, logger="lms_scim.request")
    scim = Scim(through_proxy(app), token)
    user = scim.post("/Users", user_body("untrusted@example.com")).get_json()
    assert user["meta"]["location"].startswith("http://lms.example.com/scim/v2/Users/")
    assert _client_of_last_request(caplog) == PROXY


def _cookie(response: Any) -> str:
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie"]
    (cookie,) = [c for c in cookies if c.startswith("lms_scim_admin=")]
    return cookie


def test_the_admin_cookie_is_secure_through_the_proxy(proxied: Flask, operator: str) -> None:
    signed = sign_in(through_proxy(proxied))
    assert signed.status_code == 302, signed.get_data(as_text=True)
    flags = {part.strip().split("=")[0].lower() for part in _cookie(signed).split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= flags
    assert "SameSite=Lax" in _cookie(signed)
    assert "Path=/admin" in _cookie(signed)


def test_the_admin_cookie_is_not_secure_on_plain_loopback_http(app: Flask, operator: str) -> None:
    """`make run` on the machine itself (HOST=127.0.0.1, http): Secure would break sign-in."""
    signed = sign_in(app.test_client())
    assert signed.status_code == 302
    assert "Secure" not in _cookie(signed)
