"""The operator's status page in a real browser: sign in, find alice, and see the deactivation
a SCIM PATCH (over real HTTP, as an IdP sends it) has just made."""

from __future__ import annotations

import re
from typing import Any

import requests

from app.store.models import AuditEvent
from scim_schemas import CORE_USER, PATCH_OP
from tests.helpers import PASSWORD


def test_operator_signs_in_finds_alice_and_sees_her_deactivation(
    token: str, operator: str, live_server: str, page: Any
) -> None:
    scim = requests.Session()
    scim.headers.update(
        {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    )
    created = scim.post(
        f"{live_server}/scim/v2/Users",
        json={
            "schemas": [CORE_USER],
            "userName": "alice@example.com",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "alice@example.com", "primary": True}],
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    alice = created.json()

    # Signed out: the page sends us to sign in, then back.
    page.goto(f"{live_server}/admin/users")
    assert "/admin/login" in page.url
    page.get_by_label("Name").fill(operator)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong name or password."
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/admin/users$"))
    assert page.get_by_role("heading", name="Users").is_visible()

    # Search, and open alice: active.
    page.get_by_role("searchbox", name="Search users").fill("ALICE")
    page.get_by_role("button", name="Search").click()
    results = page.locator("#user-results tbody tr")
    assert results.count() == 1
    assert "Active" in results.first.inner_text()
    results.first.get_by_role("link", name="alice@example.com").click()
    assert page.locator("#state").inner_text().startswith("Active since")

    # The IdP deactivates her over SCIM; a reload shows it, when and by which token.
    patched = scim.patch(
        f"{live_server}/scim/v2/Users/{alice['id']}",
        json={
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
        timeout=10,
    )
    assert patched.status_code == 200, patched.text
    changed = AuditEvent.get(AuditEvent.operation == "deactivate").at
    page.reload()
    state = page.locator("#state").inner_text()
    assert state.startswith(f"Inactive since {changed:%Y-%m-%d %H:%M} UTC")
    assert "set by token test-idp (deactivate)" in state
    assert page.locator(".badge", has_text="Inactive").first.is_visible()
    history = page.locator("table").last.inner_text()
    assert "deactivate" in history
    assert "active: true → false" in history
    assert page.get_by_text("Teachers").count() == 0  # no groups: the empty state shows
    assert page.get_by_text("Not a member of any group.").is_visible()

    # The overview charts today's activity; the session cookie is HttpOnly and Lax.
    page.get_by_role("link", name="Overview").click()
    assert page.locator("svg.chart rect").count() >= 2
    cookie = next(c for c in page.context.cookies() if c["name"] == "lms_scim_admin")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/admin"

    # Sign out ends the session.
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{live_server}/admin/")
    assert "/admin/login" in page.url
