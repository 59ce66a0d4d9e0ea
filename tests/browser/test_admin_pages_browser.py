"""The operator pages of issue 19 in Chromium, at desktop width and at a phone's (390 px):
users paged and filtered, odd names clickable, a group with its members and history, a
connection with its errors, the tenants overview and the sign-in page; on the phone the page
never scrolls sideways, wide tables scroll inside their card. A screenshot of each page is kept
in tests/browser/artifacts/ (git-ignored; `ADMIN_SCREENSHOTS` names another directory)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from scim_schemas import CORE_GROUP, CORE_USER, PATCH_OP
from tests.helpers import OPERATOR, PASSWORD

ARTIFACTS = Path(os.environ.get("ADMIN_SCREENSHOTS", Path(__file__).parent / "artifacts"))
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
ODD = 'o\'brien "the" <script>alert(1)</script> ünï/名前'


@pytest.fixture
def world(token: str, operator: str, live_server: str) -> dict[str, Any]:
    """Users (one with an odd name), a group that gained and lost members, and failed calls."""
    scim = requests.Session()
    scim.headers.update(
        {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    )
    base = f"{live_server}/scim/v2"

    def user(user_name: str, **extra: Any) -> str:
        body = {"schemas": [CORE_USER], "userName": user_name, **extra}
        response = scim.post(f"{base}/Users", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    ids = {
        name: user(
            name,
            name={"givenName": name.split("@")[0].title(), "familyName": "Example"},
            emails=[{"value": name, "type": "work", "primary": True}],
            externalId=f"okta-{n:04d}-a-rather-long-external-identifier",
        )
        for n, name in enumerate(["ana@example.com", "bo@example.com", "cy@example.com"])
    }
    ids["odd"] = user(ODD)
    group = scim.post(
        f"{base}/Groups",
        json={
            "schemas": [CORE_GROUP],
            "displayName": "Teachers",
            "members": [{"value": ids["ana@example.com"]}, {"value": ids["bo@example.com"]}],
        },
        timeout=10,
    ).json()
    changed = scim.patch(
        f"{base}/Groups/{group['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": ids["cy@example.com"]}]},
                {"op": "remove", "path": f'members[value eq "{ids["bo@example.com"]}"]'},
            ],
        },
        timeout=10,
    )
    assert changed.status_code in (200, 204), changed.text
    duplicate = {"schemas": [CORE_USER], "userName": "ANA@example.com"}
    assert scim.post(f"{base}/Users", json=duplicate, timeout=10).status_code == 409
    return {"ids": ids, "group": group["id"], "base": live_server}


@pytest.fixture(params=list(VIEWPORTS))
def screen(request: pytest.FixtureRequest, chromium: Any, world: dict[str, Any]) -> Iterator[Any]:
    """A signed-in page at one viewport, with `.shot(name)` saving a full-page screenshot."""
    width = request.param
    context = chromium.new_context(viewport=VIEWPORTS[width])
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{world['base']}/admin/login")
    page.get_by_label("Name").fill(OPERATOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/admin/$"))
    folder = ARTIFACTS / width
    folder.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        if width == "phone":  # the page itself never scrolls sideways
            fits = page.evaluate(
                "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
            )
            assert fits, f"{name} is wider than the phone's screen"

    page.shot = shot
    page.width = width
    yield page
    context.close()


def test_users_page_pages_filters_and_opens_odd_names(screen: Any, world: dict[str, Any]) -> None:
    base = world["base"]
    screen.goto(f"{base}/admin/users?count=2")
    assert screen.locator("#user-results tbody tr").count() == 2
    assert screen.locator("#user-count").inner_text().startswith("4 users")
    screen.shot("users")
    if screen.width == "phone":  # the wide table scrolls inside its card
        scrolls = screen.evaluate(
            "(() => { const s = document.querySelector('.table-scroll');"
            " return s.scrollWidth > s.clientWidth; })()"
        )
        assert scrolls
    screen.get_by_role("link", name="Next page →").click()
    names = screen.locator("#user-results tbody tr td:first-child").all_inner_texts()
    assert names == ["cy@example.com", ODD]
    assert screen.get_by_role("link", name="First page").is_visible()
    screen.get_by_role("link", name=ODD).click()
    screen.wait_for_url(re.compile(rf".*/admin/users/{world['ids']['odd']}$"))
    assert screen.get_by_role("heading", name=ODD).is_visible()
    screen.shot("user-odd-name")

    screen.goto(f"{base}/admin/users")
    screen.get_by_label("Group").select_option(label="Teachers")
    screen.get_by_label("State").select_option("active")
    screen.get_by_role("button", name="Search").click()
    names = screen.locator("#user-results tbody tr td:first-child").all_inner_texts()
    assert names == ["ana@example.com", "cy@example.com"]
    screen.get_by_role("searchbox", name="Search users").fill(
        "okta-0002-a-rather-long-external-identifier"
    )
    screen.get_by_role("button", name="Search").click()
    assert screen.locator("#user-results tbody tr").count() == 1
    screen.shot("users-filtered")


def test_groups_group_and_a_users_history(screen: Any, world: dict[str, Any]) -> None:
    base = world["base"]
    screen.goto(f"{base}/admin/groups")
    row = screen.locator("#group-results tbody tr", has_text="Teachers")
    assert "2" in row.locator("td").nth(1).inner_text()
    screen.shot("groups")
    row.get_by_role("link", name="Teachers").click()
    members = screen.locator("#member-results tbody tr td:first-child").all_inner_texts()
    assert members == ["ana@example.com", "cy@example.com"]
    history = screen.locator("#history").inner_text()
    assert "members: +1 (cy@example.com) −1 (bo@example.com)" in history
    assert "test-idp" in history
    screen.shot("group")
    screen.goto(f"{base}/admin/users/{world['ids']['bo@example.com']}")
    history = screen.locator("table.history").inner_text()
    assert "left group “Teachers”" in history
    assert "joined group “Teachers”" in history
    screen.shot("user")


def test_connections_show_the_idps_errors(screen: Any, world: dict[str, Any]) -> None:
    screen.goto(f"{world['base']}/admin/connections")
    screen.shot("connections")
    screen.get_by_role("link", name="test-idp").click()
    errors = screen.locator("#errors").inner_text()
    assert "POST /scim/v2/Users" in errors
    assert "uniqueness" in errors
    assert "409" in screen.locator("#by-status").inner_text()
    screen.shot("connection")
    for page in ("", "tokens", "relay"):
        screen.goto(f"{world['base']}/admin/{page}")
        screen.shot(page or "overview")


def test_tenants_overview_and_the_sign_in_page(
    screen: Any, world: dict[str, Any], acme: Any
) -> None:
    """A global operator's overview of every tenant, then, signed out, the sign-in page with
    its hint written as the README writes commands."""
    screen.goto(f"{world['base']}/admin/tenants")
    rows = screen.locator("#tenants tbody tr")
    assert rows.locator("td:first-child").all_inner_texts() == ["default", "acme"]
    assert rows.filter(has_text="Acme Corp").locator("td").nth(2).inner_text() == "Active"
    assert rows.filter(has_text="default").locator("td").nth(3).inner_text() == "4"  # users
    screen.shot("tenants")
    if screen.width == "phone":  # nine columns: the table scrolls inside its card
        scrolls = screen.evaluate(
            "(() => { const c = document.querySelector('#tenants').closest('.card');"
            " return c.scrollWidth > c.clientWidth; })()"
        )
        assert scrolls
    rows.get_by_role("link", name="acme").click()
    screen.wait_for_url(re.compile(r".*/admin/t/acme/$"))

    screen.get_by_role("button", name="Sign out").click()
    screen.wait_for_url(re.compile(r".*/admin/login$"))
    assert screen.get_by_role("heading", name="Sign in").is_visible()
    hint = screen.locator(".signin code").inner_text()
    assert hint == ".venv/bin/lms-scim operators create NAME"
    screen.shot("login")
    screen.get_by_label("Name").fill(OPERATOR)
    screen.get_by_label("Password").fill("wrong password")
    screen.get_by_role("button", name="Sign in").click()
    assert screen.get_by_role("alert").inner_text() == "Wrong name or password."
    screen.shot("login-refused")
