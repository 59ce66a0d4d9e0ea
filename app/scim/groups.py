"""`/Groups`: create, read, replace, patch, delete and list (RFC 7644 §3.2 to §3.6).

Groups are the LMS's audiences. Members are streamed into responses (`json_stream.JsonArray`), never
built as one list, and are not read at all when the request leaves them out
(`excludedAttributes=members`, as Entra ID asks, or `attributes` without them, RFC 7644 §3.9).

As in `app.scim.users`, each write is a plain function returning `(status, resource)`, routed
by `GROUPS` (an `endpoint.Endpoint`) and called by `/Bulk` too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, request

from app import marshal, patch, runtime
from app.attributes import Projection
from app.scim import bp
from app.scim.endpoint import Endpoint, Outcome
from app.scim.json_stream import JsonArray, streaming_response
from app.scim.listing import next_cursor, parse_list_query, search_request
from app.scim.request_checks import read_json
from app.scim.responses import (
    actor,
    base_url,
    link_members,
    list_body,
    projection,
    resource_headers,
    with_links,
)
from app.store import groups as store
from app.store import memberships, tenancy
from app.store.filter_sql import GROUP_COMPILER
from scim_schemas import CORE_GROUP, resource_type

GROUP = resource_type("Group")


def _member_chunks(
    feed: memberships.MemberFeed, group_id: str, plan: Projection, base: str
) -> Iterator[list[dict[str, Any]]]:
    """The group's members, read when the body is streamed: after the view returned, outside
    the request's tenant scope, so each chunk is read inside it again (a read scoped to another
    tenant would find none). The tenant is taken now, while the view runs, as is `base`."""
    return _streamed_members(feed.chunks(group_id), plan, base, tenancy.owner())


def _streamed_members(
    chunks: Iterator[list[dict[str, Any]]], plan: Projection, base: str, tenant: int
) -> Iterator[list[dict[str, Any]]]:
    while True:
        with tenancy.use(tenant):
            chunk = next(chunks, None)
        if chunk is None:
            return
        link_members(chunk, base)
        yield chunk if plan.trivial else plan.apply({"members": chunk}).get("members", [])


def _shape(
    resource: dict[str, Any], plan: Projection, feed: memberships.MemberFeed | None, base: str
) -> Any:
    """The group as returned: links (under the request's base URL, `base`), projection, and
    its members as a streamed array."""
    body = plan.apply(with_links(GROUP, resource, base))
    if feed is not None and feed.has_members(resource["id"]):
        body["members"] = JsonArray(_member_chunks(feed, resource["id"], plan, base))
    return body


def _feed(plan: Projection, resources: list[dict[str, Any]]) -> memberships.MemberFeed | None:
    """Members are read only when the response will show them (RFC 7644 §3.9)."""
    if not resources or not plan.wants(CORE_GROUP, "members"):
        return None
    return memberships.MemberFeed([r["id"] for r in resources])


def _group_response(resource: dict[str, Any], status: int = 200) -> Response:
    plan = projection(GROUP)
    body = _shape(resource, plan, _feed(plan, [resource]), base_url())
    return streaming_response(body, status, resource_headers(resource, status))


def _parse(body: Any) -> tuple[dict[str, Any], list[str] | None]:
    """A POST/PUT body: the group (`displayName` required) and the member ids, or None when the
    body leaves `members` out (a PUT then keeps the members: RFC 7644 §3.5.1 lets a server
    treat an omitted attribute as "not asserted", and a client that read the group with
    `excludedAttributes=members` must not empty it by writing it back)."""
    resource = marshal.load_resource(GROUP, body, runtime.current().input_limits)
    listed = resource.pop("members", [])
    asserted = any(isinstance(key, str) and key.casefold() == "members" for key in body)
    return resource, patch.member_ids(listed) if asserted else None


# -- the work of each endpoint, as plain functions (the views below and /Bulk call them) ------


def create_group(body: Any) -> Outcome:
    """POST /Groups (RFC 7644 §3.3): the group and its members in one transaction."""
    resource, members = _parse(body)
    created = store.create(
        resource,
        members or [],
        unique_names=runtime.tenant_settings().unique_group_names,
        actor=actor(),
    )
    return 201, created


def _modify(
    group_id: str,
    change: store.Change,
    commands: Iterable[patch.MemberCommand],
    if_match: str | None,
    operation: str,
) -> dict[str, Any]:
    """A PUT or PATCH through the store, as this request's token, under the app's settings."""
    return store.modify(
        group_id,
        change,
        commands,
        unique_names=runtime.tenant_settings().unique_group_names,
        if_match=if_match,
        actor=actor(),
        operation=operation,
    )


def replace_group(group_id: str, body: Any, if_match: str | None = None) -> Outcome:
    """PUT /Groups/{id} (RFC 7644 §3.5.1): new scalars, and the member list when the body has
    `members`."""
    resource, members = _parse(body)
    commands = [] if members is None else [patch.replace_members(members)]
    return 200, _modify(group_id, lambda _current: resource, commands, if_match, "replace")


def patch_group(group_id: str, body: Any, if_match: str | None = None) -> Outcome:
    """PATCH /Groups/{id} (RFC 7644 §3.5.2): 200 with the group or 204, as configured.

    Operations on `members` become commands the store runs as single-row writes, in request
    order; the others go through `patch.apply_operations` on the group without its members.
    """
    settings = runtime.current()
    operations = patch.parse_patch_request(GROUP, body, settings.input_limits)
    others, commands = patch.member_commands(GROUP, operations)

    def change(current: dict[str, Any]) -> dict[str, Any]:
        patched = patch.apply_operations(GROUP, current, others)
        return marshal.load_resource(GROUP, patched, settings.input_limits)

    updated = _modify(group_id, change, commands, if_match, "patch")
    return settings.tenant_settings().group_patch_status, updated


def delete_group(group_id: str, if_match: str | None = None) -> Outcome:
    """DELETE /Groups/{id} (RFC 7644 §3.6); the member users stay."""
    store.delete(group_id, actor(), if_match=if_match)
    return 204, None


# -- the HTTP views: request in, the plain function, response out ------------------------------


GROUPS = Endpoint(GROUP, store.get, create_group, replace_group, patch_group, delete_group)
GROUPS.route(_group_response)


def shape_page(resources: list[dict[str, Any]], plan: Projection) -> list[Any]:
    """A page of groups as returned in a ListResponse, members streamed (also at the root
    `.search`, `app.scim.search`)."""
    feed = _feed(plan, resources)
    base = base_url()  # once per page
    return [_shape(r, plan, feed, base) for r in resources]


def _list(source: Any) -> Response:
    query = parse_list_query(GROUP, source)
    plan = projection(GROUP, source)
    condition = GROUP_COMPILER.compile(query.expr) if query.expr else None
    sort = GROUP_COMPILER.order(query.sort_by, query.descending)
    found = store.search(condition, sort, query.page)
    shaped = shape_page(found.items, plan)
    cursor = next_cursor(query, found)
    return streaming_response(list_body(found.total, query.start_index, shaped, cursor))


@bp.get("/Groups")
def list_groups() -> Response:
    return _list(request.args)


@bp.post("/Groups/.search")
def search_groups() -> Response:
    return _list(search_request(read_json()))
