"""Query parameters of a list or `.search` request: filter, sort and paging (RFC 7644 §3.4.2),
and cursor paging (RFC 9865), for one resource type (`parse_list_query`) or for a search of
all of them at the root (`parse_root_query`, RFC 7644 §3.4.3).

Index paging (`startIndex`) stays the default; a `cursor` parameter, even empty, asks for
cursor paging: the response then carries `nextCursor` while more pages follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app import cursors, filters, runtime
from app.config import Config
from app.errors import InvalidSyntax, InvalidValue, ScimError
from app.marshal import fold_keys
from app.scim.request_checks import integer_param
from app.store import tenancy
from app.store.paging import Page, PageRequest
from scim_schemas import SEARCH_REQUEST, Attribute, ResourceType


@dataclass(frozen=True)
class ListQuery:
    expr: filters.Expr | None
    sort_by: Attribute | None
    descending: bool
    page: PageRequest
    digest: str  # what a cursor of this query must carry (see `app.cursors.query_digest`)

    @property
    def start_index(self) -> int | None:
        """`startIndex` of the ListResponse; None under cursor paging, which has no index."""
        return None if self.page.keyset else self.page.start_index


def _cursor_key() -> bytes:
    """Cursors are signed with a key derived from the app's `SECRET_KEY` (else the key kept in
    `SECRET_KEY_FILE`, `runtime.resolve_secret_key`), so every worker and machine sharing that
    secret accepts the others' cursors."""
    return cursors.derive_key(runtime.current().secret_key)


def _invalid_count(detail: str) -> ScimError:
    return ScimError(detail, status=400, scim_type="invalidCount")


def default_cursor_count(config: Config) -> int:
    """RFC 9865 §4 `defaultPageSize`: `count` when a cursor request has none."""
    return max(1, min(config.default_page_size, config.max_page_size))


def _cursor_count(source: Any, config: Config) -> int:
    """RFC 9865 §2: `count` is a positive integer (400 `invalidCount` otherwise); more than
    `maxPageSize` is served as `maxPageSize`, as RFC 7644 §3.4.2.4 does for index paging."""
    try:
        count = integer_param(source, "count", default_cursor_count(config))
    except InvalidValue:
        raise _invalid_count("count must be a positive integer.") from None
    if count < 1:
        raise _invalid_count(f"count must be between 1 and {config.max_page_size}.")
    return min(count, config.max_page_size)


MAX_START_INDEX = 2**62


def _sort_attribute(rtype: ResourceType, text: str) -> Attribute | None:
    """The attribute `sortBy` names (RFC 7644 §3.4.2.3): a singular one, or a multi-valued one
    (`emails`, or its `emails.value`), which sorts by its primary value; None if neither."""
    resolved = rtype.resolve(text)
    if resolved is None:
        return None
    attribute, sub = resolved.attribute, resolved.sub
    if attribute.multi_valued:
        return attribute if sub is None or sub.name == "value" else None
    target = sub or attribute
    return None if target.is_complex else target


def _filter_text(source: Any) -> str:
    text = source.get("filter")
    if text is not None and not isinstance(text, str):
        raise InvalidValue("filter must be a string.")
    return text or ""


def _filter_limits(config: Config) -> dict[str, int]:
    return {
        "max_length": config.filter_max_length,
        "max_nodes": config.filter_max_nodes,
        "max_depth": config.filter_max_depth,
    }


def _sort_text(source: Any) -> str | None:
    sort_text = source.get("sortBy")
    if sort_text and not isinstance(sort_text, str):
        raise InvalidValue("sortBy must be an attribute name.")
    return sort_text or None


def _descending(source: Any) -> bool:
    order = source.get("sortOrder") or "ascending"
    if not isinstance(order, str) or order.lower() not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be 'ascending' or 'descending'.")
    return order.lower() == "descending"


def _page_request(source: Any, config: Config, digest: str) -> PageRequest:
    if "cursor" in source:
        return _cursor_page(source, config, digest)
    # Past any collection's end, and within what OFFSET takes (a signed 64-bit integer).
    start = min(max(1, integer_param(source, "startIndex", 1)), MAX_START_INDEX)
    count = integer_param(source, "count", config.default_page_size)
    return PageRequest(min(max(0, count), config.max_page_size), start_index=start)


