"""An OpenAPI 3.1 description of `/scim/v2`, served at `/scim/v2/openapi.json` behind the bearer
token like the rest (`app.scim.discovery`; also under a tenant's `/t/SLUG/scim/v2`).

The resource shapes are derived from the schema documents in `scim_schemas/` — the same ones
`/Schemas` serves and validation reads — so the description cannot drift from the service:
request bodies carry the writable attributes (readOnly ones left out, `required` as declared),
responses everything but `returned: never` (the password). Complex values are closed objects
(`additionalProperties: false`), so a response with an undeclared attribute breaks the document
and the schemathesis run in `tests/e2e/test_openapi.py` says so.

The document is for tools (schemathesis, client generators) and reviewers; the SCIM discovery
endpoints remain the normative description for IdPs (RFC 7644 §4).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from app.oauth.endpoint import TOKEN_PATH
from scim_schemas import (
    BULK_REQUEST,
    BULK_RESPONSE,
    ERROR,
    LIST_RESPONSE,
    PATCH_OP,
    SEARCH_REQUEST,
    Attribute,
    ResourceType,
    resource_types,
)

MEDIA = "application/scim+json"

_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "decimal": {"type": "number"},
    "integer": {"type": "integer"},
    "dateTime": {"type": "string", "format": "date-time"},
    "reference": {"type": "string"},
    "binary": {"type": "string", "format": "byte", "contentEncoding": "base64"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _attribute_schema(attribute: Attribute, writing: bool) -> dict[str, Any]:
    if attribute.is_complex:
        subs = [s for s in attribute.subs() if _included(s, writing)]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {s.name: _attribute_schema(s, writing) for s in subs},
            "additionalProperties": False,
        }
        required = [s.name for s in subs if writing and s.required]
        if required:
            schema["required"] = required
    else:
        schema = dict(_TYPES[attribute.type])
    if attribute.multi_valued:
        schema = {"type": "array", "items": schema}
    return schema


def _included(attribute: Attribute, writing: bool) -> bool:
    if writing:
        return attribute.mutability not in ("readOnly",)
    return attribute.returned != "never"


def _object(attributes: list[Attribute], writing: bool) -> dict[str, Any]:
    kept = [a for a in attributes if _included(a, writing)]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {a.name: _attribute_schema(a, writing) for a in kept},
        "additionalProperties": False,
    }
    # A request must carry what the schema requires; a response always holds `returned:
    # always` attributes (others can be left out by `attributes`/`excludedAttributes`).
    required = [a.name for a in kept if (a.required if writing else a.returned == "always")]
    if required:
        schema["required"] = required
    return schema


def resource_schema(rtype: ResourceType, writing: bool) -> dict[str, Any]:
    """A resource as sent (`writing`) or as returned, from its schema documents."""
    schema = _object(list(rtype.attributes()), writing)
    schema["properties"]["schemas"] = {
        "type": "array",
        "items": {"type": "string", "enum": list(rtype.schemas)},
        "contains": {"const": rtype.schema},
        "uniqueItems": True,
    }
    for urn in rtype.extensions:
        schema["properties"][urn] = _object(list(rtype.attributes(urn)), writing)
    schema.setdefault("required", []).insert(0, "schemas")
    return schema


def _list_schema(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["schemas", "totalResults"],
        "properties": {
            "schemas": {"type": "array", "items": {"const": LIST_RESPONSE}},
            "totalResults": {"type": "integer", "minimum": 0},
            "startIndex": {"type": "integer", "minimum": 1},
            "itemsPerPage": {"type": "integer", "minimum": 0},
            "Resources": {"type": "array", "items": item},
        },
    }


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["schemas", "status"],
    "properties": {
        "schemas": {"type": "array", "items": {"const": ERROR}},
        "status": {"type": "string", "pattern": "^[45][0-9][0-9]$"},
        "scimType": {"type": "string"},
        "detail": {"type": "string"},
    },
    "additionalProperties": False,
}

_PATCH_SCHEMA = {
    "type": "object",
    "required": ["schemas", "Operations"],
    "properties": {
        "schemas": {"type": "array", "items": {"const": PATCH_OP}, "minItems": 1},
        "Operations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["op"],
                "properties": {
                    "op": {"type": "string", "enum": ["add", "replace", "remove"]},
                    "path": {"type": "string"},
                    "value": {},
                },
            },
        },
    },
}

_SEARCH_SCHEMA = {
    "type": "object",
    "required": ["schemas"],
    "properties": {
        "schemas": {"type": "array", "items": {"const": SEARCH_REQUEST}, "minItems": 1},
        "filter": {"type": "string"},
        "sortBy": {"type": "string"},
        "sortOrder": {"type": "string", "enum": ["ascending", "descending"]},
        "startIndex": {"type": "integer"},
        "count": {"type": "integer"},
        "attributes": {"type": "array", "items": {"type": "string"}},
        "excludedAttributes": {"type": "array", "items": {"type": "string"}},
    },
}


# RFC 7644 §3.7: a BulkRequest in, a BulkResponse out (200 whenever the request as a whole could
# be read; each operation's own failure is its `status` and `response`, §3.7.3).
_BULK_METHOD = {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]}
_BULK_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["schemas", "Operations"],
    "properties": {
        "schemas": {"type": "array", "items": {"const": BULK_REQUEST}, "minItems": 1},
        "failOnErrors": {"type": "integer", "minimum": 1},
        "Operations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["method", "path"],
                "properties": {
                    "method": _BULK_METHOD,
                    "bulkId": {"type": "string", "minLength": 1},
                    "version": {"type": "string"},
                    "path": {"type": "string"},
                    "data": {},
                },
            },
        },
    },
}
_BULK_RESPONSE_SCHEMA = {
    "type": "object",
    "required": ["schemas", "Operations"],
    "properties": {
        "schemas": {"type": "array", "items": {"const": BULK_RESPONSE}},
        "Operations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "method": {
                        "type": "string",
                        "description": "As the operation sent it; absent only when it sent none "
                        "or one that is not a string.",
                    },
                    "bulkId": {"type": "string"},
                    "location": {"type": "string"},
                    "version": {"type": "string"},
                    "status": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
                    "response": {"$ref": "#/components/schemas/Error"},
                },
            },
        },
    },
}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_PROJECTION = [
    _query("attributes", {"type": "string"}),
    _query("excludedAttributes", {"type": "string"}),
]
_LISTING = [
    _query("filter", {"type": "string"}),
    _query("sortBy", {"type": "string"}),
    _query("sortOrder", {"type": "string", "enum": ["ascending", "descending"]}),
    _query("startIndex", {"type": "integer"}),
    _query("count", {"type": "integer"}),
    *_PROJECTION,
]
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

_WAIT = {"Retry-After": {"required": True, "schema": {"type": "string"}}}
_ERRORS = {
    "400": "Invalid request (scimType says why)",
    "401": "No valid bearer token",
    "403": "A read-only token tried to write",
    "404": "No such resource",
    "409": "Uniqueness conflict; detail names the existing resource",
    "412": "If-Match does not match the current version",
    "413": "Body too large",
    "415": "Body is not JSON",
    "429": "Rate limited",
    "503": "Database unavailable",
}


def _error(status: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _ERRORS[status],
        "content": {MEDIA: {"schema": _ref("Error")}},
    }
    if status in ("429", "503"):
        response["headers"] = _WAIT
    return response


def _operation(
    summary: str,
    ok: dict[str, dict[str, Any]],
    errors: str,
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": dict(ok)}
    for status in ("400 401 429 503 " + errors).split():
        operation["responses"][status] = _error(status)
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": True, "content": {MEDIA: {"schema": _ref(body)}}}
    return operation


def _json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {MEDIA: {"schema": _ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return response


_ETAG = {"ETag": {"required": True, "schema": {"type": "string"}}}
_CREATED = {**_ETAG, "Location": {"required": True, "schema": {"type": "string"}}}


def _resource_paths(rtype: ResourceType) -> dict[str, Any]:
    name, base = rtype.name, rtype.endpoint
    listed = {"200": _json(f"A page of {name}s", f"{name}List")}
    one = {"200": _json(f"The {name}", name, _ETAG)}
    patched = dict(one)
    if name == "Group":
        patched["204"] = {"description": "Patched (GROUP_PATCH_RESPONSE=204)", "headers": _ETAG}
    return {
        base: {
            "get": _operation(f"List {name}s", listed, "403", parameters=_LISTING),
            "post": _operation(
                f"Create a {name}",
                {"201": _json(f"The new {name}", name, _CREATED)},
                "403 409 413 415",
                body=f"{name}Request",
            ),
        },
        f"{base}/.search": {
            "post": _operation(f"Search {name}s", listed, "413 415", body="SearchRequest"),
        },
        f"{base}/{{id}}": {
            "get": _operation(
                f"Read a {name}",
                {**one, "304": {"description": "Not modified (If-None-Match)"}},
                "404",
                parameters=[_ID, *_PROJECTION],
            ),
            "put": _operation(
                f"Replace a {name}",
                one,
                "403 404 409 412 413 415",
                parameters=[_ID, *_PROJECTION],
                body=f"{name}Request",
            ),
            "patch": _operation(
                f"Patch a {name}",
                patched,
                "403 404 409 412 413 415",
                parameters=[_ID, *_PROJECTION],
                body="PatchOp",
            ),
            "delete": _operation(
                f"Delete a {name}",
                {"204": {"description": "Deleted"}},
                "403 404 412",
                parameters=[_ID],
            ),
        },
    }


def _discovery_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/ServiceProviderConfig": {
            "get": _operation(
                "What this service supports", {"200": _json("The configuration", "Document")}, ""
            )
        }
    }
    for kind in ("Schemas", "ResourceTypes"):
        paths[f"/{kind}"] = {
            "get": _operation(f"All {kind}", {"200": _json(kind, "DocumentList")}, "")
        }
        paths[f"/{kind}/{{id}}"] = {
            "get": _operation(
                f"One of {kind}",
                {"200": _json("The document", "Document")},
                "404",
                parameters=[_ID],
            )
        }
    return paths


@functools.cache
def _document() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": _ERROR_SCHEMA,
        "PatchOp": _PATCH_SCHEMA,
        "SearchRequest": _SEARCH_SCHEMA,
        "Document": {"type": "object", "required": ["schemas"]},
        "DocumentList": _list_schema({"type": "object"}),
    }
    paths: dict[str, Any] = {}
    for rtype in resource_types().values():
        schemas[rtype.name] = resource_schema(rtype, writing=False)
        schemas[f"{rtype.name}Request"] = resource_schema(rtype, writing=True)
        schemas[f"{rtype.name}List"] = _list_schema(_ref(rtype.name))
        paths.update(_resource_paths(rtype))
    # RFC 7644 §3.4.3: every resource type at once, each resource as its own type returns it.
    schemas["ResourceList"] = _list_schema({"anyOf": [_ref(name) for name in resource_types()]})
    paths["/.search"] = {
        "post": _operation(
            "Search all resource types",
            {"200": _json("A page of resources of every type", "ResourceList")},
            "413 415",
            body="SearchRequest",
        )
    }
    schemas["BulkRequest"] = _BULK_REQUEST_SCHEMA
    schemas["BulkResponse"] = _BULK_RESPONSE_SCHEMA
    paths["/Bulk"] = {
        "post": _operation(
            "Several writes in one request (RFC 7644 §3.7)",
            {"200": _json("Each operation's outcome, in request order", "BulkResponse")},
            "403 413 415",
            body="BulkRequest",
        )
    }
    paths.update(_discovery_paths())
    paths.update(_oauth_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lms-scim",
            "version": "2.0",
            "description": "SCIM 2.0 (RFC 7643, RFC 7644) provisioning of an LMS user store.",
        },
        "servers": [{"url": "/scim/v2"}],
        "security": [
            {"bearer": []},
            {"oauth2": ["scim.read", "scim.write"]},
            {"entra": []},
        ],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _SECURITY_SCHEMES},
    }


# The OAuth 2.0 endpoints live at the site's root, not under the SCIM base: each path names its
# own server (OpenAPI 3.1 path-level `servers`), set by `document` from the token URL.
OAUTH_PATHS = (TOKEN_PATH, "/.well-known/jwks.json", "/.well-known/oauth-authorization-server")
_FORM = "application/x-www-form-urlencoded"
_OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "enum": [
                "invalid_client",
                "invalid_request",
                "unsupported_grant_type",
                "invalid_scope",
                "temporarily_unavailable",
            ]
        },
        "error_description": {"type": "string"},
    },
}
_NO_STORE = {"Cache-Control": {"required": True, "schema": {"const": "no-store"}}}


def _oauth_json(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _oauth_paths() -> dict[str, Any]:
    token = {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "scope"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "minimum": 1},
            "scope": {"type": "string"},
        },
    }
    request = {
        "type": "object",
        "required": ["grant_type"],
        "properties": {
            "grant_type": {"const": "client_credentials"},
            "scope": {"type": "string", "description": "`scim.read`, `scim.write` or both"},
            "client_id": {"type": "string", "description": "client_secret_post only"},
            "client_secret": {"type": "string", "description": "client_secret_post only"},
        },
    }
    refused = "An RFC 6749 §5.2 error"
    return {
        TOKEN_PATH: {
            "post": {
                "summary": "An access token for a client (RFC 6749 §4.4, client credentials)",
                "description": "The client authenticates by HTTP Basic (client_secret_basic) "
                "or by `client_id`/`client_secret` fields (client_secret_post).",
                "security": [],
                "requestBody": {"required": True, "content": {_FORM: {"schema": request}}},
                "responses": {
                    "200": _oauth_json("An RFC 9068 JWT access token", token, headers=_NO_STORE),
                    "400": _oauth_json(refused, _OAUTH_ERROR, headers=_NO_STORE),
                    "401": _oauth_json(
                        f"{refused}: invalid_client",
                        _OAUTH_ERROR,
                        headers={**_NO_STORE, "WWW-Authenticate": {"schema": {"type": "string"}}},
                    ),
                    "429": _oauth_json(
                        f"{refused}: temporarily_unavailable",
                        _OAUTH_ERROR,
                        headers={**_NO_STORE, **_WAIT},
                    ),
                    "503": _oauth_json(
                        "temporarily_unavailable: the signing key does not open under SECRET_KEY",
                        _OAUTH_ERROR,
                        headers=_NO_STORE,
                    ),
                },
            }
        },
        "/.well-known/jwks.json": {
            "get": {
                "summary": "The public keys access tokens are signed with (RFC 7517)",
                "security": [],
                "responses": {"200": _oauth_json("A JWK set", {"type": "object"})},
            }
        },
        "/.well-known/oauth-authorization-server": {
            "get": {
                "summary": "Authorization server metadata (RFC 8414)",
                "security": [],
                "responses": {"200": _oauth_json("The metadata", {"type": "object"})},
            }
        },
    }


# Every request carries `Authorization: Bearer …` in one of three forms (README "Tokens").
_SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A static token (`lmsscim_…`) from `lms-scim tokens create`; rotate with "
        "`tokens rotate --grace`.",
    },
    "oauth2": {
        "type": "oauth2",
        "description": "A short-lived JWT access token (RFC 9068, ES256, `typ: at+jwt`) for a "
        "client from `lms-scim clients create`, sent as a bearer token. The token endpoint "
        "(RFC 6749 §4.4) takes `POST` application/x-www-form-urlencoded with "
        "`grant_type=client_credentials` and optional `scope`, the client authenticated by HTTP "
        "Basic (`client_secret_basic`) or by `client_id`/`client_secret` fields "
        "(`client_secret_post`); it answers `access_token`, `token_type: Bearer`, `expires_in`, "
        "`scope` with `Cache-Control: no-store`, or an RFC 6749 §5.2 error (`invalid_client` "
        "401, `invalid_request`, `unsupported_grant_type`, `invalid_scope`; 429 or 503 "
        "`temporarily_unavailable`). Metadata (RFC 8414): "
        "`/.well-known/oauth-authorization-server`; keys: `/.well-known/jwks.json`.",
        "flows": {
            "clientCredentials": {
                "tokenUrl": "/oauth/token",
                "scopes": {
                    "scim.read": "read users, groups and discovery",
                    "scim.write": "create, change and delete",
                },
            }
        },
    },
    "entra": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token Entra ID signs itself (its provisioning with the Secret Token "
        "left blank), for a tenant that configured ENTRA_TENANT_ID: RS256, `iss` "
        "`https://sts.windows.net/<directory id>/`, `aud` ENTRA_AUDIENCE, verified with the "
        "directory's published key set. Reads and writes.",
    },
}


def document(
    server: str = "/scim/v2",
    token_url: str = TOKEN_PATH,
) -> dict[str, Any]:
    """The OpenAPI document (a fresh copy) for the base path `server`, whose OAuth token
    endpoint (`POST /oauth/token`, client credentials grant) is at `token_url`."""
    doc = copy.deepcopy(_document())
    doc["servers"] = [{"url": server}]
    flows = doc["components"]["securitySchemes"]["oauth2"]["flows"]
    flows["clientCredentials"]["tokenUrl"] = token_url
    root = token_url.removesuffix(OAUTH_PATHS[0])
    for path in OAUTH_PATHS:
        doc["paths"][path]["servers"] = [{"url": root or "/"}]
    return doc
