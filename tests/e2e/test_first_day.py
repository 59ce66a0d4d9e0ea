"""A new LMS team's first day, end to end, doing only what the README, docs/https.md and
docs/idp-setup.md tell them, on SQLite and PostgreSQL:

1. serve over HTTPS the way docs/https.md's first section says (`db upgrade`, then
   `.venv/bin/gunicorn --certfile … --keyfile … 'app:create_app()'` with `SCIM_BASE_URL` set;
   the certificate here comes from a CA of the test's own, made by trustme), with one token per IdP
   (`tokens create okta-prod`, `tokens create entra-prod`, the secret on the last line) and an
   operator (`operators create olivia`, the password typed at its prompt);
2. let Okta talk to it over https, verifying the certificate (`requests` with the CA): the
   connector test, assigning Alice and Bob, a profile push, a group push with both as members, and
   Alice's deactivation; then Entra ID, connected with `?aadOptscim062020` as the guide advises
   for a new app: Test Connection, provisioning on demand, and an update in the flag's dialect —
   every request in the shape recorded from the vendors (tests/idp/fixtures);
3. answer "is Alice active, in which groups, since when, who changed it" from the CLI
   (`users status alice@example.com`, against the same DATABASE_URL) and from `/admin` over https
   (sign in with the form's CSRF token, search for her, open her page).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.live import SCIM_MEDIA_TYPE, LiveServer, Servers, Visitor
from tests.helpers import OPERATOR, PASSWORD
from tests.idp.conversation import (
    OKTA_HEADERS,
    RECORDED_MEMBERS,
    fixture,
    replay,
    with_aad_flag,
)

pytestmark = pytest.mark.e2e

ALICE = "alice@example.com"
BOB = "bob@example.com"
GROUP = fixture("okta/create_group")["request"]["displayName"]  # "Test SCIMv2", as recorded
ENTRA_FLAG = "aadOptscim062020"


class Connection:
    """One IdP's connection as the guide sets it up: the base URL it is given, its own token,
    and TLS verified against the server's CA (a cloud IdP trusts only a public CA's)."""

    def __init__(self, server: LiveServer, token: str, **headers: str) -> None:
        self.url = f"{server.base_url}/scim/v2"
        self.verify = server.verify
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": SCIM_MEDIA_TYPE,
            "Content-Type": SCIM_MEDIA_TYPE,
            **headers,
        }

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        status: int | tuple[int, ...] = 200,
        **kw: Any,
    ) -> Any:
        """The response's JSON, once its status is `status` (or one of them)."""
        data = None if body is None else json.dumps(body)
        response = requests.request(
            method,
            self.url + path,
            data=data,
            headers=self.headers,
            verify=self.verify,
            timeout=15,
            **kw,
        )
        expected = status if isinstance(status, tuple) else (status,)
        assert response.status_code in expected, f"{method} {path}: {response.text[:500]}"
        return response.json() if response.content else None

    def find(self, attribute: str, value: str, **params: Any) -> list[dict[str, Any]]:
        query = {"filter": f'{attribute} eq "{value}"', **params}
        return self.send("GET", "/Users", params=query)["Resources"]


def _okta(okta: Connection, base_url: str) -> tuple[str, dt.datetime, dt.datetime]:
    """Okta's conversation (docs/idp-setup.md, "Okta"); Alice's id and when she was deactivated
    (after the request left, before its answer came)."""
    # Test Connector Configuration, with Push Groups.
    assert okta.send("GET", "/Users?count=2&startIndex=1")["Resources"] == []
    assert okta.send("GET", "/Groups?count=100&startIndex=1")["Resources"] == []

    # Assignment: a look-up by login, then the create (Okta sends a password with it).
    recorded = fixture("okta/create_user")
    ids: dict[str, str] = {}
    for login, member in ((ALICE, RECORDED_MEMBERS[1]), (BOB, RECORDED_MEMBERS[0])):
        assert okta.find("userName", login, startIndex=1, count=100) == []
        people = {"test.user@okta.local": login, "00ujl29u0le5T6Aj10h7": f"00u-{login}"}
        created = okta.send("POST", "/Users", replay(recorded, people), recorded["statusCode"])
        assert created["meta"]["location"] == f"{base_url}/Users/{created['id']}"  # SCIM_BASE_URL
        ids[member] = created["id"]
    alice = ids[RECORDED_MEMBERS[1]]

    # Profile push: GET, then PUT of the whole user (read-only `groups`, `meta`, `id` included).
    assert okta.send("GET", f"/Users/{alice}")["externalId"] == f"00u-{ALICE}"
    update = replay(fixture("okta/update_user"), {**ids, "test.user@okta.local": ALICE})
    replaced = okta.send("PUT", f"/Users/{alice}", update)
    assert replaced["name"]["middleName"] == "Excited"
    # Okta's documented PUT has no externalId: the replace clears it (docs/idp-setup.md says so).
    assert "externalId" not in replaced

    # Push Groups: the group with no members, then the recorded remove / add / replace of members.
    group = okta.send("POST", "/Groups", fixture("okta/create_group")["request"], 201)
    membership = replay(fixture("okta/update_group_membership"), ids)
    okta.send("PATCH", f"/Groups/{group['id']}", membership, (200, 204))
    members = okta.send("GET", f"/Groups/{group['id']}")["members"]
    assert {m["value"] for m in members} == set(ids.values())

    # Deactivate Users: a path-less replace of `active`.
    before = dt.datetime.now(dt.UTC)
    off = okta.send("PATCH", f"/Users/{alice}", fixture("okta/update_user_patch")["request"])
    after = dt.datetime.now(dt.UTC)
    assert off["active"] is False
    return alice, before, after


