"""SCIM responses: links that depend on the external base URL, attribute projection, ETag and
Location headers, ListResponse bodies (RFC 7644 §3.1, §3.4.2, §3.9, §3.14)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, g, request

from app import etags, runtime
from app.attributes import Projection, across, split_list
from app.errors import scim_response
from app.scim import SCIM_PREFIX, mount
from app.store.audit import Actor
from scim_schemas import ENTERPRISE_USER, LIST_RESPONSE, ResourceType


def base_url() -> str:
    """The external base URL of this request (RFC 7644 §3.1 `meta.location`, §3.3 `Location`):
    `/scim/v2` or the tenant's `/t/SLUG/scim/v2`, whichever it came in on, on this host, or
    on `SCIM_BASE_URL`'s when that is set (a proxy in front may rename hosts and schemes)."""
    path = mount()
    configured = runtime.current().config.scim_base_url
    if not configured:
        return request.url_root.rstrip("/") + path
    configured = configured.rstrip("/")
    if path == SCIM_PREFIX:
        return configured
    if configured.endswith(SCIM_PREFIX):  # https://x/scim/v2 → https://x/t/SLUG/scim/v2
        return configured[: -len(SCIM_PREFIX)] + path
    # SCIM_BASE_URL names another path (a proxy maps it onto /scim/v2): keep its scheme and
    # host, and the path this request came in on.
    origin = urlsplit(configured)
    return f"{origin.scheme}://{origin.netloc}{request.script_root}{path}"


def actor() -> Actor:
    principal = g.get("principal")
    return Actor(principal.token_name if principal else None, g.get("request_id"))


def with_links(
    rtype: ResourceType, resource: dict[str, Any], base: str | None = None
) -> dict[str, Any]:
    """Add `meta.location` and `$ref`s, which depend on the external base URL (`base`, when
    the caller has it already: a page works it out once, not once per resource)."""
    base = base_url() if base is None else base
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


def projections(rtypes: Iterable[ResourceType], source: dict[str, Any]) -> dict[str, Projection]:
    """`projection` of each type in a search across them (`app.attributes.across`)."""
    return across(
        rtypes, split_list(source.get("attributes")), split_list(source.get("excludedAttributes"))
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


def list_body(
    total: int, start_index: int | None, resources: list[Any], next_cursor: str | None = None
) -> dict[str, Any]:
    """A ListResponse (RFC 7644 §3.4.2) of already shaped resources; under cursor paging
    (RFC 9865 §2) no `startIndex`, and `nextCursor` unless this is the last page."""
    body: dict[str, Any] = {"schemas": [LIST_RESPONSE], "totalResults": total}
    if start_index is not None:
        body["startIndex"] = start_index
    body["itemsPerPage"] = len(resources)
    if next_cursor is not None:
        body["nextCursor"] = next_cursor
    body["Resources"] = resources
    return body


def list_response(
    rtype: ResourceType,
    total: int,
    start_index: int | None,
    resources: list[dict[str, Any]],
    plan: Projection,
    next_cursor: str | None = None,
) -> Response:
    base = base_url()
    shaped = [plan.apply(with_links(rtype, r, base)) for r in resources]
    return scim_response(list_body(total, start_index, shaped, next_cursor))


def not_modified(resource: dict[str, Any]) -> bool:
    """Whether `If-None-Match` names the resource's current version (RFC 7644 §3.14)."""
    return etags.matches(request.headers.get("If-None-Match"), resource["meta"]["version"])
