"""A tenant's own base URL over real HTTP (gunicorn, two workers): `/t/SLUG/scim/v2` with its
token, another tenant's token (401), an unknown slug (404), links on the URL asked, the tenant
in every request log line, and the `tenant` label of the metrics (METRICS_TENANT_LABEL)."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.e2e.live import LiveServer, Servers, user_body

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: Servers) -> LiveServer:
    return servers.launch(
        "sqlite", name="tenant-urls", env={"METRICS_TENANT_LABEL": "true", "LOG_LEVEL": "INFO"}
    )


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}


def test_a_tenant_url_over_http(server: LiveServer) -> None:
    acme = _headers(server.tenant("acme"))
    base = f"{server.base_url}/t/acme/scim/v2"
    created = requests.post(
        f"{base}/Users", json=user_body("ada@acme.example"), headers=acme, timeout=10
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["Location"] == f"{base}/Users/{user['id']}"
    assert user["meta"]["location"] == created.headers["Location"]
    found = requests.get(f"{server.scim_url}/Users/{user['id']}", headers=acme, timeout=10)
    assert found.json()["meta"]["location"] == f"{server.scim_url}/Users/{user['id']}"

    foreign = requests.get(f"{base}/Users", headers=server.headers(), timeout=10)
    assert foreign.status_code == 401
    assert foreign.headers["WWW-Authenticate"].startswith("Bearer")
    assert foreign.json()["status"] == "401"
    unknown = requests.get(f"{server.base_url}/t/nobody/scim/v2/Users", headers=acme, timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["status"] == "404"

    lines = [
        json.loads(line)
        for line in server.log.read_text(errors="replace").splitlines()
        if line.startswith("{") and '"lms_scim.request"' in line
    ]
    tenants = {line["route"]: line["tenant"] for line in lines if line["status"] < 400}
    assert tenants["/t/<tenant_slug>/scim/v2/Users"] == "acme"
    assert tenants["/scim/v2/Users/<resource_id>"] == "acme"

    metrics = requests.get(f"{server.base_url}/metrics", timeout=10).text
    assert re.search(
        r'lms_scim_provisioning_operations_total\{operation="create",resource="User",'
        r'tenant="acme"\} 1\.0|lms_scim_provisioning_operations_total\{resource="User",'
        r'operation="create",tenant="acme"\} 1\.0',
        metrics,
    ), metrics[:3000]
    # A request no tenant answered (a 401) is counted without the label.
    assert re.search(r'lms_scim_http_requests_total\{[^}]*status="401"\}', metrics)
