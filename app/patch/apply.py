"""PATCH operations applied, in order, to a copy of a canonical resource dict (RFC 7644 §3.5.2.1
to §3.5.2.3), with mutability, required attributes and `primary` enforced."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from app.errors import InvalidValue, Mutability, NoTarget
from app.filters import matches_element
from app.marshal import absent, coerce
from app.patch.operations import REMOVE, REPLACE, Operation, Path, expand_operations
from scim_schemas import Attribute, ResourceType

# Entra ID's value-path dialect: `emails[type eq "work"].value` (see `_entra_new_element`).
_TYPE_EQ = re.compile(r'^\s*type\s+eq\s+("(?:[^"\\]|\\.)*")\s*$', re.IGNORECASE)


def apply_operations(
    rtype: ResourceType, resource: dict[str, Any], operations: Iterable[Operation]
) -> dict[str, Any]:
    """Apply PATCH operations in order (RFC 7644 §3.5.2) and return a new resource dict.

    The input is never modified; the first failing operation fails the whole request ("the
    entire PATCH request SHALL be ... not applied", §3.5.2). Every value is coerced against its
    attribute. Mutability (§3.5.2): a readOnly target is 400 mutability unless the value sent
    equals the current one (Okta's rename carries the group's own `id`); an immutable attribute
    may be set while it has no value, and not changed after. A replace with `null` (or `[]`)
    removes the attribute (RFC 7643 §2.5: null and an empty array mean unassigned); an add with
    `null` changes nothing. Removing a required attribute, or leaving it unassigned, is 400
    mutability (§3.5.2.2). At most one element of a multi-valued attribute keeps `primary: true`
    (RFC 7643 §2.4): the one the request set last.
    """
    result = copy.deepcopy(resource)
    applier = _Applier(rtype, result)
    for operation in expand_operations(rtype, operations):
        applier.apply(operation)
    _check_required(rtype, resource, result)
    _tidy(rtype, resource, result)
    return result


def _equal(attribute: Attribute, left: Any, right: Any) -> bool:
    """Value equality under the attribute's `caseExact` (RFC 7643 §2.2)."""
    if attribute.is_complex and isinstance(left, dict) and isinstance(right, dict):
        if left.keys() != right.keys():
            return False
        return all(_equal(attribute.sub(k) or attribute, left[k], right[k]) for k in left)
    if isinstance(left, str) and isinstance(right, str) and not attribute.case_exact:
        return attribute.key(left) == attribute.key(right)
    return type(left) is type(right) and left == right


def _sub_equal(attribute: Attribute, name: str, left: Any, right: Any) -> bool:
    sub = attribute.sub(name)
    return _equal(sub, left, right) if sub is not None else left == right


def _check_required(rtype: ResourceType, before: dict[str, Any], after: dict[str, Any]) -> None:
    for attribute in rtype.all_attributes():
        if not attribute.required or attribute.mutability == "readOnly":
            continue
        if attribute.schema == rtype.schema:
            had, has = before.get(attribute.name), after.get(attribute.name)
        else:
            had = (before.get(attribute.schema) or {}).get(attribute.name)
            has = (after.get(attribute.schema) or {}).get(attribute.name)
        if not absent(had) and absent(has):
            # RFC 7644 §3.5.2.2: "If an attribute is removed or becomes unassigned and is
            # defined as a required attribute or a read-only attribute, the server SHALL
            # return ... a "scimType" error code of "mutability"."
            raise Mutability(f"{attribute.name} is required and cannot be removed.")


def _tidy(rtype: ResourceType, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Drop extension objects the patch emptied and keep `schemas` in step with them."""
    for urn in rtype.extensions:
        if urn in after and not after[urn] and (urn not in before or before[urn]):
            del after[urn]
    schemas = [rtype.schema, *(urn for urn in rtype.extensions if after.get(urn))]
    if "schemas" in before or schemas != [rtype.schema]:
        old = before.get("schemas")
        if not (isinstance(old, list) and set(old) == set(schemas)):
            after["schemas"] = schemas


class _Applier:
    """Applies single-path operations to one (already copied) resource dict."""

    def __init__(self, rtype: ResourceType, resource: dict[str, Any]) -> None:
        self.rtype = rtype
        self.resource = resource

    # -- where values live ------------------------------------------------------------------

    def container(self, attribute: Attribute, create: bool = False) -> dict[str, Any]:
        if attribute.schema == self.rtype.schema:
            return self.resource
        found = self.resource.get(attribute.schema)
        if isinstance(found, dict):
            return found
        if not create:
            return {}
        self.resource[attribute.schema] = {}
        return self.resource[attribute.schema]

    def current(self, attribute: Attribute) -> Any:
        return self.container(attribute).get(attribute.name)

    def store(self, attribute: Attribute, value: Any) -> None:
        if absent(value):
            self.discard(attribute)
        else:
            self.container(attribute, create=True)[attribute.name] = value

    def discard(self, attribute: Attribute) -> None:
        container = self.container(attribute)
        container.pop(attribute.name, None)
        if container is not self.resource and not container:
            self.resource.pop(attribute.schema, None)

    # -- dispatch ---------------------------------------------------------------------------

    def apply(self, operation: Operation) -> None:
        path = operation.path
        if path is None:  # pragma: no cover - expand_operations removes these
            raise NoTarget("remove needs a path (RFC 7644 §3.5.2.2).")
        value = operation.value
        if operation.op == REMOVE:
            self.remove(path, value)
            return
        value = self.entra_value(path, value)
        if value is None or value == []:
            # RFC 7643 §2.5: null and [] mean "unassigned". A replace with them removes the
            # target (if it has a value: replacing nothing with nothing is no change, which also
            # lets Okta echo `groups: []`); an add of nothing changes nothing.
            if operation.op == REPLACE and not self.unassigned(path):
                self.remove(path, None)
            return
        if path.value_filter is not None or (path.sub is not None and path.attribute.multi_valued):
            self.set_in_elements(operation.op, path, value)
        elif path.sub is not None:
            self.set_sub(path.attribute, path.sub, value)
        elif path.attribute.multi_valued:
            self.set_multi(operation.op, path.attribute, value)
        else:
            self.set_single(path.attribute, value)

    def unassigned(self, path: Path) -> bool:
        """Whether a path without a value filter names something that has no value."""
        if path.value_filter is not None:
            return False
        current = self.current(path.attribute)
        if path.sub is not None and not path.attribute.multi_valued:
            current = current.get(path.sub.name) if isinstance(current, dict) else None
        return absent(current)

    @staticmethod
    def entra_value(path: Path, value: Any) -> Any:
        """Entra ID's shapes for a single-valued complex attribute such as `manager`.

        On the URN path (`…:enterprise:2.0:User:manager`) Entra sends the manager's id as a bare
        string; with `path: "manager"` it sends `[{"value": "<id>"}]`. Both mean
        `{"value": "<id>"}`; an empty list means no manager.
        """
        attribute = path.attribute
        if path.sub is not None or attribute.multi_valued or not attribute.is_complex:
            return value
        if isinstance(value, list) and len(value) <= 1:
            value = value[0] if value else None
        if isinstance(value, str) and attribute.sub("value") is not None:
            value = {"value": value}
        return value

    # -- mutability -------------------------------------------------------------------------

    @staticmethod
    def may_write(attribute: Attribute, current: Any, new: Any) -> bool:
        """Whether `new` may replace `current` (RFC 7644 §3.5.2); False means "no change"."""
        if absent(current) and attribute.mutability != "readOnly":
            return True
        if _equal(attribute, current, new):
            return False
        if attribute.mutability == "readOnly":
            raise Mutability(f"{attribute.path} is readOnly.")
        if attribute.mutability == "immutable":
            raise Mutability(f"{attribute.path} is immutable and already has a value.")
        return True

    @staticmethod
    def may_remove(attribute: Attribute, current: Any) -> None:
        if attribute.mutability == "readOnly":
            raise Mutability(f"{attribute.path} is readOnly and cannot be removed.")
        if attribute.mutability == "immutable" and not absent(current):
            raise Mutability(f"{attribute.path} is immutable and cannot be removed.")

    @staticmethod
    def merge(attribute: Attribute, element: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """`element` with `new`'s sub-attributes written over it, honouring their mutability."""
        merged = dict(element)
        for name, value in new.items():
            sub = attribute.sub(name)
            if sub is None or _Applier.may_write(sub, element.get(name), value):
                merged[name] = value
        return merged

    # -- add / replace ----------------------------------------------------------------------

    def set_single(self, attribute: Attribute, value: Any) -> None:
        """A single-valued attribute: simple values are replaced, complex ones merged sub-
        attribute by sub-attribute (RFC 7644 §3.5.2.1, §3.5.2.3: "Sub-attributes that are not
        specified in the "value" parameter are left unchanged")."""
        current = self.current(attribute)
        if attribute.mutability == "readOnly":
            if value == current:  # Okta's rename carries the resource's own id: ignore it.
                return
            raise Mutability(f"{attribute.path} is readOnly.")
        new = coerce(attribute, value)
        if attribute.is_complex:
            base = current if isinstance(current, dict) else {}
            new = self.merge(attribute, base, new)
        if self.may_write(attribute, current, new):
            self.store(attribute, new)

    def set_sub(self, attribute: Attribute, sub: Attribute, value: Any) -> None:
        """`name.givenName`, `…:manager.value`: one sub-attribute of a single complex value."""
        parent = self.current(attribute)
        parent = parent if isinstance(parent, dict) else {}
        if attribute.mutability == "readOnly" or sub.mutability == "readOnly":
            if value == parent.get(sub.name):
                return
            raise Mutability(f"{attribute.name}.{sub.name} is readOnly.")
        new = coerce(sub, value)
        if self.may_write(sub, parent.get(sub.name), new):
            self.store(attribute, {**parent, sub.name: new})

    def set_multi(self, op: str, attribute: Attribute, value: Any) -> None:
        """A whole multi-valued attribute: add appends values not already there (RFC 7644
        §3.5.2.1: "If the target location already contains the value specified, no changes
        SHOULD be made"); replace swaps the whole list (§3.5.2.3)."""
        current = self.current(attribute)
        current = current if isinstance(current, list) else []
        if attribute.mutability == "readOnly":
            if value == current:
                return
            raise Mutability(f"{attribute.path} is readOnly.")
        new = coerce(attribute, value if isinstance(value, list) else [value])
        new = [element for element in new if not absent(element)]
        if op == REPLACE:
            # Okta's full member replace may repeat a member: keep each value once.
            elements, _ = self.union(attribute, [], new)
            if self.may_write(attribute, current, elements):
                self.store(attribute, elements)
            return
        elements, made_primary = self.union(attribute, current, new)
        if len(elements) != len(current) and attribute.mutability == "immutable" and current:
            raise Mutability(f"{attribute.path} is immutable and already has values.")
        _keep_one_primary(attribute, elements, made_primary)
        self.store(attribute, elements)

    def union(
        self, attribute: Attribute, current: list[Any], new: list[Any]
    ) -> tuple[list[Any], list[Any]]:
        """`current` plus the values of `new` not already there, and the elements this request
        sent with `primary: true` (a merged element's `primary` from before does not count: it
        must not win over a value the request made primary)."""
        elements = list(current)
        made_primary: list[Any] = []
        for element in new:
            index = _find_same(attribute, element, elements)
            if index is None:
                elements.append(element)
                index = len(elements) - 1
            elif attribute.is_complex and not _contains(attribute, elements[index], element):
                elements[index] = self.merge(attribute, elements[index], element)
            if isinstance(element, dict) and element.get("primary") is True:
                made_primary.append(elements[index])
        return elements, made_primary

    def set_in_elements(self, op: str, path: Path, value: Any) -> None:
        """A value path (`emails[type eq "work"]`, `emails[type eq "work"].value`): sets the
        sub-attribute on, or merges the value into, every matching element (RFC 7644 §3.5.2.3).
        No match is 400 noTarget, except Entra ID's `[type eq "x"].sub` (`_entra_new_element`).
        """
        attribute, sub = path.attribute, path.sub
        if attribute.mutability == "readOnly":
            raise Mutability(f"{attribute.path} is readOnly.")
        elements = [dict(e) for e in (self.current(attribute) or [])]
        matched = _matching(path, elements)
        if sub is not None:
            if sub.mutability == "readOnly":
                raise Mutability(f"{attribute.name}.{sub.name} is readOnly.")
            new_sub = coerce(sub, value)
            if not matched:
                element = _entra_new_element(path, new_sub)
                if element is None:
                    raise NoTarget(f"No value of {attribute.name} matches {path.text!r}.")
                elements.append(element)
                matched = [len(elements) - 1]
            for index in matched:
                elements[index] = self.merge(attribute, elements[index], {sub.name: new_sub})
        else:
            if not matched:
                raise NoTarget(f"No value of {attribute.name} matches {path.text!r}.")
            if not isinstance(value, dict):
                raise InvalidValue(f"{path.text}: the value must be an object of sub-attributes.")
            new = coerce(attribute, [value])[0]
            for index in matched:
                elements[index] = self.merge(attribute, elements[index], new)
        touched = [elements[i] for i in matched]
        primaries = [e for e in touched if e.get("primary") is True]
        _keep_one_primary(attribute, elements, primaries[-1:])
        self.store(attribute, elements)

    # -- remove -----------------------------------------------------------------------------

    def remove(self, path: Path, value: Any) -> None:
        """RFC 7644 §3.5.2.2: remove the attribute, the sub-attribute, or the matching values."""
        attribute, sub = path.attribute, path.sub
        current = self.current(attribute)
        if path.value_filter is None and sub is None:
            self.may_remove(attribute, current)
            if attribute.multi_valued and not absent(value) and isinstance(current, list):
                self.remove_listed(attribute, current, value)
            else:
                self.discard(attribute)
            return
        if not attribute.multi_valued:
            parent = current if isinstance(current, dict) else {}
            if attribute.mutability == "readOnly" or sub is None:
                raise Mutability(f"{attribute.path} is readOnly and cannot be removed.")
            self.may_remove(sub, parent.get(sub.name))
            self.store(attribute, {k: v for k, v in parent.items() if k != sub.name})
            return
        if attribute.mutability == "readOnly":
            raise Mutability(f"{attribute.path} is readOnly and cannot be removed.")
        elements = [dict(e) for e in (current or [])]
        matched = _matching(path, elements)
        if not matched and path.value_filter is not None:
            # Removing what is already absent leaves the state the client asked for, so it is a
            # no-op rather than noTarget: Okta retries `remove members[value eq "x"]` together
            # with an add, and Entra removes `emails[type eq "work"].value` from users without
            # one; failing the whole request would stall provisioning (RFC 7644 §3.5.2.2 names
            # no error for this case; noTarget stays for replace, §3.5.2.3).
            return
        if sub is None:
            if attribute.mutability == "immutable":
                raise Mutability(f"{attribute.path} is immutable and cannot be removed.")
            gone = set(matched)
            kept = [e for i, e in enumerate(elements) if i not in gone]
        else:
            for index in matched:
                self.may_remove(sub, elements[index].get(sub.name))
                elements[index].pop(sub.name, None)
            kept = [e for e in elements if e]
        self.store(attribute, kept)

    def remove_listed(self, attribute: Attribute, current: list[Any], value: Any) -> None:
        """Entra ID removes group members with `{"op":"Remove","path":"members","value":
        [{"value":"<id>"}]}`: only the listed values go, never the whole list; values that are
        not there are ignored (the member is already gone)."""
        listed = coerce(attribute, value if isinstance(value, list) else [value])
        listed = [element for element in listed if not absent(element)]
        kept = [e for e in current if not any(_same(attribute, item, e) for item in listed)]
        self.store(attribute, kept)


def _matching(path: Path, elements: list[Any]) -> list[int]:
    if path.value_filter is None:  # `emails.type`: every value of the attribute
        return list(range(len(elements)))
    return [
        index
        for index, element in enumerate(elements)
        if isinstance(element, dict) and matches_element(path.value_filter, element)
    ]


def _entra_new_element(path: Path, sub_value: Any) -> dict[str, Any] | None:
    """Entra ID quirk: `replace`/`add` on `emails[type eq "work"].value` when the user has no
    work e-mail yet means "create it" (Microsoft Entra provisioning docs, known SCIM
    compatibility issues). RFC 7644 §3.5.2.3 would answer 400 noTarget, which leaves Entra
    retrying forever. Only a filter that is a single `type eq "<text>"` qualifies, so the new
    element is exactly `{"type": "<text>", <sub>: value}`."""
    match = _TYPE_EQ.match(path.filter_text or "")
    type_sub = path.attribute.sub("type")
    if match is None or path.sub is None or type_sub is None:
        return None
    element = {"type": coerce(type_sub, json.loads(match.group(1)))}
    element[path.sub.name] = sub_value
    return element


def _identity(attribute: Attribute) -> Attribute | None:
    """The sub-attribute that alone identifies a value: an immutable `value` (group members —
    Okta adds `{"value", "display"}`, Entra `{"$ref": null, "value"}`, the RFC `{"value",
    "$ref", "display"}`, all meaning the same member)."""
    value = attribute.sub("value")
    return value if value is not None and value.mutability == "immutable" else None


def _contains(attribute: Attribute, element: Any, part: Any) -> bool:
    """Whether every sub-attribute `part` carries has the same value in `element`."""
    if not (isinstance(element, dict) and isinstance(part, dict)):
        return _equal(attribute, element, part)
    return all(k in element and _sub_equal(attribute, k, v, element[k]) for k, v in part.items())


def _same(attribute: Attribute, new: Any, existing: Any) -> bool:
    """Whether `new` denotes a value already present as `existing`."""
    identity = _identity(attribute)
    if identity is not None and isinstance(new, dict) and isinstance(existing, dict):
        name = identity.name
        return name in new and name in existing and _equal(identity, new[name], existing[name])
    return _contains(attribute, existing, new)


def _find_same(attribute: Attribute, new: Any, elements: list[Any]) -> int | None:
    """The element `new` duplicates or refines, if any.

    A duplicate is an element with the same identity (see `_identity`) or one that already has
    every sub-attribute `new` carries. An element with the same `value` and `type` is the same
    e-mail/phone/role: `new` is merged into it (adding `primary: true` to an existing e-mail
    does not create a second copy).
    """
    for index, element in enumerate(elements):
        if _same(attribute, new, element):
            return index
    if not (attribute.is_complex and isinstance(new, dict) and "value" in new):
        return None
    for index, element in enumerate(elements):
        if (
            isinstance(element, dict)
            and "value" in element
            and _sub_equal(attribute, "value", new["value"], element["value"])
            and _sub_equal(attribute, "type", new.get("type"), element.get("type"))
        ):
            return index
    return None


def _keep_one_primary(
    attribute: Attribute, elements: list[Any], touched: list[dict[str, Any]]
) -> None:
    """RFC 7643 §2.4: at most one `primary: true`. The value this request set primary wins;
    `primary` is dropped from the others."""
    if attribute.sub("primary") is None:
        return
    primaries = [e for e in elements if isinstance(e, dict) and e.get("primary") is True]
    if len(primaries) <= 1:
        return
    winners = [e for e in touched if e.get("primary") is True]
    keep = winners[-1] if winners else primaries[-1]
    for element in primaries:
        if element is not keep:
            del element["primary"]
