"""The SCIM schema documents and a case-insensitive view over them.

The JSON files beside this module are the single source of truth for every attribute's type,
mutability, `returned`, uniqueness, `caseExact` and required-ness (RFC 7643 §2.2, §7). They are
served as they are at `/Schemas`, `/ResourceTypes` and `/ServiceProviderConfig`; validation,
filtering, PATCH and serialisation read them through `resource_type(name).attribute(path)`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from scim_schemas.identity import identity_key

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LMS_USER = "urn:lms-scim:schemas:extension:lms:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

_SCHEMA_FILES = ("user.json", "group.json", "enterprise_user.json", "lms_user.json")

# The attributes that name a person or a group. lms-scim keeps them unique (userName always,
# e-mail values under UNIQUE_EMAILS, group displayName under UNIQUE_GROUP_NAMES), so they are
# compared, filtered and indexed under `identity_key`, and refuse invisible or edge characters.
IDENTITY_ATTRIBUTES = frozenset(
    {(CORE_USER, "userName"), (CORE_USER, "emails.value"), (CORE_GROUP, "displayName")}
)


@dataclass(frozen=True)
class Attribute:
    """One attribute or sub-attribute definition, with its place in the resource."""

    name: str
    type: str
    multi_valued: bool
    required: bool
    case_exact: bool
    mutability: str
    returned: str
    uniqueness: str
    schema: str
    parent: str | None = None
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    identity: bool = False
    sub_attributes: Mapping[str, Attribute] = field(default_factory=dict, compare=False)

    @property
    def path(self) -> str:
        """The canonical dotted path inside the schema, e.g. `name.givenName`."""
        return f"{self.parent}.{self.name}" if self.parent else self.name

    @property
    def is_complex(self) -> bool:
        return self.type == "complex"

    @property
    def is_extension(self) -> bool:
        return self.schema not in (CORE_USER, CORE_GROUP)

    def key(self, text: str) -> str:
        """`text` as this attribute's values are compared when not caseExact: the identity key
        for names (`IDENTITY_ATTRIBUTES`), lower-cased otherwise."""
        return identity_key(text) if self.identity else fold(text)

    def sub(self, name: str) -> Attribute | None:
        """The sub-attribute called `name`, ignoring case (RFC 7643 §2.1)."""
        return self.sub_attributes.get(name.casefold())

    def subs(self) -> Iterator[Attribute]:
        return iter(self.sub_attributes.values())


def _attribute(doc: Mapping[str, Any], schema: str, parent: str | None = None) -> Attribute:
    name = doc["name"]
    subs = {
        sub["name"].casefold(): _attribute(sub, schema, parent=name)
        for sub in doc.get("subAttributes", ())
    }
    return Attribute(
        name=name,
        type=doc["type"],
        multi_valued=bool(doc.get("multiValued", False)),
        required=bool(doc.get("required", False)),
        case_exact=bool(doc.get("caseExact", False)),
        mutability=doc.get("mutability", "readWrite"),
        returned=doc.get("returned", "default"),
        uniqueness=doc.get("uniqueness", "none"),
        schema=schema,
        parent=parent,
        canonical_values=tuple(doc.get("canonicalValues", ())),
        reference_types=tuple(doc.get("referenceTypes", ())),
        identity=(schema, f"{parent}.{name}" if parent else name) in IDENTITY_ATTRIBUTES,
        sub_attributes=MappingProxyType(subs),
    )


def _load(name: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


@cache
def _schema_docs() -> dict[str, dict[str, Any]]:
    return {doc["id"]: doc for doc in map(_load, _SCHEMA_FILES)}


@dataclass(frozen=True, slots=True)
class AttrRef:
    """A resolved attribute path: the top-level `attribute` and, if named, its `sub`-attribute.

    What `ResourceType.resolve` answers, what filters compare (`app.filters`) and what a PATCH
    path points at (`app.patch.Path`).
    """

    attribute: Attribute
    sub: Attribute | None = None

    @property
    def target(self) -> Attribute:
        """The attribute whose values are meant: the sub-attribute if there is one."""
        return self.sub if self.sub is not None else self.attribute

    @property
    def path(self) -> str:
        """The canonical path; extension attributes carry their schema URN (RFC 7644 §3.10)."""
        base = self.attribute.name
        if self.attribute.is_extension:
            base = f"{self.attribute.schema}:{base}"
        return f"{base}.{self.sub.name}" if self.sub is not None else base


class ResourceType:
    """A resource type (User, Group) and every attribute reachable from it."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.document = doc
        self.name: str = doc["name"]
        self.endpoint: str = doc["endpoint"]
        self.schema: str = doc["schema"]
        self.extensions: tuple[str, ...] = tuple(
            ext["schema"] for ext in doc.get("schemaExtensions", ())
        )
        self.required_extensions: tuple[str, ...] = tuple(
            ext["schema"] for ext in doc.get("schemaExtensions", ()) if ext.get("required")
        )
        docs = _schema_docs()
        common = [_attribute(a, self.schema) for a in _load("common.json")["attributes"]]
        self._by_schema: dict[str, dict[str, Attribute]] = {}
        for urn in (self.schema, *self.extensions):
            attrs = [_attribute(a, urn) for a in docs[urn]["attributes"]]
            if urn == self.schema:
                attrs = common + attrs
            self._by_schema[urn] = {a.name.casefold(): a for a in attrs}
        self._urns = {urn.casefold(): urn for urn in self._by_schema}

    @property
    def schemas(self) -> tuple[str, ...]:
        return (self.schema, *self.extensions)

    def canonical_urn(self, urn: str) -> str | None:
        """The schema URN as declared, for a URN written in any case."""
        return self._urns.get(urn.casefold())

    def attributes(self, urn: str | None = None) -> Iterator[Attribute]:
        """Top-level attributes of one schema (default: the core one, with id, externalId, meta)."""
        return iter(self._by_schema[urn or self.schema].values())

    def all_attributes(self) -> Iterator[Attribute]:
        for attrs in self._by_schema.values():
            yield from attrs.values()

    def split_urn(self, path: str) -> tuple[str, str]:
        """Split `urn:…:User:name.givenName` into (schema URN, `name.givenName`).

        A path without a known URN prefix belongs to the core schema (RFC 7644 §3.10).
        """
        folded = path.casefold()
        for key, urn in sorted(self._urns.items(), key=lambda item: -len(item[0])):
            if folded.startswith(key + ":"):
                return urn, path[len(key) + 1 :]
        return self.schema, path

    def resolve(self, path: str) -> AttrRef | None:
        """Resolve an attribute path (any case, optionally URN-qualified) or return None."""
        urn, rest = self.split_urn(path)
        head, _, tail = rest.partition(".")
        attribute = self._by_schema[urn].get(head.casefold())
        if attribute is None:
            return None
        if not tail:
            return AttrRef(attribute)
        sub = attribute.sub(tail)
        return AttrRef(attribute, sub) if sub is not None else None

    def attribute(self, path: str) -> Attribute | None:
        """The attribute or sub-attribute a path names, ignoring case; None if unknown."""
        resolved = self.resolve(path)
        return resolved.target if resolved else None


@cache
def resource_types() -> dict[str, ResourceType]:
    return {doc["name"]: ResourceType(doc) for doc in _load("resource_types.json")}


def resource_type(name: str) -> ResourceType:
    return resource_types()[name]


def schema_documents() -> list[dict[str, Any]]:
    """The schema documents as served at `/Schemas` (a fresh copy each call)."""
    return copy.deepcopy(list(_schema_docs().values()))


def resource_type_documents() -> list[dict[str, Any]]:
    return copy.deepcopy(_load("resource_types.json"))


def service_provider_config_template() -> dict[str, Any]:
    return _load("service_provider_config.json")


def fold(text: str) -> str:
    """The caseless form of a value of a `caseExact: false` attribute.

    `str.lower()` rather than `casefold()`: PostgreSQL's LOWER() and the normalised index
    columns must agree with the in-memory evaluator, and LOWER() does not fold `ß` to `ss`.
    """
    return text.lower()