def parse_list_query(rtype: ResourceType, source: Any) -> ListQuery:
    config = runtime.current().config
    text = _filter_text(source)
    expr = filters.parse(text, rtype, **_filter_limits(config)) if text else None
    sort_by = None
    sort_text = _sort_text(source)
    if sort_text:
        sort_by = _sort_attribute(rtype, sort_text)
        if sort_by is None:
            raise InvalidValue(f"Cannot sort by {sort_text!r}.", scim_type="invalidValue")
    descending = _descending(source)
    sort_key = f"{sort_by.schema}:{sort_by.path}" if sort_by else None
    # The tenant too: a cursor of one tenant's walk is refused in another (400 invalidCursor).
    digest = cursors.query_digest(tenancy.current(), rtype.name, text, sort_key, descending)
    return ListQuery(expr, sort_by, descending, _page_request(source, config, digest), digest)


@dataclass(frozen=True)
class RootQuery:
    """A search across resource types (`POST /.search` at the root, RFC 7644 §3.4.3), by type
    name: the filter as `filters.parse_across` gives it (True without one), and the attribute
    `sortBy` names (None for a type without it; `ordered` says whether there is a sortBy)."""

    exprs: dict[str, filters.Expr | bool]
    sort_by: dict[str, Attribute | None]
    ordered: bool
    descending: bool
    page: PageRequest
    digest: str

    @property
    def start_index(self) -> int | None:
        return None if self.page.keyset else self.page.start_index


def parse_root_query(rtypes: Sequence[ResourceType], source: Any) -> RootQuery:
    """RFC 7644 §3.4.2.1: the filter applies to each type, an attribute only some define
    counting as unassigned on the others; sortBy likewise (null values sort last, §3.4.2.3),
    but it must name an attribute of at least one type, of one data type across them."""
    config = runtime.current().config
    text = _filter_text(source)
    exprs: dict[str, filters.Expr | bool] = (
        filters.parse_across(text, rtypes, **_filter_limits(config))
        if text
        else dict.fromkeys((rtype.name for rtype in rtypes), True)
    )
    sort_text = _sort_text(source)
    sort_by = {rtype.name: _sort_attribute(rtype, sort_text) for rtype in rtypes if sort_text}
    named = [a for a in sort_by.values() if a is not None]
    if sort_text and not named:
        raise InvalidValue(f"Cannot sort by {sort_text!r}.")
    if len({a.type for a in named}) > 1:
        raise InvalidValue(f"Cannot sort by {sort_text!r}: its type differs between resources.")
    descending = _descending(source)
    keys = sorted(f"{a.schema}:{a.path}" for a in named)
    digest = cursors.query_digest(tenancy.current(), "/", text, keys, descending)
    page = _page_request(source, config, digest)
    return RootQuery(exprs, sort_by, bool(sort_text), descending, page, digest)


def _cursor_page(source: Any, config: Config, digest: str) -> PageRequest:
    """RFC 9865 §2: an empty cursor asks for the first page, a `nextCursor` for the next."""
    if source.get("startIndex") not in (None, ""):
        raise InvalidValue("Use either startIndex (index paging) or cursor (RFC 9865), not both.")
    token = source.get("cursor")
    if token is not None and not isinstance(token, str):
        raise cursors.invalid_cursor("cursor must be a string.")
    after = cursors.decode(token, digest, _cursor_key()) if token else None
    return PageRequest(_cursor_count(source, config), keyset=True, after=after)


def next_cursor(query: ListQuery | RootQuery, found: Page) -> str | None:
    """`nextCursor` for the page after `found`, or None on the last page (RFC 9865 §2)."""
    if not query.page.keyset or found.next is None:
        return None
    timeout = runtime.current().config.cursor_timeout_seconds
    return cursors.encode(found.next, query.digest, _cursor_key(), timeout)


_SEARCH_FIELDS = {
    name.casefold(): name
    for name in (
        "filter",
        "sortBy",
        "sortOrder",
        "startIndex",
        "count",
        "cursor",
        "attributes",
        "excludedAttributes",
        "schemas",
    )
}


def search_request(body: Any) -> dict[str, Any]:
    """The SearchRequest body of `POST …/.search` (RFC 7644 §3.4.3), keys in any case."""
    if not isinstance(body, dict):
        raise InvalidSyntax("The SearchRequest body must be a JSON object.")
    normalised = {_SEARCH_FIELDS.get(key, key): value for key, value in fold_keys(body).items()}
    schemas = normalised.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or SEARCH_REQUEST not in schemas):
        raise InvalidSyntax(f"schemas must contain {SEARCH_REQUEST}.")
    return normalised
