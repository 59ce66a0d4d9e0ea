"""Discovery (RFC 7644 §4): ServiceProviderConfig, ResourceTypes and Schemas, from scim_schemas/."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from app import docs, openapi, runtime
from app.errors import NotFound, scim_response
from app.oauth import entra
from app.oauth.endpoint import TOKEN_PATH
from app.scim import bp, mount
from app.scim.bulk import payload_limit
from app.scim.listing import default_cursor_count
from app.scim.responses import base_url
from scim_schemas import (
    LIST_RESPONSE,
    resource_type_documents,
    schema_documents,
    service_provider_config_template,
)


def _located(doc: dict[str, Any], path: str) -> dict[str, Any]:
    doc.setdefault("meta", {})["location"] = f"{base_url()}{path}"
    return doc


def _list(resources: list[dict[str, Any]]) -> Response:
    return scim_response(
        {
            "schemas": [LIST_RESPONSE],
            "totalResults": len(resources),
            "startIndex": 1,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


def service_provider_config() -> dict[str, Any]:
    """The template with the numbers this deployment actually enforces: bulk limits (RFC 7644
    §3.7.4), `filter.maxResults`, and the RFC 9865 §4 `pagination` block."""
    config = runtime.current().config
    doc = service_provider_config_template()
    doc["documentationUri"] = docs.documentation_uri()
    doc["filter"]["maxResults"] = config.max_page_size
    doc["bulk"]["maxOperations"] = config.bulk_max_operations
    doc["bulk"]["maxPayloadSize"] = payload_limit(config)
    doc["pagination"].update(
        defaultPageSize=default_cursor_count(config),
        maxPageSize=config.max_page_size,
        cursorTimeout=config.cursor_timeout_seconds,
    )
    _authentication_schemes(doc["authenticationSchemes"])
    return _located(doc, "/ServiceProviderConfig")


ENTRA_DOCUMENTATION = (
    "https://learn.microsoft.com/entra/identity/app-provisioning/"
    "use-scim-to-provision-users-and-groups"
)


def _authentication_schemes(schemes: list[dict[str, Any]]) -> None:
    """RFC 7643 §5 `authenticationSchemes`: the template's static token and client credentials
    grant (its documentationUri: this deployment's token endpoint), and, when the tenant asking
    configured an Entra directory, the tokens Entra ID signs for it (`app.oauth.entra`)."""
    current = runtime.current()
    schemes[1]["documentationUri"] = current.access_tokens.issuer() + TOKEN_PATH
    settings = current.tenant_settings()
    if settings.entra_tenant_id is None:
        return
    schemes.append(
        {
            "type": "oauthbearertoken",
            "name": "Entra ID access token",
            "description": (
                "An RS256 JWT that Entra ID signs itself when the enterprise app's Secret Token "
                f"is left blank: iss {entra.issuer(settings.entra_tenant_id)}, aud "
                f"{settings.entra_audience}, verified with the directory's published keys"
            ),
            "specUri": "https://www.rfc-editor.org/rfc/rfc7519",
            "documentationUri": ENTRA_DOCUMENTATION,
            "primary": False,
        }
    )


@bp.get("/ServiceProviderConfig")
def get_service_provider_config() -> Response:
    return scim_response(service_provider_config())


def _schemas() -> list[dict[str, Any]]:
    return [_located(doc, f"/Schemas/{doc['id']}") for doc in schema_documents()]


@bp.get("/Schemas")
def list_schemas() -> Response:
    return _list(_schemas())


def _one(docs: list[dict[str, Any]], wanted: str, what: str) -> Response:
    """The document whose `id` is `wanted` in any case (RFC 7643 §2.1), or 404."""
    for doc in docs:
        if doc["id"].casefold() == wanted.casefold():
            return scim_response(doc)
    raise NotFound(f"No {what} {wanted}.")


@bp.get("/Schemas/<path:urn>")
def get_schema(urn: str) -> Response:
    return _one(_schemas(), urn, "schema")


def _resource_types() -> list[dict[str, Any]]:
    return [_located(doc, f"/ResourceTypes/{doc['id']}") for doc in resource_type_documents()]


@bp.get("/ResourceTypes")
def list_resource_types() -> Response:
    return _list(_resource_types())


@bp.get("/ResourceTypes/<name>")
def get_resource_type(name: str) -> Response:
    return _one(_resource_types(), name, "resource type")


@bp.get("/openapi.json")
def get_openapi() -> Response:
    """The OpenAPI description (`app.openapi`), its server being the base URL asked."""
    token_url = runtime.current().access_tokens.issuer() + TOKEN_PATH
    return scim_response(openapi.document(request.script_root + mount(), token_url))
