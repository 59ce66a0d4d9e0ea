"""Small HTTP helpers shared by the SCIM endpoints: bodies in, SCIM responses out."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, current_app, g, request, stream_with_context

from app import etags
from app.attributes import Projection, split_list
from app.errors import (
    SCIM_MEDIA_TYPE,
    InvalidSyntax,
    InvalidValue,
    NotFound,
    ScimError,
    scim_response,
)
from app.store.audit import Actor
from scim_schemas import ENTERPRISE_USER, LIST_RESPONSE, ResourceType

_JSON_TYPES = ("application/scim+json", "application/json")

Outcome = tuple[int, dict[str, Any] | None]
"""What a write endpoint's plain function returns: the HTTP status and the resource (None for
a DELETE's 204). See `app.scim.endpoint`."""


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
    limit = current_app.config["SCIM"].max_json_depth
    if nesting_exceeds(raw, limit):
        raise InvalidSyntax(f"The request body nests arrays and objects deeper than {limit}.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidSyntax(f"The request body is not valid JSON: {exc}") from None
    # JSON can spell what no text column stores: `\u0000`, and a lone `\ud800` (valid pairs
    # are joined by the parser). Only bodies that contain such an escape are walked.
    if (b"\\u0000" in raw or re.search(rb"\\u[dD][89a-fA-F]", raw)) and _unstorable(body):
        raise InvalidValue("Text may not contain NUL characters or unpaired surrogates.")
    return body


def _unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value or (not value.isascii() and _has_lone_surrogate(value))
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(item) for item in value)
    return False


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def refuse_nul_in_path() -> None:
    """before_request: no id contains NUL (and PostgreSQL refuses to compare with one)."""
    if "\x00" in request.path:
        raise NotFound("No such resource or endpoint.")


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, checked before parsing.

    Python's json has no depth limit (it recurses until RecursionError), and everything after
    it walks bodies recursively. Strings are cut out with one regex and the brackets left are
    counted with an early exit, so a 1 MiB body costs a few milliseconds.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


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
    shaped = [plan.apply(with_links(rtype, r)) for r in resources]
    return scim_response(list_body(total, start_index, shaped, next_cursor))


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
    return etags.matches(request.headers.get("If-None-Match"), resource["meta"]["version"])


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
