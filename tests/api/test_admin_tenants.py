"""`/admin` per operator: a bound operator sees their tenant only (another tenant's URL or id
answers exactly as an unknown one), a global operator sees every tenant, an overview of them and
a switcher; `operators create --tenant` binds one."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.store import outbox, tenancy
from app.store import tenants as tenant_store
from app.store.models import Outbox
from tests.helpers import PASSWORD, Scim, command_hints, create_user, run, sign_in

ABSENT = "0" * 32
BOUND = "bea"


@pytest.fixture
def people(scim: Scim, acme: Scim) -> dict[str, str]:
    """alice in the default tenant, bob in acme, each with a dead letter of the relay."""
    ids = {
        "alice": create_user(scim, "alice@example.com")["id"],
        "bob": create_user(acme, "bob@acme.example")["id"],
    }
    for tenant, name in ((tenancy.DEFAULT_TENANT, "alice"), (_acme_id(), "bob")):
        with tenancy.use(tenant):
            outbox.user(ids[name])
            row = Outbox.select().order_by(Outbox.id.desc()).first()
            outbox.dead(row, f"refused-for-{name}")
    return ids


def _acme_id() -> int:
    return tenant_store.by_slug("acme").id


@pytest.fixture
def bound(app: Flask, acme: Scim, people: dict[str, str]) -> FlaskClient:
    """A client signed in as an operator bound to acme."""
    run(app, "operators", "create", BOUND, "--tenant", "acme", "--password", PASSWORD)
    client = app.test_client()
    assert sign_in(client, BOUND).status_code == 302
    return client


@pytest.fixture
def everyone(signed_in: FlaskClient, people: dict[str, str]) -> FlaskClient:
    """A client signed in as a global operator, with acme and the default tenant populated."""
    return signed_in


def _page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def _not_found(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    return response.get_data(as_text=True)


# -- a bound operator --------------------------------------------------------------------------


def test_a_bound_operator_sees_only_their_tenant(
    bound: FlaskClient, people: dict[str, str]
) -> None:
    pages = {
        path: _page(bound, path)
        for path in ("/admin/", "/admin/users", "/admin/tokens", "/admin/relay")
    }
    pages["user"] = _page(bound, f"/admin/users/{people['bob']}")
    everything = "\n".join(pages.values())
    for theirs in ("bob@acme.example", "acme-idp", "refused-for-bob", "Acme Corp"):
        assert theirs in everything, theirs
    for other in ("alice@example.com", people["alice"], "test-idp", "refused-for-alice"):
        assert other not in everything, other
    assert "bob@acme.example" in _page(bound, "/admin/users?q=bob")
    assert "No user matches" in _page(bound, "/admin/users?q=alice%40example.com")


def test_a_bound_operator_gets_404_for_another_tenants_user_as_for_an_absent_one(
    bound: FlaskClient, people: dict[str, str]
) -> None:
    foreign = _not_found(bound, f"/admin/users/{people['alice']}")
    absent = _not_found(bound, f"/admin/users/{ABSENT}")
    assert foreign.replace(people["alice"], ABSENT) == absent
    assert "alice@example.com" not in foreign


@pytest.mark.parametrize("page", ["", "users", "tokens", "relay", "users/{alice}"])
def test_a_bound_operator_gets_404_for_another_tenants_urls_as_for_an_unknown_one(
    bound: FlaskClient, people: dict[str, str], page: str
) -> None:
    page = page.format(alice=people["alice"])
    other = _not_found(bound, f"/admin/t/default/{page}")
    unknown = _not_found(bound, f"/admin/t/no-such-tenant/{page}")
    assert other == unknown
    assert "bob@acme.example" in _page(bound, "/admin/t/acme/users")


def test_a_bound_operator_has_no_overview_and_no_switcher(bound: FlaskClient) -> None:
    _not_found(bound, "/admin/tenants")
    _not_found(bound, "/admin/switch?tenant=default")
    _not_found(bound, "/admin/switch?tenant=acme")
    page = _page(bound, "/admin/")
    assert 'name="tenant"' not in page
    assert "/admin/tenants" not in page
    assert 'id="tenant-name">Acme Corp<' in page


# -- a global operator -------------------------------------------------------------------------


def test_a_global_operator_sees_the_tenants_overview(everyone: FlaskClient) -> None:
    page = _page(everyone, "/admin/tenants")
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)
        )
        if cells
    }
    # users, active users, groups, tokens, changes waiting for the LMS, failed deliveries:
    # neither tenant has an LMS, so their changes were not queued (the dead letters were
    # written by hand) and the relay is off
    assert rows["default"][1:] == ["Active", "1", "1", "0", "1", "relay off", "1"]
    assert rows["acme"] == ["Acme Corp", "Active", "1", "1", "0", "1", "relay off", "1"]
    assert 'href="/admin/t/acme/"' in page
    assert 'href="/admin/t/acme/relay"' in page
    # Commands are written as they run from a fresh clone, as in the README.
    assert ".venv/bin/lms-scim tenants create SLUG --name NAME" in command_hints(page)
    relay = _page(everyone, "/admin/t/acme/relay")
    assert "No LMS is configured for this tenant" in relay
    hints = command_hints(relay)
    assert ".venv/bin/lms-scim tenants set acme LMS_URL=…" in hints
    assert ".venv/bin/lms-scim relay sync --all --tenant acme" in hints
    assert ".venv/bin/lms-scim relay retry --all --tenant acme" in hints


def test_a_global_operator_switches_tenants_and_links_stay_there(
    everyone: FlaskClient, people: dict[str, str]
) -> None:
    home = _page(everyone, "/admin/users")
    assert "alice@example.com" in home
    assert "bob@acme.example" not in home
    assert '<option value="acme"' in home  # the switcher

    response = everyone.get("/admin/switch?tenant=acme&page=admin.tokens")
    assert (response.status_code, response.headers["Location"]) == (302, "/admin/t/acme/tokens")
    tokens = _page(everyone, "/admin/t/acme/tokens")
    assert "acme-idp" in tokens
    assert "test-idp" not in tokens
    assert 'href="/admin/t/acme/users"' in tokens
    assert '<option value="acme" selected' in tokens
    # A user's page switches to the other tenant's users list; an unknown page to its overview.
    to_users = everyone.get("/admin/switch?tenant=default&page=admin.user")
    assert to_users.headers["Location"] == "/admin/t/default/users"
    assert everyone.get("/admin/switch?tenant=acme&page=x").headers["Location"] == "/admin/t/acme/"
    _not_found(everyone, "/admin/switch?tenant=no-such-tenant")

    users = _page(everyone, "/admin/t/acme/users")
    assert "bob@acme.example" in users
    assert "alice@example.com" not in users
    assert f'href="/admin/t/acme/users/{people["bob"]}"' in users
    assert "refused-for-bob" in _page(everyone, "/admin/t/acme/relay")
    _not_found(everyone, f"/admin/t/acme/users/{people['alice']}")
    _not_found(everyone, "/admin/t/no-such-tenant/")


def test_a_request_leaves_its_tenant(everyone: FlaskClient) -> None:
    _page(everyone, "/admin/t/acme/users")
    _not_found(everyone, "/admin/t/acme/users/" + ABSENT)
    assert tenancy.current() == tenancy.DEFAULT_TENANT


def test_one_tenant_shows_no_switcher(signed_in: FlaskClient) -> None:
    page = _page(signed_in, "/admin/")
    assert 'name="tenant"' not in page
    assert 'href="/admin/tenants"' in page


def test_sign_in_returns_to_a_tenants_page(app: Flask, acme: Scim, operator: str) -> None:
    client = app.test_client()
    response = client.get("/admin/t/acme/tokens")
    assert response.headers["Location"].endswith("next=/admin/t/acme/tokens")
    token = re.search(
        r'name="csrf" value="([^"]+)"', client.get("/admin/login").get_data(as_text=True)
    )
    assert token
    login = client.get("/admin/login").get_data(as_text=True)
    assert command_hints(login) == [".venv/bin/lms-scim operators create NAME"]
    signed = client.post(
        "/admin/login?next=/admin/t/acme/tokens",
        data={"csrf": token[1], "name": operator, "password": PASSWORD},
    )
    assert signed.headers["Location"] == "/admin/t/acme/tokens"
    assert "acme-idp" in _page(client, "/admin/t/acme/tokens")


def test_a_disabled_tenants_pages_say_so(app: Flask, bound: FlaskClient) -> None:
    """A bound operator keeps reading their tenant while it is disabled, and is told why its
    IdP is refused."""
    assert 'id="tenant-disabled"' not in _page(bound, "/admin/")
    run(app, "tenants", "disable", "acme")
    page = _page(bound, "/admin/users")
    assert 'id="tenant-disabled"' in page
    assert ".venv/bin/lms-scim tenants enable acme" in command_hints(page)
    assert "bob@acme.example" in page
