"""Small HTTP helpers shared by the SCIM endpoints: bodies in, SCIM responses out."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, g, request

from app.attributes import Projection, split_list
from app.errors import InvalidSyntax, InvalidValue, ScimError, scim_response
from app.store.audit import Actor
from scim_schemas import LIST_RESPONSE, ResourceType

_JSON_TYPES = ("application/scim+json", "application/json")


def read_json() -> Any:
    """The request body as JSON; 415 for other media types, 400 invalidSyntax if malformed."""
    mimetype = request.mimetype
    if mimetype and mimetype not in _JSON_TYPES:
        raise ScimError(
            "Send the body as application/scim+json or application/json.",
            status=415,
            scim_type="invalidSyntax",
        )
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidSyntax("The request body is empty.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidSyntax(f"The request body is not valid JSON: {exc}") from None


def base_url() -> str:
    configured = current_app.config["SCIM"].scim_base_url
    if configured:
        return configured.rstrip("/")
    return request.url_root.rstrip("/") + "/scim/v2"


def actor() -> Actor:
    principal = g.get("principal")
    return Actor(principal.token_name if principal else None, g.get("request_id"))


def with_links(rtype: ResourceType, resource: dict[str, Any]) -> dict[str, Any]:
    """Add `meta.location` and `$ref`s, which depend on the external base URL."""
    base = base_url()
    resource["meta"]["location"] = f"{base}{rtype.endpoint}/{resource['id']}"
    for group in resource.get("groups", ()):
        group["$ref"] = f"{base}/Groups/{group['value']}"
    for member in resource.get("members", ()):
        member["$ref"] = (
            f"{base}/{'Groups' if member.get('type') == 'Group' else 'Users'}/{member['value']}"
        )
    return resource


def projection(rtype: ResourceType, source: dict[str, Any] | None = None) -> Projection:
    """The attributes/excludedAttributes of this request (query string or .search body)."""
    source = request.args if source is None else source
    return Projection(
        rtype, split_list(source.get("attributes")), split_list(source.get("excludedAttributes"))
    )


def resource_response(
    rtype: ResourceType,
    resource: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    resource = with_links(rtype, resource)
    headers = dict(headers or {})
    headers["ETag"] = resource["meta"]["version"]
    if status == 201:
        headers["Location"] = resource["meta"]["location"]
    return scim_response(projection(rtype).apply(resource), status, headers)


def list_response(
    rtype: ResourceType,
    total: int,
    start_index: int,
    resources: list[dict[str, Any]],
    plan: Projection,
) -> Response:
    return scim_response(
        {
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": len(resources),
            "Resources": [plan.apply(with_links(rtype, r)) for r in resources],
        }
    )


def integer_param(source: Any, name: str, default: int) -> int:
    raw = source.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise InvalidValue(f"{name} must be an integer.")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidValue(f"{name} must be an integer.") from None


def if_match() -> str | None:
    return request.headers.get("If-Match")
