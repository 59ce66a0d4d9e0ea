"""`attributes` / `excludedAttributes` (RFC 7644 §3.9) and `returned` (RFC 7643 §7).

A `Projection` is built once per request and applied to every resource returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from app.errors import InvalidValue
from scim_schemas import Attribute, ResourceType

_Key = tuple[str, str]  # (schema URN, top-level attribute name)


def split_list(text: str | Iterable[str] | None) -> list[str]:
    """Comma-separated attribute paths (query string) or a JSON list (.search body)."""
    if text is None:
        return []
    if isinstance(text, str):
        items = text.split(",")
    elif isinstance(text, list) and all(isinstance(item, str) for item in text):
        items = text
    else:
        raise InvalidValue("attributes must be a list of attribute names.")
    return [item.strip() for item in items if item.strip()]


class Projection:
    """Which attributes of a resource to return, from the request and the schema."""

    def __init__(
        self,
        rtype: ResourceType,
        attributes: list[str] | None = None,
        excluded: list[str] | None = None,
        *,
        requested: bool | None = None,
    ):
        """`requested`: whether the request named `attributes` at all, when the list given is
        only this type's share of it (`across`); by default, whether `attributes` is empty."""
        self.rtype = rtype
        self.included = self._parse(attributes or [])
        self.excluded = self._parse(excluded or [])
        self.has_request = bool(attributes) if requested is None else requested
        self.trivial = (
            not self.has_request
            and not excluded
            and all(
                a.returned not in _HIDDEN and _default_subs(a) is True
                for a in rtype.all_attributes()
            )
        )
        # What to keep of each attribute depends on the request and the schema only, so it is
        # decided once here, not again for every resource of a page.
        self._plan = [
            (urn, [(a.name, keep) for a in rtype.attributes(urn) if (keep := self._keep(a))])
            for urn in rtype.schemas
        ]

    def _parse(self, paths: list[str]) -> dict[_Key | str, set[str] | None]:
        """{(urn, attribute): None for the whole attribute, or the set of sub-attributes}."""
        parsed: dict[_Key | str, set[str] | None] = {}
        for path in paths:
            urn = self.rtype.canonical_urn(path)
            if urn is not None and urn != self.rtype.schema:
                parsed[urn] = None
                continue
            resolved = self.rtype.resolve(path)
            if resolved is None:
                raise InvalidValue(f"Unknown attribute {path!r} in attributes/excludedAttributes.")
            key = (resolved.attribute.schema, resolved.attribute.name)
            if resolved.sub is None:
                parsed[key] = None
            elif key not in parsed or parsed[key] is not None:
                parsed.setdefault(key, set()).add(resolved.sub.name)  # type: ignore[union-attr]
        return parsed

    def wants(self, urn: str, name: str) -> bool:
        """Whether a top-level attribute would be returned at all (to skip loading it)."""
        attribute = next((a for a in self.rtype.attributes(urn) if a.name == name), None)
        return attribute is not None and self._keep(attribute) is not False

    def _keep(self, attribute: Attribute) -> bool | set[str]:
        """False to drop, True to keep whole, or a set of sub-attribute names to keep.

        `returned` applies to sub-attributes too (RFC 7643 §7): `never` ones are never kept,
        `request` ones only when named in `attributes`."""
        key = (attribute.schema, attribute.name)
        if attribute.returned == "never":
            return False
        if attribute.returned == "always":
            return _default_subs(attribute)
        if self.has_request:
            if key in self.included or attribute.schema in self.included:
                named = self.included.get(key)
                if named is None:
                    return _default_subs(attribute)
                return {n for n in named if (sub := attribute.sub(n)) and sub.returned != "never"}
            return False
        if attribute.returned == "request":
            return False
        if key in self.excluded or attribute.schema in self.excluded:
            subs = self.excluded.get(key)
            if subs is None:
                return False
            return {
                s.name for s in attribute.subs() if s.name not in subs and s.returned not in _HIDDEN
            }
        return _default_subs(attribute)

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        if self.trivial:
            return resource
        out: dict[str, Any] = {"schemas": resource.get("schemas", [self.rtype.schema])}
        core = self.rtype.schema
        for urn, kept in self._plan:
            source = resource if urn == core else resource.get(urn)
            if not source:
                continue
            target: dict[str, Any] = {}
            for name, keep in kept:
                if name not in source:
                    continue
                value = source[name]
                if keep is not True:
                    value = _only(value, keep)
                    if not value:
                        continue
                target[name] = value
            if urn == core:
                out.update(target)
            elif target:
                out[urn] = target
        out["schemas"] = [s for s in out["schemas"] if s == core or s in out]
        return out


def across(
    rtypes: Iterable[ResourceType], attributes: list[str], excluded: list[str]
) -> dict[str, Projection]:
    """The projection of each resource type in a search across them (RFC 7644 §3.4.3, §3.9):
    each takes the names it defines, so `attributes=userName` leaves a Group with only what is
    always returned; a name no type defines is 400 `invalidValue`, as for one type."""
    rtypes = list(rtypes)
    for path in (*attributes, *excluded):
        if not any(_defines(rtype, path) for rtype in rtypes):
            raise InvalidValue(f"Unknown attribute {path!r} in attributes/excludedAttributes.")
    return {
        rtype.name: Projection(
            rtype,
            [path for path in attributes if _defines(rtype, path)],
            [path for path in excluded if _defines(rtype, path)],
            requested=bool(attributes),
        )
        for rtype in rtypes
    }


def _defines(rtype: ResourceType, path: str) -> bool:
    return rtype.canonical_urn(path) is not None or rtype.resolve(path) is not None


_HIDDEN = ("never", "request")


@cache
def _default_subs(attribute: Attribute) -> bool | set[str]:
    """True when every sub-attribute is returned by default, else the names of those that are
    (not `returned: never` or `request`)."""
    subs = list(attribute.subs())
    if all(s.returned not in _HIDDEN for s in subs):
        return True
    return {s.name for s in subs if s.returned not in _HIDDEN}


def _only(value: Any, subs: set[str]) -> Any:
    if isinstance(value, list):
        kept = [{k: v for k, v in element.items() if k in subs} for element in value]
        return [element for element in kept if element]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k in subs}
    return value
