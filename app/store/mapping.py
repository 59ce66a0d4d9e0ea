"""What the User and Group mappings share: a scalar attribute's column, the length bound of
indexed text, and the `meta` block (RFC 7643 §3.1) of a stored row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from app import datetimes, etags
from app.errors import InvalidValue
from app.store.models import MAX_INDEXED_LENGTH
from scim_schemas import Attribute, ResourceType


@dataclass(frozen=True)
class Scalar:
    """A single-valued attribute (or sub-attribute of a single-valued complex) in one column."""

    schema: str
    path: str
    field: peewee.Field
    key_field: peewee.Field | None = None  # normalised copy, indexed, for caseless compares

    def attribute(self, rtype: ResourceType) -> Attribute:
        """The schema's definition of this attribute (its type, caseExact…)."""
        qualified = self.path if self.schema == rtype.schema else f"{self.schema}:{self.path}"
        resolved = rtype.resolve(qualified)
        if resolved is None:  # pragma: no cover - the maps are checked by the unit tests
            raise LookupError(f"{qualified} is not in the {rtype.name} schema")
        return resolved.sub or resolved.attribute


def check_indexable(path: str, value: str) -> None:
    """400 invalidValue for text longer than an index entry holds."""
    if len(value) > MAX_INDEXED_LENGTH:
        raise InvalidValue(f"{path} is longer than {MAX_INDEXED_LENGTH} characters.")


def meta(resource_type: str, row: Any) -> dict[str, Any]:
    """`meta` of a stored User or Group row, without `location` (the HTTP layer adds it)."""
    return {
        "resourceType": resource_type,
        "created": datetimes.scim(row.created),
        "lastModified": datetimes.scim(row.last_modified),
        "version": etags.weak(row.version),
    }
