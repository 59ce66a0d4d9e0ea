"""The real server, started as `make run` starts it, driven over HTTP (SQLite and PostgreSQL).

What the in-process tests cannot see: the console scripts and the package as installed, gunicorn
loading `app:create_app()` with configuration from the environment only, several workers sharing
one database, and the bytes on the wire (status lines, headers, media types).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from typing import Any

import pytest
import requests

from tests.e2e.live import (
    ERROR,
    LIST_RESPONSE,
    PATCH_OP,
    SCIM_MEDIA_TYPE,
    LiveServer,
    unique_name,
    user_body,
)
from tests.helpers import PG_DSN

pytestmark = pytest.mark.e2e


def scim_json(response: requests.Response, status: int) -> dict[str, Any]:
    """The body of a SCIM response with the expected status and the SCIM media type."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["Content-Type"].split(";")[0].strip() == SCIM_MEDIA_TYPE
    return response.json()


def assert_error(response: requests.Response, status: int) -> dict[str, Any]:
    body = scim_json(response, status)
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body["detail"]
    return body


def test_healthz_answers_without_a_token(live_server: LiveServer) -> None:
    response = requests.get(f"{live_server.base_url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.text == "ok\n"


def test_migrations_are_idempotent_against_the_live_database(live_server: LiveServer) -> None:
    first = live_server.cli_output[0]
    assert "applied m0001_initial" in first
    again = live_server.cli("db", "upgrade")
    assert "(0 migration(s) applied now)" in again.stdout
    assert "applied m" not in again.stdout


def test_only_the_sha256_of_the_token_is_stored(live_server: LiveServer) -> None:
    secret = live_server.token
    assert secret.startswith("lmsscim_")
    assert len(secret) > len("lmsscim_") + 30
    if live_server.sqlite_path is not None:
        with contextlib.closing(sqlite3.connect(live_server.sqlite_path)) as conn:
            cursor = conn.execute("SELECT * FROM api_token")
            columns = [d[0] for d in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        # The raw file (and its WAL) must not hold the secret anywhere, in any table.
        for path in live_server.sqlite_path.parent.glob("e2e.db*"):
            assert secret.encode() not in path.read_bytes(), path
    else:
        import psycopg2
        import psycopg2.extras
        from psycopg2 import sql

        conn = psycopg2.connect(PG_DSN, connect_timeout=3)
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                table = sql.SQL("SELECT * FROM {}.api_token")
                cur.execute(table.format(sql.Identifier(live_server.schema)))
                rows = [dict(row) for row in cur.fetchall()]
        finally:
            conn.close()
    assert [row["name"] for row in rows] == ["e2e"]
    assert rows[0]["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for row in rows:
        for column, value in row.items():
            assert secret not in str(value), column
    # The stored prefix is what `tokens list` shows: far too short to be the secret.
    assert secret.startswith(rows[0]["prefix"])
    assert len(rows[0]["prefix"]) < 20


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/Users"),
        ("POST", "/Users"),
        ("GET", "/Users/anything"),
        ("GET", "/ServiceProviderConfig"),
        ("GET", "/Schemas"),
    ],
)
def test_requests_without_a_valid_token_are_refused(
    live_server: LiveServer, method: str, path: str
) -> None:
    url = f"{live_server.scim_url}{path}"
    for headers in ({}, {"Authorization": "Bearer lmsscim_not-a-real-token"}):
        response = requests.request(method, url, headers=headers, json={}, timeout=5)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_user_lifecycle_over_http(live_server: LiveServer, http: requests.Session) -> None:
    base = live_server.scim_url
    name = unique_name()

    # Create: 201, Location and ETag headers, no password back.
    response = http.post(
        f"{base}/Users",
        json=user_body(name, password="Corr3ct-horse!"),
        headers={"Content-Type": SCIM_MEDIA_TYPE},
    )
    created = scim_json(response, 201)
    user_id = created["id"]
    location = f"{base}/Users/{user_id}"
    assert created["userName"] == name
    assert "password" not in created
    assert created["meta"]["location"] == location
    assert response.headers["Location"] == location
    assert response.headers["ETag"] == created["meta"]["version"]

    # Read it back, from whichever worker answers.
    fetched = scim_json(http.get(location), 200)
    assert fetched["id"] == user_id
    assert fetched["name"] == {"givenName": "Ada", "familyName": "Lovelace"}
    assert fetched["active"] is True

    # Look it up by userName, case-insensitively, as IdPs do before creating.
    found = scim_json(
        http.get(f"{base}/Users", params={"filter": f'userName eq "{name.upper()}"'}), 200
    )
    assert found["schemas"] == [LIST_RESPONSE]
    assert found["totalResults"] == 1
    assert [r["id"] for r in found["Resources"]] == [user_id]

    # Deactivate with PATCH.
    patched = scim_json(
        http.patch(
            location,
            json={
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
        ),
        200,
    )
    assert patched["active"] is False
    assert patched["meta"]["version"] != created["meta"]["version"]
    inactive = scim_json(http.get(f"{base}/Users", params={"filter": "active eq false"}), 200)
    assert user_id in [r["id"] for r in inactive["Resources"]]

    # Replace with PUT: the new name is stored; `active` omitted keeps the deactivation.
    replacement = user_body(name, name={"givenName": "Augusta", "familyName": "King"})
    del replacement["active"]
    replaced = scim_json(http.put(location, json=replacement), 200)
    assert replaced["name"] == {"givenName": "Augusta", "familyName": "King"}
    assert replaced["active"] is False
    assert scim_json(http.get(location), 200)["name"]["givenName"] == "Augusta"

    # It shows up in a plain list, paginated as asked.
    listing = scim_json(http.get(f"{base}/Users", params={"count": 1000}), 200)
    assert listing["totalResults"] >= 1
    assert listing["startIndex"] == 1
    assert user_id in [r["id"] for r in listing["Resources"]]
    first_page = scim_json(http.get(f"{base}/Users", params={"count": 0}), 200)
    assert first_page.get("Resources", []) == []
    assert first_page["totalResults"] == listing["totalResults"]

    # Delete: 204 with no body, then 404 everywhere.
    response = http.delete(location)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(http.get(location), 404)
    assert_error(http.delete(location), 404)
    gone = scim_json(http.get(f"{base}/Users", params={"filter": f'userName eq "{name}"'}), 200)
    assert gone["totalResults"] == 0


def test_duplicate_user_name_is_a_409_uniqueness_error(
    live_server: LiveServer, http: requests.Session
) -> None:
    name = unique_name()
    scim_json(http.post(f"{live_server.scim_url}/Users", json=user_body(name)), 201)
    duplicate = user_body(name.upper(), emails=[{"value": f"other-{name}"}])
    body = assert_error(http.post(f"{live_server.scim_url}/Users", json=duplicate), 409)
    assert body["scimType"] == "uniqueness"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/Users/does-not-exist"),
        ("PUT", "/Users/does-not-exist"),
        ("PATCH", "/Users/does-not-exist"),
        ("DELETE", "/Users/does-not-exist"),
        ("GET", "/NoSuchEndpoint"),
        ("GET", "/Schemas/urn:example:no-such-schema"),
    ],
)
def test_unknown_resources_answer_the_404_envelope(
    live_server: LiveServer, http: requests.Session, method: str, path: str
) -> None:
    body: dict[str, Any] | None = None
    if method == "PUT":
        body = user_body(unique_name())
    elif method == "PATCH":
        body = {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "title"}]}
    response = http.request(method, f"{live_server.scim_url}{path}", json=body)
    error = assert_error(response, 404)
    assert "scimType" not in error


def test_invalid_filter_is_a_400_envelope(live_server: LiveServer, http: requests.Session) -> None:
    response = http.get(f"{live_server.scim_url}/Users", params={"filter": 'userName eq "x'})
    assert assert_error(response, 400)["scimType"] == "invalidFilter"


def test_discovery_is_served_as_scim_json(live_server: LiveServer, http: requests.Session) -> None:
    config = scim_json(http.get(f"{live_server.scim_url}/ServiceProviderConfig"), 200)
    assert config["patch"]["supported"] is True
    assert config["meta"]["location"] == f"{live_server.scim_url}/ServiceProviderConfig"
    types = scim_json(http.get(f"{live_server.scim_url}/ResourceTypes"), 200)
    assert "User" in [t["id"] for t in types["Resources"]]
