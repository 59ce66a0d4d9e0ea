"""Request bodies in, canonical resource dicts out — driven by the schema documents.

A canonical resource dict keeps core attributes at the top level under their declared names and
each extension's attributes in a dict under its schema URN. Attribute names are matched without
regard to case (RFC 7643 §2.1), `null` means "no value" (Entra ID sends it for absent
attributes), read-only attributes sent by a client are ignored (RFC 7644 §3.3, §3.5.1 — Okta
sends `groups` and `meta` back on PUT), and every value is checked against its attribute's type.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from app.errors import InvalidSyntax, InvalidValue
from app.marshal.fields import field_for
from scim_schemas import CORE_GROUP, Attribute, ResourceType

# Schema URNs that real IdPs put in `schemas` though they define no attributes we store.
TOLERATED_SCHEMAS = frozenset(
    {"http://schemas.microsoft.com/2006/11/resourcemanagement/adscim/2.0/group"}
)


@dataclass(frozen=True)
class Limits:
    """How many values one multi-valued attribute may carry in a request (the app's
    `MAX_MULTI_VALUES` and `MAX_MEMBERS_PER_OPERATION`): a bound on the rows one request writes
    and on the work a PATCH does, whatever the body size allows."""

    multi_values: int = 100
    members: int = 1000

    def check(self, attribute: Attribute, value: Any) -> None:
        """400 invalidValue when a list for a multi-valued `attribute` is over its bound."""
        if not (attribute.multi_valued and isinstance(value, list)):
            return
        members = attribute.schema == CORE_GROUP and attribute.name == "members"
        limit = self.members if members else self.multi_values
        if len(value) > limit:
            raise InvalidValue(
                f"{attribute.path} has {len(value)} values; this service accepts at most "
                f"{limit} in one request."
            )


DEFAULT_LIMITS = Limits()


def absent(value: Any) -> bool:
    """Unassigned (RFC 7643 §2.5): null, an empty array or an empty object."""
    return value is None or (isinstance(value, list | dict) and not value)


def coerce(attribute: Attribute, value: Any) -> Any:
    """Validate and normalise one attribute's value, or raise 400 invalidValue."""
    if attribute.is_complex:
        value = _canonical_complex(attribute, value)
    try:
        result = field_for(attribute).deserialize(value)
    except ValidationError as exc:
        raise InvalidValue(_explain(attribute.path, exc.messages)) from exc
    if attribute.is_complex:
        _check_required_subs(attribute, result)
        if attribute.multi_valued and sum(1 for e in result if e.get("primary") is True) > 1:
            # RFC 7643 §2.4: "The primary attribute value "true" MUST appear no more than once."
            raise InvalidValue(f"At most one value of {attribute.path} may be primary.")
    return result


def _check_required_subs(attribute: Attribute, value: Any) -> None:
    required = [sub for sub in attribute.subs() if sub.required and sub.mutability != "readOnly"]
    for element in value if attribute.multi_valued else [value]:
        for sub in required:
            if absent(element.get(sub.name)):
                raise InvalidValue(f"{attribute.path}.{sub.name} is required.")


