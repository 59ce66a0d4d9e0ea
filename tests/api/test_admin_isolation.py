"""The new `/admin` pages per tenant: an operator bound to acme never sees the default tenant's
groups, members, history or connections (a foreign id or name answers as an absent one), and a
cursor of one tenant's listing does not page another's."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import PASSWORD, Scim, create_group, create_user, run, sign_in

ABSENT = "0" * 32


@pytest.fixture
def world(scim: Scim, acme: Scim) -> dict[str, str]:
    """alice in group Physics of the default tenant; bob in group Chemistry of acme; each
    tenant's token has failed once."""
    alice = create_user(scim, "alice@example.com")["id"]
    bob = create_user(acme, "bob@acme.example")["id"]
    ids = {
        "alice": alice,
        "bob": bob,
        "physics": create_group(scim, "Physics", alice)["id"],
        "chemistry": create_group(acme, "Chemistry", bob)["id"],
    }
    assert scim.get("/Users?filter=default-secret%20eq%20%22x%22").status_code == 400
    assert acme.get("/Users?filter=acme-secret%20eq%20%22x%22").status_code == 400
    return ids


@pytest.fixture
def bound(app: Flask, world: dict[str, str]) -> FlaskClient:
    run(app, "operators", "create", "bea", "--tenant", "acme", "--password", PASSWORD)
    client = app.test_client()
    assert sign_in(client, "bea").status_code == 302
    return client


def _get(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return html.unescape(response.get_data(as_text=True))


def test_a_bound_operator_sees_only_their_tenants_groups_and_connections(
    bound: FlaskClient, world: dict[str, str]
) -> None:
    pages = [
        _get(bound, path)
        for path in (
            "/admin/groups",
            f"/admin/groups/{world['chemistry']}",
            f"/admin/users?group={world['physics']}",
            "/admin/connections",
            "/admin/connection?name=acme-idp",
            f"/admin/users/{world['bob']}",
        )
    ]
    everything = "\n".join(pages)
    for theirs in ("Chemistry", "bob@acme.example", "acme-idp", "acme-secret"):
        assert theirs in everything, theirs
    for other in ("Physics", "alice@example.com", "test-idp", "default-secret", world["alice"]):
        assert other not in everything, other
    assert "No user matches these filters." in pages[2]


def test_another_tenants_group_or_connection_is_404_as_an_absent_one(
    bound: FlaskClient, world: dict[str, str]
) -> None:
    foreign = _get(bound, f"/admin/groups/{world['physics']}", 404)
    absent = _get(bound, f"/admin/groups/{ABSENT}", 404)
    assert foreign.replace(world["physics"], ABSENT) == absent
    foreign = _get(bound, "/admin/connection?name=test-idp", 404)
    absent = _get(bound, "/admin/connection?name=no-such-token", 404)
    assert foreign.replace("test-idp", "no-such-token") == absent
    for page in ("groups", f"groups/{world['physics']}", "connections"):
        assert _get(bound, f"/admin/t/default/{page}", 404) == _get(
            bound, f"/admin/t/no-such-tenant/{page}", 404
        )


def test_a_cursor_of_one_tenant_does_not_page_another(
    signed_in: FlaskClient, world: dict[str, str], scim: Scim, acme: Scim
) -> None:
    create_user(scim, "zed@example.com")
    create_user(acme, "zed@acme.example")
    first = _get(signed_in, "/admin/users?count=1")
    cursor = re.search(r"cursor=([^&\"]+)", first)
    assert cursor
    response = signed_in.get(f"/admin/t/acme/users?count=1&cursor={cursor[1]}")
    assert response.status_code == 400
    assert "different query" in html.unescape(response.get_data(as_text=True))
    # A global operator sees each tenant's own groups and connections at its URL.
    acme_groups = _get(signed_in, "/admin/t/acme/groups")
    assert "Chemistry" in acme_groups
    assert "Physics" not in acme_groups
    assert "acme-idp" in _get(signed_in, "/admin/t/acme/connections")
    assert "acme-idp" not in _get(signed_in, "/admin/connections")
