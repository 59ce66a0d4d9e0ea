"""Operating the real server: its logs carry no secret, its metrics add up every worker, and
`/readyz` answers outside the token. One server at LOG_LEVEL=DEBUG (SQL statements included),
driven through a provisioning run with passwords, token mistakes and errors."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from tests.e2e.live import LiveServer, Servers, patch_body, unique_name, user_body

pytestmark = pytest.mark.e2e

PASSWORDS = ("First-Secret-pw-1", "Second-Secret-pw-2", "Third-Secret-pw-3")


@pytest.fixture(scope="module")
def debug_server(servers: Servers) -> LiveServer:
    return servers.launch("sqlite", name="debug", env={"LOG_LEVEL": "DEBUG"})


def _provisioning_run(server: LiveServer) -> dict[str, str]:
    """What an IdP does in a day, plus mistakes; returns the request ids it sent."""
    session = requests.Session()
    session.headers.update(server.headers())
    base = server.scim_url
    ids: dict[str, str] = {}

    def send(method: str, path: str, body: object = None, **headers: str) -> requests.Response:
        request_id = f"run-{uuid.uuid4().hex[:12]}"
        ids[f"{method} {path}"] = request_id
        answer = session.request(
            method,
            f"{base}{path}",
            json=body,
            headers={"X-Request-Id": request_id, **headers},
            timeout=10,
        )
        assert answer.headers["X-Request-Id"] == request_id
        return answer

    name = unique_name()
    created = send("POST", "/Users", user_body(name, password=PASSWORDS[0]))
    assert created.status_code == 201
    path = f"/Users/{created.json()['id']}"
    replaced = send("PUT", path, user_body(name, password=PASSWORDS[1]))
    assert replaced.status_code == 200
    operation = {"op": "replace", "path": "password", "value": PASSWORDS[2]}
    patched = send("PATCH", path, patch_body(operation))
    assert patched.status_code == 200
    # Mistakes: a duplicate with a password, a body that fails validation next to a password,
    # a broken JSON body containing one, and wrong tokens of several shapes.
    assert send("POST", "/Users", user_body(name, password=PASSWORDS[0])).status_code == 409
    bad = {"schemas": user_body(name)["schemas"], "userName": 7, "password": PASSWORDS[1]}
    assert send("POST", "/Users", bad).status_code == 400
    broken = session.post(
        f"{base}/Users", data=f'{{"password": "{PASSWORDS[2]}", ', timeout=10
    ).status_code
    assert broken == 400
    for authorization in (
        f"Bearer {server.token}x",
        f"Bearer lmsscim_{uuid.uuid4().hex}",
        f"Basic {PASSWORDS[0]}",
        server.token,
    ):
        answer = send("GET", "/Users", Authorization=authorization)
        assert answer.status_code == 401
    assert send("GET", f'/Users?filter=userName eq "{name}"').status_code == 200
    assert send("DELETE", path).status_code == 204
    session.close()
    return ids


def test_the_logs_of_a_provisioning_run_hold_no_secret(debug_server: LiveServer) -> None:
    request_ids = _provisioning_run(debug_server)
    log = debug_server.log.read_text(errors="replace")
    # The run was logged, at DEBUG (SQL included), one JSON line per request with its id.
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if line["logger"] == "lms_scim.request"]
    assert {line["request_id"] for line in requests_logged} >= set(request_ids.values())
    assert any(line["logger"] == "peewee" for line in lines), "no SQL was logged at DEBUG"
    for line in requests_logged:
        assert {"method", "route", "status", "duration_ms", "token", "client"} <= set(line)
    # …and nothing secret is anywhere in it.
    secrets = [debug_server.token, debug_server.token.removeprefix("lmsscim_"), *PASSWORDS]
    for secret in secrets:
        assert secret not in log
    assert "Authorization" not in log
    assert not re.search(r"Bearer\s+(?!\[redacted\])", log)
    assert "$argon2id$" not in log
    assert not re.search(r"m=[0-9]+,t=[0-9]+,p=[0-9]+\$", log)  # nor any part of a hash


def test_metrics_add_up_every_worker(debug_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {debug_server.token}"}
    sent = 40
    for _ in range(sent):
        answer = requests.get(
            f"{debug_server.scim_url}/ServiceProviderConfig", headers=headers, timeout=10
        )
        assert answer.status_code == 200
    metrics = requests.get(f"{debug_server.base_url}/metrics", timeout=10)
    assert metrics.status_code == 200
    counted = re.search(
        r'lms_scim_http_requests_total\{method="GET",route="/scim/v2/ServiceProviderConfig",'
        r'status="200"\} ([0-9.]+)',
        metrics.text,
    )
    assert counted is not None, metrics.text[:2000]
    # Two workers answered; the count is the sum of both.
    assert float(counted.group(1)) == sent
    assert "lms_scim_http_request_duration_seconds_bucket" in metrics.text
    relayed = requests.get(
        f"{debug_server.base_url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10
    )
    assert relayed.status_code == 403


def test_readyz_and_healthz_answer_without_a_token(debug_server: LiveServer) -> None:
    assert requests.get(f"{debug_server.base_url}/readyz", timeout=10).text == "ready\n"
    assert requests.get(f"{debug_server.base_url}/healthz", timeout=10).text == "ok\n"
