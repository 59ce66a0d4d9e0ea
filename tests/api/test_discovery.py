"""Discovery endpoints (RFC 7644 §4): ServiceProviderConfig, Schemas and ResourceTypes.

The documents served must be the JSON files in `scim_schemas/` as they are, with only
`meta.location` made absolute (and the limits this deployment enforces filled in).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from importlib import resources
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Config
from scim_schemas import CORE_GROUP, CORE_USER, ENTERPRISE_USER, LIST_RESPONSE, LMS_USER
from tests.helpers import assert_error

BASE = "http://localhost/scim/v2"
SCHEMA_FILES = {
    CORE_USER: "user.json",
    CORE_GROUP: "group.json",
    ENTERPRISE_USER: "enterprise_user.json",
    LMS_USER: "lms_user.json",
}


def load(name: str) -> Any:
    return json.loads(resources.files("scim_schemas").joinpath(name).read_text(encoding="utf-8"))


def located(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """The file's document as it should be served: the same, with an absolute location."""
    expected = copy.deepcopy(doc)
    expected.setdefault("meta", {})["location"] = f"{BASE}{path}"
    return expected


def ok_json(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/scim+json"
    return response.get_json()


def assert_list_response(body: dict[str, Any], count: int) -> list[dict[str, Any]]:
    assert body["schemas"] == [LIST_RESPONSE]
    assert body["totalResults"] == count
    assert body["itemsPerPage"] == count
    assert body["startIndex"] == 1
    assert len(body["Resources"]) == count
    return body["Resources"]


# -- ServiceProviderConfig (RFC 7643 §5) ------------------------------------------------------


def test_service_provider_config_has_every_rfc7643_section5_field(scim: Any) -> None:
    body = ok_json(scim.get("/ServiceProviderConfig"))
    assert body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    assert "documentationUri" in body
    assert body["documentationUri"] is None or isinstance(body["documentationUri"], str)
    for feature in ("patch", "changePassword", "sort", "etag"):
        assert isinstance(body[feature]["supported"], bool), feature
    assert isinstance(body["bulk"]["supported"], bool)
    assert isinstance(body["bulk"]["maxOperations"], int)
    assert isinstance(body["bulk"]["maxPayloadSize"], int)
    assert isinstance(body["filter"]["supported"], bool)
    assert isinstance(body["filter"]["maxResults"], int)
    schemes = body["authenticationSchemes"]
    assert schemes, "at least one authentication scheme"
    for scheme in schemes:
        assert scheme["type"] == "oauthbearertoken"
        assert scheme["name"]
        assert scheme["description"]
    assert body["meta"]["resourceType"] == "ServiceProviderConfig"
    assert body["meta"]["location"] == f"{BASE}/ServiceProviderConfig"


def test_service_provider_config_advertises_what_the_service_does(scim: Any) -> None:
    body = ok_json(scim.get("/ServiceProviderConfig"))
    assert body["patch"]["supported"] is True
    assert body["filter"]["supported"] is True
    assert body["etag"]["supported"] is True
    assert body["sort"]["supported"] is True
    assert body["bulk"] == {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1048576}
    assert body["pagination"]["cursor"] is True
    assert body["pagination"]["index"] is True


def test_service_provider_config_is_the_file_with_the_deployment_limits(
    config: Config, token: str
) -> None:
    app = create_app(dataclasses.replace(config, max_page_size=250))
    response = app.test_client().get(
        "/scim/v2/ServiceProviderConfig", headers={"Authorization": f"Bearer {token}"}
    )
    body = ok_json(response)
    assert body["filter"]["maxResults"] == 250
    expected = located(load("service_provider_config.json"), "/ServiceProviderConfig")
    # The client credentials scheme documents this deployment's token endpoint.
    expected["authenticationSchemes"][1]["documentationUri"] = "http://localhost/oauth/token"
    expected["filter"]["maxResults"] = 250
    expected["pagination"]["maxPageSize"] = 250
    expected["documentationUri"] = "http://localhost/docs/idp-setup.md"  # app/docs.py
    assert body == expected


# -- Schemas (RFC 7643 §7, RFC 7644 §4) -------------------------------------------------------


def test_schemas_is_a_list_response_of_the_four_schemas(scim: Any) -> None:
    resources_ = assert_list_response(ok_json(scim.get("/Schemas")), len(SCHEMA_FILES))
    assert {doc["id"] for doc in resources_} == set(SCHEMA_FILES)


@pytest.mark.parametrize(("urn", "filename"), SCHEMA_FILES.items())
def test_served_schemas_are_exactly_the_json_files(scim: Any, urn: str, filename: str) -> None:
    expected = located(load(filename), f"/Schemas/{urn}")
    assert expected["id"] == urn
    listed = {doc["id"]: doc for doc in ok_json(scim.get("/Schemas"))["Resources"]}
    assert listed[urn] == expected
    single = ok_json(scim.get(f"/Schemas/{urn}"))
    assert single == expected
    assert single["meta"]["resourceType"] == "Schema"


def test_an_unknown_schema_is_a_404_envelope(scim: Any) -> None:
    body = assert_error(scim.get("/Schemas/urn:example:params:scim:schemas:nothing"), 404)
    assert "scimType" not in body


# -- ResourceTypes (RFC 7643 §6, RFC 7644 §4) -------------------------------------------------


def test_resource_types_is_a_list_response_of_the_file(scim: Any) -> None:
    documents = load("resource_types.json")
    served = assert_list_response(ok_json(scim.get("/ResourceTypes")), len(documents))
    assert served == [located(doc, f"/ResourceTypes/{doc['id']}") for doc in documents]
    assert {doc["id"] for doc in served} >= {"User", "Group"}


def test_the_user_resource_type_names_its_schema_and_extensions(scim: Any) -> None:
    body = ok_json(scim.get("/ResourceTypes/User"))
    expected = next(doc for doc in load("resource_types.json") if doc["id"] == "User")
    assert body == located(expected, "/ResourceTypes/User")
    assert body["endpoint"] == "/Users"
    assert body["schema"] == CORE_USER
    assert {ext["schema"]: ext["required"] for ext in body["schemaExtensions"]} == {
        ENTERPRISE_USER: False,
        LMS_USER: False,
    }
    assert body["meta"]["resourceType"] == "ResourceType"
    assert body["meta"]["location"] == f"{BASE}/ResourceTypes/User"


def test_every_resource_type_schema_is_served(scim: Any) -> None:
    for resource_type in ok_json(scim.get("/ResourceTypes"))["Resources"]:
        urns = [resource_type["schema"]] + [e["schema"] for e in resource_type["schemaExtensions"]]
        for urn in urns:
            assert ok_json(scim.get(f"/Schemas/{urn}"))["id"] == urn


def test_an_unknown_resource_type_is_a_404_envelope(scim: Any) -> None:
    assert_error(scim.get("/ResourceTypes/Printer"), 404)


@pytest.mark.parametrize("path", ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_discovery_endpoints_are_read_only(scim: Any, method: str, path: str) -> None:
    assert_error(scim.request(method, path, {"schemas": []}), 405)


# -- Authentication ---------------------------------------------------------------------------

DISCOVERY_PATHS = [
    "/ServiceProviderConfig",
    "/Schemas",
    f"/Schemas/{CORE_USER}",
    f"/Schemas/{LMS_USER}",
    "/Schemas/urn:example:unknown",
    "/ResourceTypes",
    "/ResourceTypes/User",
    "/ResourceTypes/Unknown",
]


@pytest.mark.parametrize("path", DISCOVERY_PATHS)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer lmsscim_wrong", "Basic dXNlcjpwYXNz", "Bearer "],
    ids=["none", "wrong-token", "basic", "empty-bearer"],
)
def test_every_discovery_route_requires_the_token(
    app: Flask, client: FlaskClient, token: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get(f"/scim/v2{path}", headers=headers)
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # The same request with the token is not refused.
    allowed = client.get(f"/scim/v2{path}", headers={"Authorization": f"Bearer {token}"})
    assert allowed.status_code in (200, 404)
