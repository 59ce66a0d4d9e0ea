"""`/Users`: create, read, replace, patch, delete and list (RFC 7644 §3.2 to §3.6).

Each write is a plain function (`create_user`, `replace_user`, `patch_user`, `delete_user`)
that takes the parsed body and returns `(status, resource)`; `USERS` (an `endpoint.Endpoint`)
routes the HTTP views to them and `/Bulk` (`app.scim.bulk`) calls them too, so an operation
inside a bulk request behaves exactly like the same request on its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response, request

from app import marshal, patch, runtime
from app.errors import Mutability
from app.scim import bp
from app.scim.endpoint import Endpoint, Outcome
from app.scim.listing import next_cursor, parse_list_query, search_request
from app.scim.request_checks import read_json
from app.scim.responses import actor, list_response, projection, resource_response
from app.store import filter_sql
from app.store import users as store
from scim_schemas import resource_type

USER = resource_type("User")


def _apply_defaults(resource: dict[str, Any]) -> dict[str, Any]:
    """LMS defaults for what the IdP left out (user type and timezone), the tenant's."""
    settings = runtime.tenant_settings()
    resource.setdefault("userType", settings.default_user_type)
    resource.setdefault("timezone", settings.default_timezone)
    return resource


def _hash(password: str | None) -> str | None:
    current = runtime.current()
    if not password or current.tenant_settings().password_policy == "ignore":  # noqa: S105
        return None
    return current.hasher.hash(password)


def _unique_emails() -> bool:
    return runtime.tenant_settings().unique_emails


def _limits() -> marshal.Limits:
    return runtime.current().input_limits


# -- the work of each endpoint, as plain functions (the views below and /Bulk call them) ------


def create_user(body: Any) -> Outcome:
    """POST /Users (RFC 7644 §3.3). The password is hashed before the store's transaction."""
    resource = marshal.load_resource(USER, body, _limits())
    password = resource.pop("password", None)
    unique_emails = _unique_emails()
    if password and (clash := store.conflict(resource, unique_emails=unique_emails)):
        raise clash  # before spending a hash on a duplicate (Okta's retries send passwords)
    password_hash = _hash(password)
    created = store.create(
        _apply_defaults(resource), password_hash, actor(), unique_emails=unique_emails
    )
    return 201, created


def _check_immutable(current: dict[str, Any], new: dict[str, Any]) -> None:
    """RFC 7644 §3.5.1: immutable values in a PUT must match what is stored."""
    for urn in USER.schemas:
        old_part = current if urn == USER.schema else current.get(urn) or {}
        new_part = new if urn == USER.schema else new.get(urn) or {}
        for attribute in USER.attributes(urn):
            if attribute.mutability != "immutable":
                continue
            old, value = old_part.get(attribute.name), new_part.get(attribute.name)
            if old is not None and value is not None and old != value:
                raise Mutability(f"{attribute.name} is immutable.")


def _password_hashes(password: str | None) -> dict[str, str]:
    hashed = _hash(password)
    return {password: hashed} if password and hashed else {}


def _modify(
    user_id: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    hashes: dict[str, str],
    if_match: str | None,
    operation: str,
) -> Outcome:
    """A PUT or PATCH through the store, as this request's token, under the app's settings."""
    updated = store.modify(
        user_id,
        change,
        password_hashes=hashes,
        if_match=if_match,
        actor=actor(),
        operation=operation,
        unique_emails=_unique_emails(),
    )
    return 200, updated


def replace_user(user_id: str, body: Any, if_match: str | None = None) -> Outcome:
    """PUT /Users/{id} (RFC 7644 §3.5.1)."""
    new = marshal.load_resource(USER, body, _limits())
    password = new.pop("password", None)
    hashes = _password_hashes(password)

    def change(current: dict[str, Any]) -> dict[str, Any]:
        _check_immutable(current, new)
        replacement = _apply_defaults(dict(new))
        # An omitted `active` keeps the LMS state: clearing it would silently reactivate a leaver.
        replacement.setdefault("active", current.get("active", True))
        if hashes:
            replacement["password"] = password
        return replacement

    return _modify(user_id, change, hashes, if_match, "replace")


def patch_user(user_id: str, body: Any, if_match: str | None = None) -> Outcome:
    """PATCH /Users/{id} (RFC 7644 §3.5.2), atomic: any failing operation applies nothing."""
    limits = _limits()
    operations = patch.parse_patch_request(USER, body, limits)
    hashes: dict[str, str] = {}
    if "password" in json.dumps(body).lower():
        # Find a new password on an unlocked snapshot first, so hashing holds no lock.
        preview = patch.apply_operations(USER, store.get(user_id), operations)
        hashes = _password_hashes(preview.get("password"))

    def change(current: dict[str, Any]) -> dict[str, Any]:
        patched = patch.apply_operations(USER, current, operations)
        if patched.get("active") is None:
            # The LMS keeps an account state; unassigning it would be silently ignored.
            raise Mutability("active cannot be removed; replace it with false to deactivate.")
        password = patched.pop("password", None)
        result = marshal.load_resource(USER, patched, limits)
        if password and password in hashes:
            result["password"] = password
        return result

    return _modify(user_id, change, hashes, if_match, "patch")


def delete_user(user_id: str, if_match: str | None = None) -> Outcome:
    """DELETE /Users/{id} (RFC 7644 §3.6): a hard delete."""
    store.delete(user_id, actor(), if_match=if_match)
    return 204, None


# -- the HTTP views: request in, the plain function, response out ------------------------------


def _show(resource: dict[str, Any], status: int) -> Response:
    return resource_response(USER, resource, status)


USERS = Endpoint(USER, store.get, create_user, replace_user, patch_user, delete_user)
USERS.route(_show)


def _list(source: Any) -> Response:
    query = parse_list_query(USER, source)
    plan = projection(USER, source)
    condition = filter_sql.USER_COMPILER.compile(query.expr) if query.expr else None
    sort = filter_sql.USER_COMPILER.order(query.sort_by, query.descending)
    found = store.search(condition, sort, query.page)
    cursor = next_cursor(query, found)
    return list_response(USER, found.total, query.start_index, found.items, plan, cursor)


@bp.get("/Users")
def list_users() -> Response:
    return _list(request.args)


@bp.post("/Users/.search")
def search_users() -> Response:
    return _list(search_request(read_json()))
