"""PATCH requests parsed against the schema (RFC 7644 §3.5.2): the PatchOp envelope, each
operation's `op`, `path` (Figure 7, with the bracketed filter parsed by `app.filters`) and
`value`, and path-less operations expanded to one per attribute."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidPath, InvalidSyntax, InvalidValue, NoTarget
from app.filters import Expr, parse_value_filter
from app.marshal import DEFAULT_LIMITS, Limits, attribute_items, fold_keys
from scim_schemas import PATCH_OP, Attribute, AttrRef, ResourceType

ADD = "add"
REPLACE = "replace"
REMOVE = "remove"
OPS = frozenset({ADD, REPLACE, REMOVE})

# Keys of a path-less value that describe the message, not attributes: ignored (RFC 7644 §3.5.2
# leaves them undefined; Okta and Entra copy them from a GET).
_IGNORED_KEYS = frozenset({"schemas", "meta"})


@dataclass(frozen=True, eq=True)
class Path:
    """A parsed PATCH `path` (RFC 7644 §3.5.2, Figure 7: `PATH = attrPath / valuePath [subAttr]`).

    - `ref`: the attribute the path starts at (core or extension) and the sub-attribute after
      the dot (`name.givenName`, `emails[…].value`), if any;
    - `value_filter`: the filter in brackets for a value path (`members[value eq "…"]`), else None;
    - `text`: the path as the client sent it;
    - `filter_text`: the text between the brackets, else None.
    """

    ref: AttrRef
    value_filter: Expr | None
    text: str
    filter_text: str | None = None

    @property
    def attribute(self) -> Attribute:
        return self.ref.attribute

    @property
    def sub(self) -> Attribute | None:
        return self.ref.sub

    @property
    def target(self) -> Attribute:
        """The attribute the value is for: the sub-attribute if any, else the attribute."""
        return self.ref.target


@dataclass(frozen=True)
class Operation:
    """One PATCH operation (RFC 7644 §3.5.2).

    `op` is lower case (`add`, `replace`, `remove`); `path` is None for a path-less add/replace
    (whose `value` is then an object of attributes, see `expand_operations`); `value` is the raw
    JSON value as sent (None when absent) — `apply_operations` coerces it against the schema.
    """

    op: str
    path: Path | None
    value: Any = None


# --------------------------------------------------------------------------------------------
# Parsing


def parse_patch_request(
    rtype: ResourceType, body: Any, limits: Limits = DEFAULT_LIMITS
) -> list[Operation]:
    """Validate a PatchOp message (RFC 7644 §3.5.2) and parse its operations.

    `schemas` must list `urn:ietf:params:scim:api:messages:2.0:PatchOp` and `Operations` (any
    case) must be a non-empty list, else 400 invalidSyntax. `op` is case-insensitive (Entra ID
    sends `Add`/`Replace`/`Remove`); add and replace need a `value` (400 invalidSyntax); a remove
    without `path` is 400 noTarget (§3.5.2.2); a bad path is 400 invalidPath, a bad filter inside
    brackets 400 invalidFilter. A value listing more values of a multi-valued attribute than
    `limits` allows is 400 invalidValue.
    """
    if not isinstance(body, dict):
        raise InvalidSyntax("The PATCH body must be a JSON object.")
    fields = fold_keys(body)
    schemas = fields.get("schemas")
    if not isinstance(schemas, list) or not any(
        isinstance(s, str) and s.casefold() == PATCH_OP.casefold() for s in schemas
    ):
        raise InvalidSyntax(f"schemas must contain {PATCH_OP}.")
    operations = fields.get("operations")
    if not isinstance(operations, list) or not operations:
        raise InvalidSyntax("Operations must be a non-empty list of operations.")
    parsed: list[Operation] = []
    for index, raw in enumerate(operations):
        parsed.extend(_parse_operation(rtype, raw, index))
    for operation in expand_operations(rtype, parsed):
        path = operation.path
        if path is not None and path.value_filter is None and path.sub is None:
            limits.check(path.attribute, operation.value)
    return parsed


def _parse_operation(rtype: ResourceType, raw: Any, index: int) -> list[Operation]:
    where = f"Operations[{index}]"
    if not isinstance(raw, dict):
        raise InvalidSyntax(f"{where} must be an object.")
    fields = fold_keys(raw)
    op = fields.get("op")
    if not isinstance(op, str) or op.casefold() not in OPS:
        raise InvalidSyntax(f"{where}.op must be one of add, replace, remove.")
    op = op.casefold()
    raw_path = fields.get("path")
    if raw_path is not None and not isinstance(raw_path, str):
        raise InvalidPath(f"{where}.path must be a string.")
    value = fields.get("value")
    extension = rtype.canonical_urn(raw_path.strip()) if raw_path else None
    if extension is not None and extension != rtype.schema:
        # A path that is only an extension URN is not in the RFC 7644 §3.10 grammar, but
        # clients send it meaning "the extension's attributes": add/replace act like a
        # path-less value holding the extension object, remove removes each attribute.
        if op == REMOVE:
            return [
                Operation(op, parse_path(rtype, f"{extension}:{attribute.name}"), None)
                for attribute in rtype.attributes(extension)
                if attribute.mutability in ("readWrite", "writeOnly")
            ]
        if "value" not in fields:
            raise InvalidSyntax(f"{where}: {op} needs a value.")
        return [Operation(op, None, {extension: value})]
    path = parse_path(rtype, raw_path) if raw_path and raw_path.strip() else None
    if op == REMOVE:
        if path is None:
            raise NoTarget(f"{where}: remove needs a path (RFC 7644 §3.5.2.2).")
        return [Operation(op, path, value)]
    if "value" not in fields:
        raise InvalidSyntax(f"{where}: {op} needs a value.")
    if path is None and not isinstance(value, dict):
        raise InvalidSyntax(f"{where}: without a path, value must be an object of attributes.")
    return [Operation(op, path, value)]


def _closing_bracket(text: str, start: int) -> int:
    """Index of the `]` closing the `[` at `start`, skipping quoted strings; -1 if none."""
    in_string = escaped = False
    for index in range(start + 1, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "]":
            return index
    return -1


def _resolve(rtype: ResourceType, text: str) -> AttrRef | None:
    resolved = rtype.resolve(text)
    if resolved is None and ":" not in text:
        # Entra ID sends `path: "manager"` for the enterprise extension's manager: a name that is
        # not a core attribute but belongs to exactly one extension is taken as that attribute.
        found = [rtype.resolve(f"{urn}:{text}") for urn in rtype.extensions]
        found = [r for r in found if r is not None]
        resolved = found[0] if len(found) == 1 else None
    return resolved


def parse_path(rtype: ResourceType, text: str) -> Path:
    """Parse a PATCH path (RFC 7644 §3.5.2 Figure 7, ABNF in §3.4.2.2) against the schema.

    `attrPath = [URI ":"] ATTRNAME *1subAttr`, `valuePath = attrPath "[" valFilter "]"`, and a
    value path may be followed by `"." subAttr`. Unknown attributes are 400 invalidPath (never
    ignored); the bracketed filter is parsed by `app.filters` (400 invalidFilter).
    """
    if not isinstance(text, str) or not text:
        raise InvalidPath("The path must be a non-empty string.")
    open_at = text.find("[")
    if open_at == -1:
        if "]" in text:
            raise InvalidPath(f"Unbalanced bracket in path {text!r}.")
        resolved = _resolve(rtype, text)
        if resolved is None:
            raise InvalidPath(f"Unknown attribute path {text!r}.")
        return Path(resolved, None, text)
    close_at = _closing_bracket(text, open_at)
    if close_at == -1:
        raise InvalidPath(f"Unbalanced bracket in path {text!r}.")
    head, filter_text, rest = text[:open_at], text[open_at + 1 : close_at], text[close_at + 1 :]
    resolved = _resolve(rtype, head) if head else None
    if resolved is None:
        raise InvalidPath(f"Unknown attribute {head!r} in path {text!r}.")
    attribute, sub = resolved.attribute, resolved.sub
    if sub is not None or not (attribute.multi_valued and attribute.is_complex):
        raise InvalidPath(f"{text!r}: a value filter needs a multi-valued complex attribute.")
    if rest:
        sub = attribute.sub(rest[1:]) if rest.startswith(".") else None
        if sub is None:
            raise InvalidPath(f"{attribute.name} has no sub-attribute {rest[1:]!r} ({text!r}).")
    if not filter_text.strip():
        raise InvalidPath(f"Empty value filter in path {text!r}.")
    expr = parse_value_filter(filter_text, attribute, rtype)
    return Path(AttrRef(attribute, sub), expr, text, filter_text)


def expand_operations(rtype: ResourceType, operations: Iterable[Operation]) -> list[Operation]:
    """Split each path-less add/replace into one operation per attribute it carries.

    RFC 7644 §3.5.2.1/§3.5.2.3: without a path "the target location is assumed to be the
    resource itself" and the value holds the attributes to add or replace, so each key acts as
    that attribute's path; keys are read as in a POST body (`marshal.attribute_items`).
    `schemas` and `meta` are ignored; an unknown key is 400 invalidValue, as in a POST or PUT
    body.
    """
    out: list[Operation] = []
    for operation in operations:
        if operation.path is not None:
            out.append(operation)
            continue
        if operation.op == REMOVE:
            raise NoTarget("remove needs a path (RFC 7644 §3.5.2.2).")
        if not isinstance(operation.value, dict):
            raise InvalidSyntax(f"Without a path, the {operation.op} value must be an object.")
        for key, value in attribute_items(rtype, operation.value, _IGNORED_KEYS):
            out.append(Operation(operation.op, _key_path(rtype, key), value))
    return out


def _key_path(rtype: ResourceType, key: str) -> Path:
    try:
        return parse_path(rtype, key)
    except InvalidPath as exc:
        raise InvalidValue(f"Unknown attribute {key!r}.") from exc
