"""`/Groups`: create, read, replace, patch, delete and list (RFC 7644 §3.2 to §3.6).

Groups are the LMS's audiences. Members are streamed into responses (`http.JsonArray`), never
built as one list, and are not read at all when the request leaves them out
(`excludedAttributes=members`, as Entra ID asks, or `attributes` without them, RFC 7644 §3.9).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request

from app import marshal, patch
from app.attributes import Projection
from app.scim import bp
from app.scim.http import (
    JsonArray,
    actor,
    base_url,
    if_match,
    link_members,
    list_body,
    not_modified,
    projection,
    read_json,
    resource_headers,
    streaming_response,
    with_links,
)
from app.scim.listing import parse_list_query, search_request
from app.store import groups as store
from app.store.search import GROUP_COMPILER
from scim_schemas import CORE_GROUP, resource_type

GROUP = resource_type("Group")


def _config() -> Any:
    return current_app.config["SCIM"]


def _member_chunks(
    feed: store.MemberFeed, group_id: str, plan: Projection
) -> Iterator[list[dict[str, Any]]]:
    base = base_url()
    for chunk in feed.chunks(group_id):
        link_members(chunk, base)
        yield chunk if plan.trivial else plan.apply({"members": chunk}).get("members", [])


def _shape(resource: dict[str, Any], plan: Projection, feed: store.MemberFeed | None) -> Any:
    """The group as returned: links, projection, and its members as a streamed array."""
    body = plan.apply(with_links(GROUP, resource))
    if feed is not None and feed.has_members(resource["id"]):
        body["members"] = JsonArray(_member_chunks(feed, resource["id"], plan))
    return body


def _feed(plan: Projection, resources: list[dict[str, Any]]) -> store.MemberFeed | None:
    """Members are read only when the response will show them (RFC 7644 §3.9)."""
    if not resources or not plan.wants(CORE_GROUP, "members"):
        return None
    return store.MemberFeed([r["id"] for r in resources])


def _group_response(resource: dict[str, Any], status: int = 200) -> Response:
    plan = projection(GROUP)
    body = _shape(resource, plan, _feed(plan, [resource]))
    return streaming_response(body, status, resource_headers(resource, status))


def _parse(body: Any) -> tuple[dict[str, Any], list[str] | None]:
    """A POST/PUT body: the group (`displayName` required) and the member ids, or None when the
    body leaves `members` out (a PUT then keeps the members: RFC 7644 §3.5.1 lets a server
    treat an omitted attribute as "not asserted", and a client that read the group with
    `excludedAttributes=members` must not empty it by writing it back)."""
    resource = marshal.load_resource(GROUP, body)
    listed = resource.pop("members", [])
    asserted = any(isinstance(key, str) and key.casefold() == "members" for key in body)
    return resource, store.member_ids(listed) if asserted else None


@bp.post("/Groups")
def create_group() -> Response:
    resource, members = _parse(read_json())
    created = store.create(
        resource,
        members or [],
        unique_names=_config().unique_group_names,
        actor=actor(),
    )
    return _group_response(created, 201)


@bp.get("/Groups/<group_id>")
def get_group(group_id: str) -> Response:
    resource = store.get(group_id)
    if not_modified(resource):
        return Response(status=304, headers={"ETag": resource["meta"]["version"]})
    return _group_response(resource)


@bp.put("/Groups/<group_id>")
def replace_group(group_id: str) -> Response:
    resource, members = _parse(read_json())
    updated = store.replace(
        group_id,
        resource,
        members,
        unique_names=_config().unique_group_names,
        if_match=if_match(),
        actor=actor(),
    )
    return _group_response(updated)


@bp.patch("/Groups/<group_id>")
def patch_group(group_id: str) -> Response:
    """RFC 7644 §3.5.2: 200 with the group (honouring `attributes`) or 204, as configured."""
    operations = patch.parse_patch_request(GROUP, read_json())
    updated = store.modify(
        group_id,
        operations,
        unique_names=_config().unique_group_names,
        if_match=if_match(),
        actor=actor(),
    )
    if _config().group_patch_status == 204:
        return Response(status=204, headers={"ETag": updated["meta"]["version"]})
    return _group_response(updated)


@bp.delete("/Groups/<group_id>")
def delete_group(group_id: str) -> Response:
    store.delete(group_id, actor(), if_match=if_match())
    return Response(status=204)


def _list(source: Any) -> Response:
    query = parse_list_query(GROUP, source)
    plan = projection(GROUP, source)
    condition = GROUP_COMPILER.compile(query.expr) if query.expr else None
    order = GROUP_COMPILER.order(query.sort_by, query.descending)
    total, resources = store.search(condition, order, query.start_index, query.count)
    feed = _feed(plan, resources)
    shaped = [_shape(r, plan, feed) for r in resources]
    return streaming_response(list_body(total, query.start_index, shaped))


@bp.get("/Groups")
def list_groups() -> Response:
    return _list(request.args)


@bp.post("/Groups/.search")
def search_groups() -> Response:
    return _list(search_request(read_json()))
