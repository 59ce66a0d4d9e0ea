"""`POST /.search` at the root: Users and Groups in one ListResponse (RFC 7644 §3.4.3).

The same SearchRequest as `/Users/.search` and `/Groups/.search` (`listing.search_request`),
applied to both types at once: the filter to each (`listing.parse_root_query`, RFC 7644
§3.4.2.1), one sort and one paging over both (`app.store.root_search`), `totalResults` the sum,
and each resource shaped as its own endpoint shapes it, with its own `schemas`, links and
`attributes`/`excludedAttributes` (§3.9).
"""

from __future__ import annotations

from typing import Any

from flask import Response

from app.attributes import Projection
from app.scim import bp, groups, users
from app.scim.json_stream import streaming_response
from app.scim.listing import RootQuery, next_cursor, parse_root_query, search_request
from app.scim.request_checks import read_json
from app.scim.responses import base_url, list_body, projections, with_links
from app.store import filter_sql, root_search

TYPES = (users.USER, groups.GROUP)
_COMPILERS = {"User": filter_sql.USER_COMPILER, "Group": filter_sql.GROUP_COMPILER}


def _branches(query: RootQuery) -> list[root_search.Branch]:
    """One branch per type its filter does not rule out entirely."""
    branches = []
    for name, expr in query.exprs.items():
        if expr is False:
            continue
        compiler = _COMPILERS[name]
        condition = None if expr is True else compiler.compile(expr)
        attribute = query.sort_by.get(name)
        key = compiler.order(attribute, query.descending).key if attribute else None
        branches.append(root_search.Branch(name, condition, key))
    return branches


def _shaped(items: list[tuple[str, dict[str, Any]]], plans: dict[str, Projection]) -> list[Any]:
    """Each resource as its endpoint returns it; groups shaped together (their members are
    read for the whole page at once), then put back in the page's order."""
    group_page = [resource for name, resource in items if name == "Group"]
    shaped_groups = iter(groups.shape_page(group_page, plans["Group"]))
    base = base_url()
    return [
        next(shaped_groups)
        if name == "Group"
        else plans[name].apply(with_links(users.USER, resource, base))
        for name, resource in items
    ]


@bp.post("/.search")
def search_all() -> Response:
    """RFC 7644 §3.4.3: "searching all resource types at once" from the server root."""
    source = search_request(read_json())
    query = parse_root_query(TYPES, source)
    plans = projections(TYPES, source)
    found = root_search.search(_branches(query), query.ordered, query.descending, query.page)
    shaped = _shaped(found.items, plans)
    cursor = next_cursor(query, found)
    return streaming_response(list_body(found.total, query.start_index, shaped, cursor))
