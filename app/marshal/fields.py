"""marshmallow fields for SCIM's data types (RFC 7643 §2.3), built from attribute definitions."""

from __future__ import annotations

import base64
import binascii
from functools import cache
from typing import Any

from marshmallow import Schema, ValidationError, fields

from app import datetimes
from scim_schemas import Attribute
from scim_schemas.identity import name_problem


class ScimBoolean(fields.Field):
    """A JSON boolean; also "True"/"False" strings in any case, which Entra ID sends in PATCH."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().casefold() in ("true", "false"):
            return value.strip().casefold() == "true"
        raise ValidationError("Not a boolean.")


class ScimString(fields.String):
    """A JSON string; numbers are refused rather than silently turned into text."""


class IdentityString(ScimString):
    """A name that identifies a person or group (`Attribute.identity`): non-empty, no edge white
    space, no control or bidi formatting characters (`scim_schemas.identity.name_problem`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = name_problem(text)
        if problem is not None:
            raise ValidationError(f"{problem[0].upper()}{problem[1:]}.")
        return text


class ScimInteger(fields.Integer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


class ScimDecimal(fields.Float):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("Not a valid number.")
        return super()._deserialize(value, attr, data, **kwargs)


class ScimDateTime(fields.Field):
    """An xsd:dateTime (RFC 7643 §2.3.5), kept as a normalised UTC ISO-8601 string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        parsed = datetimes.parse(value) if isinstance(value, str) else None
        if parsed is None:
            raise ValidationError("Not a valid dateTime (e.g. 2011-05-13T04:42:34Z).")
        return datetimes.canonical(parsed)


class ScimBinary(fields.String):
    """Base64-encoded binary (RFC 7643 §2.3.6), validated and kept as sent."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("Not valid base64.") from exc
        return text


_SIMPLE = {
    "string": ScimString,
    "reference": ScimString,
    "boolean": ScimBoolean,
    "integer": ScimInteger,
    "decimal": ScimDecimal,
    "dateTime": ScimDateTime,
    "binary": ScimBinary,
}


def _single_field(attribute: Attribute, **kwargs: Any) -> fields.Field:
    if attribute.is_complex:
        return fields.Nested(complex_schema(attribute), **kwargs)
    if attribute.identity:
        return IdentityString(**kwargs)
    return _SIMPLE[attribute.type](**kwargs)


@cache
def field_for(attribute: Attribute) -> fields.Field:
    """The marshmallow field that validates one attribute's value (a list when multi-valued)."""
    if attribute.multi_valued:
        return fields.List(_single_field(attribute), data_key=attribute.name)
    return _single_field(attribute, data_key=attribute.name)


@cache
def complex_schema(attribute: Attribute) -> Schema:
    """A schema instance for one complex attribute's sub-attributes (RFC 7643 §2.3.8)."""
    declared = {sub.name: field_for(sub) for sub in attribute.subs()}
    cls = Schema.from_dict(declared, name=f"{attribute.path}Schema")
    return cls()
