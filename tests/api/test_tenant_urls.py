"""A tenant's own base URL, `/t/SLUG/scim/v2`: the token still decides the tenant; the URL only
adds a check (another tenant's token: 401, an unknown slug: 404) and the links in responses
follow the base URL the request came in on. And the tenant in logs and (when asked) metrics."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import observability, runtime
from scim_schemas import CORE_USER, SEARCH_REQUEST
from tests.api.test_bulk import bulk, post_group, post_user
from tests.api.test_hostile import _metric
from tests.helpers import (
    PASSWORD,
    Scim,
    app_with,
    assert_error,
    create_group,
    create_user,
    feed,
    run,
    sign_in,
    sign_out,
)

ACME = "/t/acme/scim/v2"
DEFAULT = "/t/default/scim/v2"


@pytest.fixture
def acme(client: FlaskClient, acme_token: str) -> Scim:
    """acme's IdP, configured with acme's own base URL."""
    return Scim(client, acme_token, base=ACME)


def test_every_route_answers_under_the_tenant_url(acme: Scim) -> None:
    user = create_user(acme, "ada@acme.example")
    group = create_group(acme, "Staff", user["id"])
    for path in (
        "/Users",
        f"/Users/{user['id']}",
        "/Groups",
        f"/Groups/{group['id']}",
        "/Me",
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/ResourceTypes/User",
        "/Schemas",
        f"/Schemas/{CORE_USER}",
        "/openapi.json",
    ):
        response = acme.get(path)
        response.get_data()  # streamed bodies end with the request
        assert response.status_code in (200, 501), (path, response.get_data(as_text=True))
    assert acme.get("/openapi.json").get_json()["servers"] == [{"url": ACME}]


def test_the_tenant_url_and_the_plain_one_serve_the_same_tenant(
    client: FlaskClient, acme: Scim, acme_token: str
) -> None:
    user = create_user(acme, "ada@acme.example")
    plain = Scim(client, acme_token)
    assert plain.get(f"/Users/{user['id']}").get_json()["userName"] == "ada@acme.example"


def test_another_tenants_token_is_refused_as_a_bad_token(
    client: FlaskClient, scim: Scim, acme: Scim
) -> None:
    bad = Scim(client, "lmsscim_not-a-token", base=ACME)
    foreign = Scim(client, scim.headers["Authorization"].split()[1], base=ACME)
    for method, path in (("GET", "/Users"), ("POST", "/.search"), ("GET", "/openapi.json")):
        refused = foreign.request(method, path)
        expected = bad.request(method, path)
        assert_error(refused, 401)
        assert refused.get_json() == expected.get_json()
        assert refused.headers["WWW-Authenticate"] == expected.headers["WWW-Authenticate"]
    # And the other way round: acme's token at the default tenant's URL.
    assert_error(
        Scim(client, acme.headers["Authorization"].split()[1], base=DEFAULT).get("/Users"), 401
    )
    assert scim.request("GET", f"{DEFAULT}/Users").status_code == 200


def test_an_unknown_slug_is_404_after_the_token(client: FlaskClient, scim: Scim) -> None:
    lost = Scim(client, scim.headers["Authorization"].split()[1], base="/t/nobody/scim/v2")
    assert_error(lost.get("/Users"), 404)
    assert_error(lost.post("/Bulk", bulk(post_user("u", "x@example.com"))), 404)
    # Without a valid token nothing is said about slugs.
    assert_error(client.get("/t/nobody/scim/v2/Users"), 401)
    # Routing errors under a tenant URL are SCIM errors too.
    assert_error(scim.request("GET", f"{DEFAULT}/Nothing"), 404)


def _links(resource: dict[str, Any]) -> list[str]:
    found = [resource["meta"]["location"]]
    found += [m["$ref"] for m in resource.get("members", [])]
    found += [g["$ref"] for g in resource.get("groups", [])]
    return found


def test_links_follow_the_base_url_the_request_came_in_on(
    client: FlaskClient, acme: Scim, acme_token: str
) -> None:
    plain = Scim(client, acme_token)
    created = acme.post("/Users", {"schemas": [CORE_USER], "userName": "ada@acme.example"})
    assert created.headers["Location"] == f"http://localhost{ACME}/Users/{created.get_json()['id']}"
    user = created.get_json()
    group = create_group(acme, "Staff", user["id"])
    for scim, base in ((acme, ACME), (plain, "/scim/v2")):
        prefix = f"http://localhost{base}/"
        shown = [
            scim.get(f"/Users/{user['id']}").get_json(),
            scim.get(f"/Groups/{group['id']}").get_json(),
            *scim.get("/Groups").get_json()["Resources"],
            scim.get("/ServiceProviderConfig").get_json(),
            *scim.get("/ResourceTypes").get_json()["Resources"],
            *scim.get("/Schemas").get_json()["Resources"],
        ]
        links = [link for resource in shown for link in _links(resource)]
        assert len(links) > 8
        assert all(link.startswith(prefix) for link in links), links


def test_bulk_and_search_under_the_tenant_url(acme: Scim) -> None:
    answer = acme.post(
        "/Bulk", bulk(post_user("u", "ada@acme.example"), post_group("g", "Staff", "bulkId:u"))
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    results = answer.get_json()["Operations"]
    assert [r["status"] for r in results] == ["201", "201"]
    assert all(r["location"].startswith(f"http://localhost{ACME}/") for r in results)
    found = acme.post("/.search", {"schemas": [SEARCH_REQUEST], "filter": 'userName sw "ada"'})
    (user,) = found.get_json()["Resources"]
    assert user["meta"]["location"].startswith(f"http://localhost{ACME}/Users/")
    groups = acme.post("/Groups/.search", {"schemas": [SEARCH_REQUEST]}).get_json()["Resources"]
    refs = [m["$ref"] for m in groups[0]["members"]]
    assert refs
    assert all(ref.startswith(f"http://localhost{ACME}/Users/") for ref in refs)


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("https://idm.example.com/scim/v2", "https://idm.example.com/t/acme/scim/v2"),
        ("https://idm.example.com/lms/scim/v2/", "https://idm.example.com/lms/t/acme/scim/v2"),
        ("https://scim.example.com/v2", "https://scim.example.com/t/acme/scim/v2"),
    ],
)
def test_scim_base_url_keeps_its_host_under_a_tenant_url(
    app: Flask, acme_token: str, configured: str, expected: str
) -> None:
    other = app_with(app, scim_base_url=configured)
    acme = Scim(other.test_client(), acme_token, base=ACME)
    user = create_user(acme, "ada@acme.example")
    assert user["meta"]["location"] == f"{expected}/Users/{user['id']}"
    plain = Scim(other.test_client(), acme_token)
    assert plain.get(f"/Users/{user['id']}").get_json()["meta"]["location"] == (
        f"{configured.rstrip('/')}/Users/{user['id']}"
    )


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "lms_scim.request"]  # type: ignore[attr-defined]


def test_the_request_log_names_the_tenant(
    client: FlaskClient, scim: Scim, acme: Scim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lms_scim.request")
    acme.get("/Users")
    Scim(client, acme.headers["Authorization"].split()[1]).get("/Groups")
    scim.get("/Users")
    client.get("/scim/v2/Users")  # no token: no tenant
    tenants = [line["tenant"] for line in _request_lines(caplog)]
    assert tenants == ["acme", "acme", "default", None]


def _logged(buffer: io.StringIO, logger: str = "lms_scim.request") -> list[dict[str, Any]]:
    """The JSON lines `logger` wrote to `buffer` since the last call."""
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    buffer.seek(0)
    buffer.truncate()
    return [line for line in lines if line["logger"] == logger]


@pytest.fixture
def log_output(app: Flask) -> Iterator[io.StringIO]:
    """What the app logs, as it writes it (JSON lines), to a buffer instead of stderr."""
    config = runtime.of(app).config
    buffer = io.StringIO()
    observability.configure_logging(config, stream=buffer)
    try:
        yield buffer
    finally:
        observability.configure_logging(config)


def test_admin_pages_and_token_requests_log_their_tenant(
    app: Flask, client: FlaskClient, acme_token: str, log_output: io.StringIO
) -> None:
    """Where a request's tenant is known it is in its log lines: an /admin page (a bound
    operator's, a global operator's of another tenant), and a token request of an OAuth
    client once the client is authenticated; before that, none."""
    run(app, "operators", "create", "bea", "--tenant", "acme", "--password", PASSWORD)
    run(app, "operators", "create", "gil", "--password", PASSWORD)
    out = run(app, "clients", "create", "acme-okta", "--tenant", "acme").stdout.splitlines()
    creds = dict(line.split("=", 1) for line in out if "=" in line)

    assert sign_in(client, "bea").status_code == 302
    assert client.get("/admin/users").status_code == 200
    sign_out(client)
    assert sign_in(client, "gil").status_code == 302
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/t/acme/users").status_code == 200
    sign_out(client)
    lines = _logged(log_output)
    pages = [(line["route"], line["tenant"]) for line in lines if line["method"] == "GET"]
    assert ("/admin/users", "acme") in pages  # bea's home tenant
    assert ("/admin/", "default") in pages  # gil's
    assert ("/admin/t/<tenant>/users", "acme") in pages
    assert all(t is None for r, t in pages if r == "/admin/login")  # nobody signed in yet

    form = {"grant_type": "client_credentials"}
    good = client.post("/oauth/token", data=form, auth=(creds["client_id"], creds["client_secret"]))
    assert good.status_code == 200, good.get_data(as_text=True)
    bad = client.post("/oauth/token", data=form, auth=(creds["client_id"], "wrong"))
    assert bad.status_code == 401
    assert [(line["status"], line["tenant"]) for line in _logged(log_output)] == [
        (200, "acme"),
        (401, None),  # the client was not authenticated: no tenant
    ]


def test_a_cli_command_run_with_tenant_logs_lines_naming_it(app: Flask, acme_token: str) -> None:
    """`--tenant SLUG` (`cli.common.for_tenant`): what a command logs names the tenant, through
    the one filter that adds it (`observability.TenantField`), and only while the command runs.
    The line here is a real one: after SECRET_KEY was rotated, `lms show` opens a target's
    token that only SECRET_KEY_PREVIOUS opens, reseals it and says so."""
    old = app_with(app, secret_key="old" * 16, secret_key_previous=())
    for slug in ("acme", "default"):
        added = feed(old, "ws-token-0123456789\n", "lms", "add", "b", "--url",
                     f"https://{slug}.lms.example", "--tenant", slug)  # fmt: skip
        assert added.exit_code == 0, added.output
    rotated = app_with(app, secret_key="new" * 16, secret_key_previous=("old" * 16,))
    config = runtime.of(rotated).config
    buffer = io.StringIO()
    observability.configure_logging(config, stream=buffer)  # after the apps: each sets its own
    try:
        for slug in ("acme", "default"):
            run(rotated, "lms", "show", "b", "--tenant", slug)
            (line,) = _logged(buffer, "app.secretbox")
            assert "is resealed under SECRET_KEY" in line["message"]
            assert line["tenant"] == slug
        logging.getLogger("app.secretbox").warning("after the command")
        (after,) = _logged(buffer, "app.secretbox")
        assert "tenant" not in after
    finally:
        observability.configure_logging(runtime.of(app).config)


def _writes(client: FlaskClient) -> tuple[float, float]:
    """User creates counted without a tenant label, and with `tenant="acme"`."""
    text = client.get("/metrics").get_data(as_text=True)
    plain = tenanted = 0.0
    for line in text.splitlines():
        if not line.startswith("lms_scim_provisioning_operations_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels["resource"] != "User" or labels["operation"] != "create":
            continue
        value = float(line.rsplit(" ", 1)[1])
        if "tenant" not in labels:
            plain += value
        elif labels["tenant"] == "acme":
            tenanted += value
    return plain, tenanted


def test_metrics_carry_the_tenant_only_when_asked(app: Flask, acme_token: str) -> None:
    off = Scim(app.test_client(), acme_token, base=ACME)
    before = _writes(off.client)
    create_user(off, "ada@acme.example")
    assert _writes(off.client) == (before[0] + 1, before[1])
    on = Scim(app_with(app, metrics_tenant_label=True).test_client(), acme_token)
    before = _writes(on.client)
    create_user(on, "bob@acme.example")
    assert _writes(on.client) == (before[0], before[1] + 1)
    # Requests without a tenant (no token) are counted without the label.
    on.client.get("/scim/v2/Users")
    assert _metric(on.client, "lms_scim_http_requests_total", tenant="acme") >= 1
    text = on.client.get("/metrics").get_data(as_text=True)
    assert 'status="401",tenant=' not in text
