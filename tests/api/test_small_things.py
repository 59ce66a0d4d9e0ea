"""What a new user notices first (issue 19 §5): one charset on `/metrics`, a documentationUri that
leads to the docs, an OpenAPI document that covers `/Bulk` and `/.search`, and unquoted filter
values taken as strings."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from app import docs
from tests.helpers import Scim, app_with, create_user, user_body


def test_metrics_content_type_carries_one_charset(app: Flask) -> None:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    content_type = response.headers["Content-Type"]
    assert content_type.lower().count("charset") == 1, content_type
    assert content_type.startswith("text/plain; version=")


def test_documentation_uri_points_at_the_setup_guide_it_serves(scim: Scim) -> None:
    body = scim.get("/ServiceProviderConfig").get_json()
    assert body["documentationUri"] == "http://localhost/docs/idp-setup.md"
    guide = scim.client.get("/docs/idp-setup.md")  # public, like the repository
    assert guide.status_code == 200
    assert guide.headers["Content-Type"] == "text/markdown; charset=utf-8"
    text = guide.get_data(as_text=True)
    assert text == (docs.DOCS / "idp-setup.md").read_text(encoding="utf-8")
    assert "## Okta" in text
    assert "## Microsoft Entra ID" in text


def test_documentation_uri_follows_scim_base_url(app: Flask, token: str) -> None:
    behind = Scim.of(app_with(app, scim_base_url="https://lms.example.com/scim/v2"), token)
    body = behind.get("/ServiceProviderConfig").get_json()
    assert body["documentationUri"] == "https://lms.example.com/docs/idp-setup.md"


def test_only_markdown_files_of_the_docs_folder_are_served(app: Flask) -> None:
    client = app.test_client()
    for path in (
        "/docs/nothing.md",
        "/docs/..%2FREADME.md",
        "/docs/../README.md",
        "/docs/bench-2026-12-02",
        "/docs/performance.png",
        "/docs/.md",
        "/docs/IDP-SETUP.md",
    ):
        assert client.get(path).status_code == 404, path


def test_no_docs_folder_means_no_documentation_uri(
    scim: Scim, monkeypatch: Any, tmp_path: Any
) -> None:
    monkeypatch.setattr(docs, "DOCS", tmp_path)
    assert scim.get("/ServiceProviderConfig").get_json()["documentationUri"] is None
    assert scim.client.get("/docs/idp-setup.md").status_code == 404


def _conforms(value: Any, schema: dict[str, Any], components: dict[str, Any]) -> None:
    """The parts of JSON Schema the Bulk schemas use: $ref, type, required, properties,
    items, enum, const, pattern."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    kinds = {"object": dict, "array": list, "string": str, "integer": int}
    if "type" in schema:
        assert isinstance(value, kinds[schema["type"]]), (value, schema)
    if "const" in schema:
        assert value == schema["const"]
    if "enum" in schema:
        assert value in schema["enum"]
    if "pattern" in schema:
        assert re.search(schema["pattern"], value), (value, schema["pattern"])
    if isinstance(value, dict):
        assert set(schema.get("required", ())) <= set(value), (value, schema)
        properties = schema.get("properties", {})
        if properties:
            assert set(value) <= set(properties), (set(value) - set(properties), schema)
        for key, item in value.items():
            if key in properties:
                _conforms(item, properties[key], components)
    if isinstance(value, list) and "items" in schema:
        for item in value:
            _conforms(item, schema["items"], components)


def test_openapi_covers_bulk_and_search_as_they_answer(scim: Scim) -> None:
    document = scim.get("/openapi.json").get_json()
    paths, components = document["paths"], document["components"]["schemas"]
    assert "/.search" in paths
    assert paths["/Users/.search"]["post"]["requestBody"]
    bulk = paths["/Bulk"]["post"]
    assert set(bulk["responses"]) >= {"200", "400", "401", "403", "413"}
    body_ref = bulk["requestBody"]["content"]["application/scim+json"]["schema"]["$ref"]
    taken = "taken@example.com"
    existing = create_user(scim, taken)
    request = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "bulkId": "a", "path": "/Users", "data": user_body("bulk-a")},
            {"method": "POST", "bulkId": "b", "path": "/Users", "data": user_body(taken)},
            {"method": "DELETE", "path": f"/Users/{existing['id']}"},
        ],
    }
    _conforms(request, {"$ref": body_ref}, components)
    response = scim.post("/Bulk", request)
    assert response.status_code == 200
    ok = bulk["responses"]["200"]["content"]["application/scim+json"]["schema"]
    answer = response.get_json()
    _conforms(answer, ok, components)
    assert [op["status"] for op in answer["Operations"]] == ["201", "409", "204"]
    search_request = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName eq "bulk-a"',
    }
    search = scim.post("/.search", search_request)
    listed = paths["/.search"]["post"]["responses"]["200"]["content"]["application/scim+json"]
    assert listed["schema"]["$ref"].endswith("/ResourceList")
    assert search.get_json()["totalResults"] == 1


def test_an_unquoted_filter_value_is_a_string(scim: Scim) -> None:
    alice = create_user(scim, "alice")
    create_user(scim, "alice2")
    body = scim.get("/Users", query_string={"filter": "userName eq alice"}).get_json()
    assert [r["id"] for r in body["Resources"]] == [alice["id"]]
    # Only where it cannot be anything else: a keyword or a number-like word is refused.
    for text in ("userName eq and", "userName eq 1a"):
        refused = scim.get("/Users", query_string={"filter": text})
        assert refused.status_code == 400, text
        assert refused.get_json()["scimType"] == "invalidFilter"
    readme = (docs.DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert '`userName eq alice` is accepted and means `userName eq "alice"`' in readme


def test_openapi_covers_the_oauth_endpoints_at_the_sites_root(app: Flask, scim: Scim) -> None:
    """The token endpoint, the key set and the RFC 8414 metadata are in the OpenAPI document,
    each with the server it really lives on (not under /scim/v2), and what they answer keeps
    to what it says."""
    document = scim.get("/openapi.json").get_json()
    paths = document["paths"]
    for path in (
        "/oauth/token",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ):
        assert paths[path]["servers"] == [{"url": "http://localhost"}], path
    token = paths["/oauth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    client = app.test_client()
    refused = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert str(refused.status_code) in token["responses"]
    error_enum = token["responses"]["401"]["content"]["application/json"]["schema"]
    assert refused.get_json()["error"] in error_enum["properties"]["error"]["enum"]
    assert refused.headers["Cache-Control"] == "no-store"
    wrong_grant = client.post("/oauth/token", data={"grant_type": "password"})
    assert str(wrong_grant.status_code) in token["responses"]
    assert wrong_grant.get_json()["error"] in error_enum["properties"]["error"]["enum"]
    metadata = client.get("/.well-known/oauth-authorization-server").get_json()
    server = paths["/oauth/token"]["servers"][0]["url"]
    assert metadata["token_endpoint"] == server + "/oauth/token"
    assert metadata["jwks_uri"] == server + "/.well-known/jwks.json"
    assert isinstance(client.get("/.well-known/jwks.json").get_json()["keys"], list)