def _entra(server: LiveServer, token: str) -> str:
    """Entra ID's conversation with the Tenant URL `https://HOST/scim/v2?aadOptscim062020`
    (docs/idp-setup.md, "Microsoft Entra ID"); the user's userName afterwards."""
    entra = Connection(server, token)
    # Test Connection looks up a random GUID; the flag, should it reach a request, is ignored.
    probe = {"filter": f'userName eq "{uuid.uuid4()}"'}
    assert entra.send("GET", f"/Users?{ENTRA_FLAG}", params=probe)["Resources"] == []

    # Provision on demand: the look-up by userName (empty the first time), then the create.
    create = fixture("entra/create_user")
    assert entra.find("userName", create["request"]["userName"]) == []
    created = entra.send("POST", "/Users", create["request"], create["statusCode"])

    # An update, as Entra sends it with the flag: one path-less replace, JSON booleans.
    recorded = fixture("entra/update_user")
    updated = entra.send("PATCH", f"/Users/{created['id']}", with_aad_flag(recorded["request"]))
    expected = recorded["response"]
    assert (updated["userName"], updated["active"]) == (expected["userName"], False)
    assert updated["emails"][0]["value"] == expected["emails"][0]["value"]
    assert updated["name"]["familyName"] == expected["name"]["familyName"]
    assert [u["id"] for u in entra.find("userName", expected["userName"])] == [created["id"]]
    return str(expected["userName"])


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_first_day_over_https_answers_is_alice_active_in_which_groups_since_when_and_by_whom(
    servers: Servers, backend: str
) -> None:
    # 1. Serve over HTTPS (docs/https.md §1), one token per IdP, an operator (README, "Operating").
    server = servers.tls(backend, f"first-day-{backend}")
    base_url = f"https://localhost:{server.port}/scim/v2"  # the name the IdPs are given
    server.env["SCIM_BASE_URL"] = base_url
    server.cli("db", "upgrade")
    okta_token = server.cli("tokens", "create", "okta-prod").stdout.strip().splitlines()[-1]
    entra_token = server.cli("tokens", "create", "entra-prod").stdout.strip().splitlines()[-1]
    server.cli("operators", "create", OPERATOR, typed=f"{PASSWORD}\n{PASSWORD}\n")
    server.start()
    server.wait_until_healthy()  # https, the certificate verified against the CA

    okta = Connection(server, okta_token, **OKTA_HEADERS)
    # "Check it from where you are": ServiceProviderConfig answers, and points at the guide.
    config = okta.send("GET", "/ServiceProviderConfig")
    assert config["documentationUri"] == base_url.removesuffix("/scim/v2") + "/docs/idp-setup.md"

    # 2. Okta, then Entra ID.
    alice, before, after = _okta(okta, base_url)
    entra_user = _entra(server, entra_token)

    # 3a. The CLI, against the same DATABASE_URL.
    status = json.loads(server.cli("users", "status", ALICE, "--format", "json").stdout)
    since = dt.datetime.fromisoformat(status["stateSince"])
    assert (status["id"], status["active"], status["stateChangedBy"]) == (alice, False, "okta-prod")
    assert before - dt.timedelta(seconds=1) <= since <= after, (before, since, after)
    assert [g["displayName"] for g in status["groups"]] == [GROUP]
    minute = f"{since:%Y-%m-%d %H:%M}"
    text = server.cli("users", "status", ALICE).stdout
    assert f"state:         inactive since {minute} UTC by token okta-prod" in text, text
    assert f"groups:        {GROUP}\n" in text, text
    # Each IdP's changes carry its own token's name.
    entra = json.loads(server.cli("users", "status", entra_user, "--format", "json").stdout)
    assert (entra["active"], entra["stateChangedBy"]) == (False, "entra-prod")

    # 3b. /admin over https: sign in, search for her, open her page.
    visitor = Visitor(server)
    signed = visitor.sign_in()
    assert signed.status_code == 302, signed.text[:500]
    assert "; Secure" in signed.headers["Set-Cookie"]
    results = visitor.request("GET", "/admin/users?q=alice")
    assert results.status_code == 200, results.text[:500]
    links = re.findall(r'<a href="(/admin/users/[^"]+)">([^<]+)</a>', results.text)
    assert links == [(f"/admin/users/{alice}", ALICE)], links
    page = visitor.request("GET", links[0][0])
    assert page.status_code == 200, page.text[:500]
    state = page.text.split('id="state">', 1)[1].split("</section>", 1)[0]
    assert f"<strong>Inactive</strong> since {minute} UTC" in state, state
    assert "set by token <strong>okta-prod</strong> (deactivate)" in state, state
    groups = page.text.split("<h2>Groups</h2>", 1)[1].split("</section>", 1)[0]
    assert re.findall(r'<a href="/admin/groups/[^"]+">([^<]+)</a>', groups) == [GROUP], groups
    assert "active: true → false" in page.text  # her history shows the change itself
