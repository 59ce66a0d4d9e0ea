"""Paging the `/admin` listings with the SCIM API's signed cursors (`app.cursors`).

A page link carries `cursor=<opaque>`: the keyset position where the page before ended, signed
and bound to the listing's filters and tenant, so an edited or foreign cursor is a 400 page,
never another tenant's rows. `count` (1 to 200, default 50) sets the page size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import request, url_for

from app import cursors, runtime
from app.errors import InvalidValue
from app.store import tenancy
from app.store.paging import Page, PageRequest

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def _key() -> bytes:
    return cursors.derive_key(runtime.current().secret_key)


def _count() -> int:
    text = request.args.get("count", "")
    if not text:
        return PAGE_SIZE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise InvalidValue(f"count must be a whole number from 1 to {MAX_PAGE_SIZE}.")
    return int(text)


@dataclass(frozen=True)
class Paging:
    """The page a request asks for, and how to ask for the next one."""

    request: PageRequest
    digest: str
    first: bool

    @classmethod
    def from_request(cls, key: Sequence[Any], param: str = "cursor") -> Paging:
        digest = cursors.query_digest(tenancy.current(), *key)
        token = request.args.get(param, "")
        after = cursors.decode(token, digest, _key()) if token else None
        return cls(PageRequest(_count(), keyset=True, after=after), digest, after is None)

    def next_url(self, found: Page, param: str = "cursor") -> str | None:
        """This page's URL with the cursor of the page after `found`; None on the last."""
        if found.next is None:
            return None
        timeout = runtime.current().config.cursor_timeout_seconds
        token = cursors.encode(found.next, self.digest, _key(), timeout)
        return _url_with(**{param: token})

    def first_url(self, param: str = "cursor") -> str:
        return _url_with(**{param: None})


def _url_with(**changes: str | None) -> str:
    """The current page's URL with some query parameters changed (None: dropped)."""
    args = {k: v for k, v in request.args.items() if k not in changes}
    args.update({k: v for k, v in changes.items() if v is not None})
    return url_for(request.endpoint or "admin.dashboard", **(request.view_args or {}), **args)
