"""Query parameters of a list or `.search` request: filter, sort and paging (RFC 7644 §3.4.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from app import filters
from app.errors import InvalidSyntax, InvalidValue
from app.scim.http import integer_param
from scim_schemas import SEARCH_REQUEST, Attribute, ResourceType


@dataclass(frozen=True)
class ListQuery:
    expr: filters.Expr | None
    sort_by: Attribute | None
    descending: bool
    start_index: int
    count: int


def parse_list_query(rtype: ResourceType, source: Any) -> ListQuery:
    config = current_app.config["SCIM"]
    text = source.get("filter")
    if text is not None and not isinstance(text, str):
        raise InvalidValue("filter must be a string.")
    expr = filters.parse(text, rtype, max_length=config.filter_max_length) if text else None
    sort_by = None
    sort_text = source.get("sortBy")
    if sort_text:
        if not isinstance(sort_text, str):
            raise InvalidValue("sortBy must be an attribute name.")
        sort_by = rtype.attribute(sort_text)
        if sort_by is None or sort_by.is_complex:
            raise InvalidValue(f"Cannot sort by {sort_text!r}.", scim_type="invalidValue")
    order = source.get("sortOrder") or "ascending"
    if not isinstance(order, str) or order.lower() not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be 'ascending' or 'descending'.")
    start = max(1, integer_param(source, "startIndex", 1))
    count = integer_param(source, "count", config.default_page_size)
    count = min(max(0, count), config.max_page_size)
    return ListQuery(expr, sort_by, order.lower() == "descending", start, count)


def search_request(body: Any) -> dict[str, Any]:
    """The SearchRequest body of `POST …/.search` (RFC 7644 §3.4.3), keys in any case."""
    if not isinstance(body, dict):
        raise InvalidSyntax("The SearchRequest body must be a JSON object.")
    fields = {
        k.lower(): k
        for k in (
            "filter",
            "sortBy",
            "sortOrder",
            "startIndex",
            "count",
            "attributes",
            "excludedAttributes",
            "schemas",
        )
    }
    normalised = {fields.get(key.lower(), key): value for key, value in body.items()}
    schemas = normalised.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or SEARCH_REQUEST not in schemas):
        raise InvalidSyntax(f"schemas must contain {SEARCH_REQUEST}.")
    return normalised
