"""Where each Group attribute lives in the database, and the conversions both ways.

As for Users (`user_mapping`), this map is the allow-list that filters and `sortBy` compile
through. Members are not a column: they are `membership` rows (one per group and user, RFC 7643
§4.2 `members`), read and written by `app.store.memberships` a row at a time, never as a list.
"""

from __future__ import annotations

from typing import Any

from app.store.mapping import Scalar, check_indexable, meta
from app.store.models import Group
from scim_schemas import CORE_GROUP, identity_key

G = CORE_GROUP


SCALARS: tuple[Scalar, ...] = (
    Scalar(G, "id", Group.id),
    Scalar(G, "externalId", Group.external_id),
    Scalar(G, "displayName", Group.display_name, Group.display_name_key),
    Scalar(G, "meta.created", Group.created),
    Scalar(G, "meta.lastModified", Group.last_modified),
)
SCALAR_BY_PATH = {(s.schema, s.path): s for s in SCALARS}

# Only Users are members (see `app.patch.members`), so a member's type is constant.
MEMBER_TYPE = "User"


def row_values(resource: dict[str, Any], unique_names: bool) -> dict[str, Any]:
    """Column values for the group row from a canonical resource dict (members aside)."""
    name = resource["displayName"]
    external_id = resource.get("externalId")
    check_indexable("displayName", name)
    if external_id is not None:
        check_indexable("externalId", external_id)
    return {
        "display_name": name,
        "display_name_key": identity_key(name),
        "unique_name_key": identity_key(name) if unique_names else None,
        "external_id": external_id,
    }


def to_resource(row: Group) -> dict[str, Any]:
    """The canonical resource dict for one stored group, without `members` (no location)."""
    resource: dict[str, Any] = {"schemas": [G], "id": row.id}
    if row.external_id is not None:
        resource["externalId"] = row.external_id
    resource["displayName"] = row.display_name
    resource["meta"] = meta("Group", row)
    return resource


def member(user_id: str, display: str | None) -> dict[str, Any]:
    """One `members` value (RFC 7643 §4.2); `$ref` is added with the base URL by the HTTP layer."""
    element = {"value": user_id, "display": display, "type": MEMBER_TYPE}
    return {k: v for k, v in element.items() if v is not None}
