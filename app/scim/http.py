"""Small HTTP helpers shared by the SCIM endpoints: bodies in, SCIM responses out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, current_app, g, request, stream_with_context

from app.attributes import Projection, split_list
from app.errors import SCIM_MEDIA_TYPE, InvalidSyntax, InvalidValue, ScimError, scim_response
from app.store.audit import Actor
from scim_schemas import ENTERPRISE_USER, LIST_RESPONSE, ResourceType

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
    manager = resource.get(ENTERPRISE_USER, {}).get("manager")
    if manager and manager.get("value"):
        manager["$ref"] = f"{base}/Users/{manager['value']}"  # RFC 7643 §4.3: RECOMMENDED
    link_members(resource.get("members", ()), base)
    return resource


def link_members(members: Iterable[dict[str, Any]], base: str) -> None:
    """Each member's `$ref` (RFC 7643 §4.2): the URI of the User or Group it is."""
    for member in members:
        member["$ref"] = (
            f"{base}/{'Groups' if member.get('type') == 'Group' else 'Users'}/{member['value']}"
        )


def projection(rtype: ResourceType, source: dict[str, Any] | None = None) -> Projection:
    """The attributes/excludedAttributes of this request (query string or .search body)."""
    source = request.args if source is None else source
    return Projection(
        rtype, split_list(source.get("attributes")), split_list(source.get("excludedAttributes"))
    )


def resource_headers(resource: dict[str, Any], status: int) -> dict[str, str]:
    """ETag (RFC 7644 §3.14) and, for a 201, Location (§3.3) of a linked resource."""
    headers = {"ETag": resource["meta"]["version"]}
    if status == 201:
        headers["Location"] = resource["meta"]["location"]
    return headers


def resource_response(
    rtype: ResourceType,
    resource: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    resource = with_links(rtype, resource)
    headers = {**(headers or {}), **resource_headers(resource, status)}
    return scim_response(projection(rtype).apply(resource), status, headers)


def list_body(total: int, start_index: int, resources: list[Any]) -> dict[str, Any]:
    """A ListResponse (RFC 7644 §3.4.2) of already shaped resources."""
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def list_response(
    rtype: ResourceType,
    total: int,
    start_index: int,
    resources: list[dict[str, Any]],
    plan: Projection,
) -> Response:
    shaped = [plan.apply(with_links(rtype, r)) for r in resources]
    return scim_response(list_body(total, start_index, shaped))


class JsonArray:
    """A JSON array whose items arrive as chunks (lists) from an iterator while it is written.

    Put one in a response body and send it with `streaming_response`: no more than one chunk
    of items is in memory at a time (a group's members, read `CHUNK` rows per query).
    """

    def __init__(self, chunks: Iterable[list[Any]]) -> None:
        self.chunks = chunks


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _json_parts(value: Any) -> Iterator[str]:
    if isinstance(value, JsonArray):
        yield "["
        first = True
        for chunk in value.chunks:
            if chunk:  # one encoder call per chunk: `[a,b]` less its brackets is `a,b`
                yield ("" if first else ",") + _dumps(chunk)[1:-1]
                first = False
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + _dumps(key) + ":"
            yield from _json_parts(item)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _json_parts(item)
        yield "]"
    else:
        yield _dumps(value)


def _buffered(parts: Iterable[str], size: int = 64 * 1024) -> Iterator[bytes]:
    pending: list[str] = []
    length = 0
    for part in parts:
        pending.append(part)
        length += len(part)
        if length >= size:
            yield "".join(pending).encode("utf-8")
            pending, length = [], 0
    if pending:
        yield "".join(pending).encode("utf-8")


def streaming_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A SCIM JSON response written while it is read from the database (see `JsonArray`).

    The status and headers leave before the body, so a failure half-way cuts the connection
    instead of turning into an error envelope.
    """
    chunks = stream_with_context(_buffered(_json_parts(body)))
    response = Response(chunks, status=status, mimetype=SCIM_MEDIA_TYPE)
    if headers:
        response.headers.update(headers)
    return response


def not_modified(resource: dict[str, Any]) -> bool:
    """Whether `If-None-Match` names the resource's current version (RFC 7644 §3.14)."""
    tags = [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]
    return resource["meta"]["version"] in tags or "*" in tags


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
