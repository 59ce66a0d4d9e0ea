"""A group's `members` operations as commands (RFC 7644 §3.5.2), never applied as a list: a group
can have 100,000 members. `app.store.memberships` executes the commands as single-row inserts
and deletes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from app.errors import InvalidValue, Mutability
from app.filters import Expr
from app.marshal import coerce
from app.patch.operations import REMOVE, REPLACE, Operation, Path, expand_operations
from scim_schemas import CORE_GROUP, Attribute, ResourceType, fold, resource_type

# --------------------------------------------------------------------------------------------
# Group members as commands
#
# The commands are plain values. Each runs itself as one call on a `MemberWriter` (the store's
# `app.store.memberships.Writer`), so the store executes them without importing this module.

_MEMBERS = resource_type("Group").attribute("members")

_ONLY_USERS = (
    "Only Users can be members of a group: nested groups are not supported (members.type "
    "must be 'User')."
)


class MemberWriter(Protocol):
    """The membership writes that member commands are made of."""

    def add(self, ids: Sequence[str]) -> None: ...

    def remove(self, ids: Sequence[str]) -> None: ...

    def remove_matching(self, value_filter: Expr) -> None: ...

    def remove_all(self) -> None: ...

    def replace(self, ids: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class AddMembers:
    """`add` on `members` (RFC 7644 §3.5.2.1): these users join the group; one already in it
    stays as it is ("If the target location already contains the value specified, no changes
    SHOULD be made")."""

    ids: tuple[str, ...]

    def run(self, writer: MemberWriter) -> None:
        writer.add(self.ids)


@dataclass(frozen=True)
class RemoveMembers:
    """`remove` on `members` with a value (RFC 7644 §3.5.2.2 does not define a value for remove):
    Entra ID sends `{"op":"Remove","path":"members","value":[{"value":"<id>"}]}` and means
    "these users leave", never "empty the group"; one not in the group is already gone."""

    ids: tuple[str, ...]

    def run(self, writer: MemberWriter) -> None:
        writer.remove(self.ids)


@dataclass(frozen=True)
class RemoveMatching:
    """`remove` on `members[<filter>]` (RFC 7644 §3.5.2.2): the members the value filter matches
    leave. Okta sends `members[value eq "<id>"]`; a filter that matches nothing is taken as
    "already gone" rather than 400 noTarget, so a member removed in the LMS meanwhile does not
    fail Okta's push."""

    value_filter: Expr

    def run(self, writer: MemberWriter) -> None:
        writer.remove_matching(self.value_filter)


@dataclass(frozen=True)
class RemoveAllMembers:
    """`remove` on `members` without a value (RFC 7644 §3.5.2.2: "If the target location is a
    multi-valued attribute and no filter is specified, the attribute and all values are
    removed"), and `replace` with `null` or `[]` (§3.5.2.3, RFC 7643 §2.5: unassigned)."""

    def run(self, writer: MemberWriter) -> None:
        writer.remove_all()


@dataclass(frozen=True)
class ReplaceMembers:
    """`replace` on `members` (RFC 7644 §3.5.2.3) and the `members` of a PUT (§3.5.1): the
    members become exactly these users (Okta's full push); rows that stay are not touched."""

    ids: tuple[str, ...]

    def run(self, writer: MemberWriter) -> None:
        writer.replace(self.ids)


MemberCommand = AddMembers | RemoveMembers | RemoveMatching | RemoveAllMembers | ReplaceMembers


def member_ids(value: Any) -> list[str]:
    """The user ids a `members` value names (RFC 7643 §4.2), each once, in order.

    Okta sends `{"value", "display"}`, Entra `{"$ref": null, "value"}`; `display` is read-only
    and ignored. Members are Users only: RFC 7643 §4.2 allows Groups too, but nesting would need
    cycle checks and transitive reads, so a `type` other than User is 400 invalidValue. Ids are
    folded, as `members.value` is caseExact false.
    """
    elements = coerce(_MEMBERS, value if isinstance(value, list) else [value])
    ids: dict[str, None] = {}
    for element in elements:
        if str(element.get("type", "User")).casefold() != "user":
            raise InvalidValue(_ONLY_USERS)
        if not isinstance(element.get("value"), str) or not element["value"]:
            raise InvalidValue("Every member needs a value: the id of a User.")
        ids[fold(element["value"])] = None
    return list(ids)


def replace_members(ids: Sequence[str]) -> MemberCommand:
    """The members become exactly `ids` (RFC 7644 §3.5.1, §3.5.2.3); none empties the group."""
    return ReplaceMembers(tuple(ids)) if ids else RemoveAllMembers()


def member_commands(
    rtype: ResourceType, operations: Iterable[Operation]
) -> tuple[list[Operation], list[MemberCommand]]:
    """Split PATCH operations into those for `apply_operations` and the `members` ones, which
    become commands in request order (RFC 7644 §3.5.2: operations apply in sequence).

    Path-less operations are expanded first (`expand_operations`), so a `members` key inside a
    path-less value is a member operation too. A path to a member's sub-attribute, and a value
    filter with add or replace, are 400 mutability (members are added and removed whole); an add
    of nothing is no command.
    """
    others: list[Operation] = []
    commands: list[MemberCommand] = []
    for operation in expand_operations(rtype, operations):
        path = operation.path
        if path is None or not _is_members(path.attribute):
            others.append(operation)
        elif (command := _member_command(operation.op, path, operation.value)) is not None:
            commands.append(command)
    return others, commands


def _is_members(attribute: Attribute) -> bool:
    return attribute.schema == CORE_GROUP and attribute.name == _MEMBERS.name


def _member_command(op: str, path: Path, value: Any) -> MemberCommand | None:
    if path.sub is not None:
        raise Mutability("members sub-attributes are immutable or read-only.")
    if op == REMOVE:
        if path.value_filter is not None:
            return RemoveMatching(path.value_filter)
        if value is None or value == []:
            return RemoveAllMembers()
        return RemoveMembers(tuple(member_ids(value)))
    if path.value_filter is not None:
        raise Mutability("members values are immutable: remove and add members instead.")
    if op == REPLACE:
        return replace_members(member_ids(value) if value is not None else [])
    ids = member_ids(value) if value is not None else []
    return AddMembers(tuple(ids)) if ids else None
