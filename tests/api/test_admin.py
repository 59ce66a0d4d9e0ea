"""`/admin` through Flask's test client: sign-in, CSRF, cookie flags, back-off, HTML errors, and
the pages' content (the browser test in tests/browser drives the same pages in Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import admin, create_app
from app.config import Config
from app.runtime import resolve_secret_key
from app.store.models import AuditEvent, Operator, utcnow
from tests.helpers import (
    PASSWORD,
    command_hints,
    create_group,
    create_user,
    csrf,
    deactivate,
    run,
    sign_in,
)


def test_pages_require_sign_in_and_return_after_it(client: FlaskClient, operator: str) -> None:
    for path in ("/admin/", "/admin/users?q=alice", "/admin/tokens"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/admin/login?next=" in response.headers["Location"]
    token = csrf(client, "/admin/login?next=/admin/tokens")
    response = client.post(
        "/admin/login?next=/admin/tokens",
        data={"csrf": token, "name": "olivia", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/admin/tokens"
    assert client.get("/admin/tokens").status_code == 200


def test_a_scim_token_does_not_open_admin(client: FlaskClient, token: str) -> None:
    response = client.get("/admin/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 302


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/admin",
        "/scim/v2/Users",
        "/administrator",
        "/admin/../scim/v2/Users",
        "/admin/%252e%252e/scim/v2/Users",  # `%2e%2e` once the query is decoded: `..` to browsers
        "/admin/.%252E/scim/v2/Users",
        "/admin\\..\\scim",
        "/admin/%0d%0aSet-Cookie:%20evil=1",
    ],
)
def test_next_never_leaves_the_admin_pages(client: FlaskClient, operator: str, target: str) -> None:
    token = csrf(client)
    response = client.post(
        f"/admin/login?next={target}",
        data={"csrf": token, "name": "olivia", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/", target


def test_next_leads_to_the_admin_page_asked_for(client: FlaskClient, operator: str) -> None:
    token = csrf(client)
    response = client.post(
        "/admin/login?next=/admin/users%3Fq%3Dalice",
        data={"csrf": token, "name": "olivia", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/admin/users?q=alice"


def test_the_cookie_is_secure_over_https_even_on_loopback(
    client: FlaskClient, operator: str
) -> None:
    page = client.get("/admin/login", base_url="https://localhost")
    assert "; Secure" in page.headers["Set-Cookie"]
    token = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))
    assert token
    response = client.post(
        "/admin/login",
        base_url="https://localhost",
        data={"csrf": token[1], "name": "olivia", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert "; Secure" in response.headers["Set-Cookie"]


def test_sign_in_without_the_csrf_token_is_refused(client: FlaskClient, operator: str) -> None:
    client.get("/admin/login")
    response = client.post("/admin/login", data={"name": "olivia", "password": PASSWORD})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "expired" in response.get_data(as_text=True)
    forged = client.post(
        "/admin/login", data={"csrf": "forged", "name": "olivia", "password": PASSWORD}
    )
    assert forged.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_the_session_cookie_is_httponly_lax_and_scoped(client: FlaskClient, operator: str) -> None:
    response = sign_in(client)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("lms_scim_admin=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/admin" in cookie
    assert "Secure" not in cookie  # HOST is loopback in tests: local http must work


@pytest.mark.parametrize(
    ("env", "secure"),
    [
        ({"HOST": "127.0.0.1"}, False),
        ({"HOST": "0.0.0.0"}, True),  # noqa: S104 - a config value under test
        ({"HOST": "0.0.0.0", "ADMIN_COOKIE_SECURE": "false"}, False),  # noqa: S104
        ({"HOST": "localhost", "ADMIN_COOKIE_SECURE": "1"}, True),
    ],
)
def test_cookie_security_follows_host_unless_configured(env: dict[str, str], secure: bool) -> None:
    assert Config.from_env(env).cookie_secure() is secure


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    config = Config.from_env({"SECRET_KEY_FILE": str(tmp_path / "var" / "secret_key")})
    first = resolve_secret_key(config)
    assert len(first) >= 40
    assert resolve_secret_key(config) == first
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o777 == 0o600
    assert resolve_secret_key(Config.from_env({"SECRET_KEY": "explicit"})) == "explicit"


def test_sign_out_needs_csrf_and_ends_the_session(signed_in: FlaskClient) -> None:
    assert signed_in.post("/admin/logout").status_code == 400
    assert signed_in.get("/admin/").status_code == 200
    response = signed_in.post("/admin/logout", data={"csrf": csrf(signed_in, "/admin/")})
    assert response.status_code == 302
    assert signed_in.get("/admin/").status_code == 302


def test_a_deleted_operator_is_signed_out(signed_in: FlaskClient) -> None:
    Operator.delete().execute()
    assert signed_in.get("/admin/").status_code == 302


def test_dashboard_empty_states(signed_in: FlaskClient) -> None:
    page = signed_in.get("/admin/").get_data(as_text=True)
    assert "No provisioning in the last 30 days" in page
    assert "No users yet" in page
    assert signed_in.get("/admin/").headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in signed_in.get("/admin/").headers["Content-Security-Policy"]
    users = signed_in.get("/admin/users?q=nobody").get_data(as_text=True)
    assert "No user matches “nobody”" in users
    # Every "how to" hint writes its command as it runs from a fresh clone, as the README does.
    empty = {path: signed_in.get(path).get_data(as_text=True) for path in EMPTY_HINTS}
    assert {path: command_hints(page) for path, page in empty.items()} == EMPTY_HINTS


EMPTY_HINTS = {
    "/admin/users": [".venv/bin/lms-scim users add"],
    "/admin/tokens": [
        ".venv/bin/lms-scim tokens create | rotate | revoke",
        ".venv/bin/lms-scim tokens create NAME",
    ],
    "/admin/connections": [
        ".venv/bin/lms-scim tokens create NAME",
        ".venv/bin/lms-scim clients create NAME",
    ],
}


def test_no_template_writes_a_bare_command() -> None:
    """Hints the tests above do not render (another state of a page) follow the same rule."""
    templates = Path(admin.__file__).parent / "templates"
    for template in templates.rglob("*.html"):
        command_hints(template.read_text(encoding="utf-8"))


def test_dashboard_charts_activity_and_warns_about_expiring_tokens(
    app: Flask, signed_in: FlaskClient, scim: Any
) -> None:
    alice = create_user(scim)
    deactivate(scim, alice["id"])
    run(app, "tokens", "create", "short-lived", "--expires-in", "3d")
    page = signed_in.get("/admin/").get_data(as_text=True)
    assert "<svg" in page
    assert f"{utcnow():%b %d}: 1 create" in page
    assert f"{utcnow():%b %d}: 1 deactivate" in page
    assert "Token “short-lived”" in page
    assert "expires in 2 days" in page or "expires in 3 days" in page
    tokens = signed_in.get("/admin/tokens").get_data(as_text=True)
    assert "short-lived" in tokens
    assert "test-idp" in tokens
    assert "lmsscim_" in tokens  # the prefix only


def test_search_and_user_page_answer_who_deactivated_alice(
    signed_in: FlaskClient, scim: Any
) -> None:
    alice = create_user(scim, externalId="okta-00u1")
    create_user(scim, "bob@example.com", name={"givenName": "Bob", "familyName": "Builder"})
    teachers = create_group(scim, "Teachers", alice["id"])
    deactivate(scim, alice["id"])
    changed = AuditEvent.get(AuditEvent.operation == "deactivate").at

    results = signed_in.get("/admin/users?q=ALICE").get_data(as_text=True)
    assert "alice@example.com" in results
    assert "bob@example.com" not in results
    assert "Inactive" in results
    assert "okta-00u1" in signed_in.get("/admin/users?q=okta-00u1").get_data(as_text=True)

    page = signed_in.get(f"/admin/users/{alice['id']}").get_data(as_text=True)
    assert f"since {changed:%Y-%m-%d %H:%M} UTC" in page
    assert "set by token <strong>test-idp</strong> (deactivate)" in page
    assert "active: true → false" in page
    groups = page.split("<h2>Groups</h2>", 1)[1].split("</ul>", 1)[0]
    assert f'href="/admin/groups/{teachers["id"]}">Teachers</a>' in groups


def test_errors_on_admin_are_html_pages(signed_in: FlaskClient) -> None:
    for path, code in (("/admin/users/nope", 404), ("/admin/no/such/page", 404)):
        response = signed_in.get(path)
        assert response.status_code == code
        assert response.mimetype == "text/html"
        assert "Back to the overview" in response.get_data(as_text=True)
    scim_404 = signed_in.get("/scim/v2/nope")
    assert scim_404.mimetype == "application/scim+json"


def test_unexpected_errors_on_admin_are_html_and_say_nothing_internal(
    signed_in: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_args: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(admin.status, "stats", boom)
    response = signed_in.get("/admin/")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "secret internals" not in body
    assert "Something went wrong" in body


def test_stylesheet_is_served(client: FlaskClient) -> None:
    response = client.get("/admin/static/admin.css")
    response.close()
    assert response.status_code == 200
    assert "text/css" in response.content_type


def test_app_factory_registers_admin_once_per_app(config: Config) -> None:
    assert create_app(config).url_map.bind("x").match("/admin/")[0] == "admin.dashboard"
    assert create_app(config).url_map.bind("x").match("/admin/")[0] == "admin.dashboard"
