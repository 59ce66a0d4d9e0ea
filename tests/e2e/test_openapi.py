"""schemathesis against the real server, driven by the OpenAPI document it serves.

Property-based requests for every operation (examples, coverage, fuzzing, and stateful
sequences that follow `Location`/`id` from a POST into GET, PUT, PATCH and DELETE), in positive
and negative modes. It must find no 5xx, and every response must match the document: status
codes, media type, required headers, and bodies against the schemas derived from
`scim_schemas/`. Bounded: a handful of examples per operation and a time budget.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.live import Servers, console_script

pytestmark = pytest.mark.e2e

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
MAX_EXAMPLES = 12
TIME_BUDGET_SECONDS = 40


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_schemathesis_finds_no_server_error_and_no_broken_response(
    servers: Servers, tmp_path: Path, backend: str
) -> None:
    # Generous limits: the run sends thousands of requests, some with no or a wrong token.
    server = servers.launch(
        backend,
        env={
            "RATE_LIMIT_PER_TOKEN": "1000000/minute",
            "RATE_LIMIT_PER_ADDRESS": "1000000/minute",
            "BAD_TOKEN_LIMIT": "1000000/minute",
        },
    )
    auth = {"Authorization": f"Bearer {server.token}"}
    document = requests.get(f"{server.scim_url}/openapi.json", headers=auth, timeout=10)
    assert document.status_code == 200
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(document.json()))
    started = time.monotonic()
    result = subprocess.run(
        [
            console_script("schemathesis"),
            "run",
            str(schema),
            "--url",
            server.scim_url,
            "--header",
            f"Authorization: Bearer {server.token}",
            "--checks",
            ",".join(CHECKS),
            # The OAuth endpoints live at the site's root (their own `servers`), which `--url`
            # would override; tests/api/test_small_things.py checks them against the document.
            "--exclude-path-regex",
            r"^/(oauth|\.well-known)/",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(TIME_BUDGET_SECONDS),
            "--seed",
            "6",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            # One worker: hypothesis's lambda-source parsing is not thread-safe on CPython
            # 3.11 ("AST constructor recursion depth mismatch" with several workers).
            "--workers",
            "1",
            # Text no database stores is refused with 400 (tests/api/test_hostile.py); leave it
            # out here so the generated bodies exercise the rest of the API.
            "--generation-allow-x00",
            "false",
            "--generation-codec",
            "utf-8",
            "--no-color",
            "--report",
            "ndjson",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIME_BUDGET_SECONDS * 3,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis failed after {elapsed:.0f} s:\n{output[-20000:]}"