def _explain(path: str, messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(_explain(f"{path}.{key}", value) for key, value in messages.items())
    if isinstance(messages, list):
        return f"{path}: {' '.join(str(m) for m in messages)}"
    return f"{path}: {messages}"


def _canonical_element(attribute: Attribute, element: Any) -> Any:
    if not isinstance(element, dict):
        return element
    out: dict[str, Any] = {}
    for key, value in element.items():
        sub = attribute.sub(key) if isinstance(key, str) else None
        if sub is None:
            raise InvalidValue(f"{attribute.path} has no sub-attribute {key!r}.")
        if value is None or sub.mutability == "readOnly":
            continue
        out[sub.name] = value
    return out


def _canonical_complex(attribute: Attribute, value: Any) -> Any:
    if attribute.multi_valued and isinstance(value, list):
        return [_canonical_element(attribute, element) for element in value]
    return _canonical_element(attribute, value)


def fold_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """The string keys of a JSON object, case-folded (RFC 7643 §2.1: attribute and message
    field names are case-insensitive)."""
    return {key.casefold(): value for key, value in obj.items() if isinstance(key, str)}


def attribute_items(
    rtype: ResourceType, body: dict[str, Any], ignored: frozenset[str] = frozenset({"schemas"})
) -> Iterator[tuple[str, Any]]:
    """Each attribute key of a body (or of a path-less PATCH value) with its value.

    Keys may be in any case, dotted (`name.givenName`), URN-qualified
    (`urn:…:enterprise:2.0:User:employeeNumber`, Entra ID with aadOptscim062020) or a schema URN
    holding an object, which is opened into `urn:attribute` keys. `ignored` keys (folded) are
    skipped at both levels: some clients repeat `schemas` inside an extension's object.
    """
    for key, value in body.items():
        if not isinstance(key, str):
            raise InvalidValue("Attribute names must be strings.")
        if key.casefold() in ignored:
            continue
        urn = rtype.canonical_urn(key)
        if urn is None:
            yield key, value
            continue
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidValue(f"{urn} must be an object.")
        for sub_key, sub_value in value.items():
            if isinstance(sub_key, str) and sub_key.casefold() in ignored:
                continue
            yield f"{urn}:{sub_key}", sub_value


def canonicalize(rtype: ResourceType, body: dict[str, Any]) -> dict[str, Any]:
    """Rename keys to their declared case and nest URN-qualified and dotted keys.

    Returns `{attribute path or URN: raw value}` grouped as a canonical resource dict. Unknown
    attribute names raise 400 invalidValue: silently dropping them would lose data.
    """
    out: dict[str, Any] = {}
    for key, value in attribute_items(rtype, body):
        _place(rtype, out, key, value)
    return out


def _place(rtype: ResourceType, out: dict[str, Any], key: str, value: Any) -> None:
    resolved = rtype.resolve(key)
    if resolved is None:
        raise InvalidValue(f"Unknown attribute {key!r}.")
    attribute, sub = resolved.attribute, resolved.sub
    target = out if attribute.schema == rtype.schema else out.setdefault(attribute.schema, {})
    if sub is None:
        if attribute.is_complex and isinstance(value, dict) and attribute.name in target:
            target[attribute.name].update(value)
        else:
            target[attribute.name] = value
    else:
        if attribute.multi_valued:
            raise InvalidValue(f"{key!r} names a sub-attribute of a multi-valued attribute.")
        parent = target.setdefault(attribute.name, {})
        if not isinstance(parent, dict):
            raise InvalidValue(f"{attribute.name} must be an object.")
        parent[sub.name] = value


def _schemas_list(rtype: ResourceType, body: dict[str, Any]) -> list[str]:
    schemas = fold_keys(body).get("schemas")
    if schemas is None:
        return [rtype.schema]
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise InvalidSyntax("schemas must be a list of schema URNs.")
    known = []
    for urn in schemas:
        canonical = rtype.canonical_urn(urn)
        if canonical is not None:
            known.append(canonical)
        elif urn.casefold() not in TOLERATED_SCHEMAS:
            raise InvalidValue(f"Unsupported schema {urn!r} for {rtype.name}.")
    if rtype.schema not in known:
        raise InvalidValue(f"schemas must include {rtype.schema}.")
    return known


def load_resource(
    rtype: ResourceType, body: Any, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """Validate a POST/PUT body into a canonical resource dict (no read-only attributes).

    Read-only attributes (`id`, `meta`, `groups`…) are dropped as RFC 7644 §3.3 asks; whether
    immutable ones match the stored resource is the caller's business. Multi-valued attributes
    carry at most what `limits` allows.
    """
    if not isinstance(body, dict):
        raise InvalidSyntax("The request body must be a JSON object.")
    _schemas_list(rtype, body)
    raw = canonicalize(rtype, body)
    resource: dict[str, Any] = {}
    for urn in rtype.schemas:
        source = raw if urn == rtype.schema else raw.get(urn, {})
        target = resource if urn == rtype.schema else {}
        for attribute in rtype.attributes(urn):
            value = source.get(attribute.name)
            if attribute.mutability == "readOnly" or absent(value):
                continue
            if attribute.mutability == "writeOnly" and attribute.name == "password" and value == "":
                continue
            limits.check(attribute, value)
            target[attribute.name] = coerce(attribute, value)
        if urn != rtype.schema and target:
            resource[urn] = target
    missing = [
        a.name
        for a in rtype.all_attributes()
        if a.required
        and a.mutability != "readOnly"
        and a.name not in (resource if a.schema == rtype.schema else resource.get(a.schema, {}))
    ]
    if missing:
        raise InvalidValue(f"Missing required attribute(s): {', '.join(missing)}.")
    resource["schemas"] = [rtype.schema, *(urn for urn in rtype.extensions if urn in resource)]
    return resource
