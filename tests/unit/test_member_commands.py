"""Group members in PATCH (RFC 7644 §3.5.2) as commands: every RFC, Okta and Entra ID form of a
`members` operation and the commands it becomes, in request order, and every error with its
scimType. Pure: no database (the store's execution is tested in tests/api/test_groups.py)."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import InvalidValue, Mutability, ScimError
from app.filters import Expr, parse_value_filter
from app.patch import (
    REPLACE,
    AddMembers,
    MemberCommand,
    RemoveAllMembers,
    RemoveMatching,
    RemoveMembers,
    ReplaceMembers,
    member_commands,
    member_ids,
    parse_patch_request,
    replace_members,
)
from scim_schemas import PATCH_OP, resource_type
from tests.idp.conversation import fixture

GROUP = resource_type("Group")
USER = resource_type("User")
MEMBERS = GROUP.attribute("members")

BJENSEN = "2819c223-7f76-453a-919d-413861904646"
JSMITH = "08e1d05d-121c-4561-8b96-473d93df9210"
OTHER = "902c246b-6245-4190-8e05-00816be7344a"


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def value_filter(text: str) -> Expr:
    return parse_value_filter(text, MEMBERS, GROUP)


def commands_of(body: dict[str, Any]) -> list[MemberCommand]:
    others, commands = member_commands(GROUP, parse_patch_request(GROUP, body))
    assert others == []
    return commands


def recorded(name: str) -> dict[str, Any]:
    return fixture(name.removesuffix(".json"))["request"]


CASES = [
    # RFC 7644 §3.5.2.1 to §3.5.2.3: the RFC's own examples.
    pytest.param(
        ops(
            {
                "op": "add",
                "path": "members",
                "value": [
                    {
                        "display": "Babs Jensen",
                        "$ref": f"https://example.com/v2/Users/{BJENSEN}",
                        "value": BJENSEN,
                    }
                ],
            }
        ),
        [AddMembers((BJENSEN,))],
        id="rfc 3.5.2.1 add a member",
    ),
    pytest.param(
        ops({"op": "remove", "path": f'members[value eq "{BJENSEN}"]'}),
        [RemoveMatching(value_filter(f'value eq "{BJENSEN}"'))],
        id="rfc 3.5.2.2 remove one member",
    ),
    pytest.param(
        ops({"op": "remove", "path": "members"}),
        [RemoveAllMembers()],
        id="rfc 3.5.2.2 remove all members",
    ),
    pytest.param(
        ops(
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [{"value": BJENSEN}, {"value": JSMITH}]},
        ),
        [RemoveAllMembers(), AddMembers((BJENSEN, JSMITH))],
        id="rfc 3.5.2.2 remove all members then add two",
    ),
    pytest.param(
        ops({"op": "replace", "path": "members", "value": [{"value": JSMITH}, {"value": OTHER}]}),
        [ReplaceMembers((JSMITH, OTHER))],
        id="rfc 3.5.2.3 replace all members",
    ),
    pytest.param(
        ops({"op": "add", "value": {"members": [{"value": BJENSEN}]}}),
        [AddMembers((BJENSEN,))],
        id="rfc 3.5.2.1 path-less add carrying members",
    ),
    # Okta: remove by value filter and add in one request, full replace, empty replace.
    pytest.param(
        ops(
            {"op": "remove", "path": f'members[value eq "{BJENSEN}"]'},
            {"op": "add", "path": "members", "value": [{"value": OTHER, "display": "o@x.test"}]},
        ),
        [RemoveMatching(value_filter(f'value eq "{BJENSEN}"')), AddMembers((OTHER,))],
        id="okta remove and add members in one request",
    ),
    pytest.param(
        ops(
            {
                "op": "replace",
                "path": "members",
                "value": [{"value": OTHER, "display": "a"}, {"value": OTHER, "display": "b"}],
            }
        ),
        [ReplaceMembers((OTHER,))],
        id="okta full replace repeating a member keeps it once",
    ),
    pytest.param(
        ops({"op": "replace", "path": "members", "value": []}),
        [RemoveAllMembers()],
        id="okta replace members with an empty list removes all",
    ),
    pytest.param(
        ops({"op": "replace", "path": "members", "value": None}),
        [RemoveAllMembers()],
        id="replace members with null removes all",
    ),
    # Entra ID: capitalised ops, `$ref: null`, removal by value list, several members per op.
    pytest.param(
        ops({"op": "Add", "path": "members", "value": [{"$ref": None, "value": BJENSEN}]}),
        [AddMembers((BJENSEN,))],
        id="entra add a member",
    ),
    pytest.param(
        ops({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": BJENSEN}]}),
        [RemoveMembers((BJENSEN,))],
        id="entra remove by value removes only the listed member",
    ),
    pytest.param(
        ops(
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": v} for v in (BJENSEN, OTHER, JSMITH)],
            }
        ),
        [AddMembers((BJENSEN, OTHER, JSMITH))],
        id="entra add several members",
    ),
    pytest.param(
        ops({"op": "Remove", "path": "members", "value": []}),
        [RemoveAllMembers()],
        id="remove members with an empty list removes all",
    ),
    # Ids: folded (members.value is caseExact false), each once, in request order.
    pytest.param(
        ops(
            {
                "op": "add",
                "path": "members",
                "value": [{"value": "ABC"}, {"value": "xyz", "type": "User"}, {"value": "abc"}],
            }
        ),
        [AddMembers(("abc", "xyz"))],
        id="ids folded and each once in order",
    ),
    pytest.param(
        ops({"op": "add", "path": "members", "value": {"value": BJENSEN, "type": "user"}}),
        [AddMembers((BJENSEN,))],
        id="a single member object and type in any case",
    ),
    pytest.param(
        ops(
            {"op": "add", "path": "members", "value": [{"value": "a"}]},
            {"op": "remove", "path": "members", "value": [{"value": "b"}]},
            {"op": "remove", "path": 'members[value eq "c"]'},
            {"op": "replace", "path": "members", "value": [{"value": "d"}]},
            {"op": "add", "path": "members", "value": [{"value": "e"}]},
        ),
        [
            AddMembers(("a",)),
            RemoveMembers(("b",)),
            RemoveMatching(value_filter('value eq "c"')),
            ReplaceMembers(("d",)),
            AddMembers(("e",)),
        ],
        id="commands keep the request order",
    ),
    pytest.param(
        ops(
            {"op": "add", "path": "members", "value": []},
            {"op": "add", "path": "members", "value": None},
        ),
        [],
        id="an add of nothing is no command",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_member_operations_become_commands(
    body: dict[str, Any], expected: list[MemberCommand]
) -> None:
    assert commands_of(body) == expected


def test_okta_recorded_membership_update() -> None:
    removed, added = "89bb1940-b905-4575-9e7f-6f887cfb368e", "23a35c27-23d3-4c03-b4c5-6443c09e7173"
    assert commands_of(recorded("okta/update_group_membership.json")) == [
        RemoveMatching(value_filter(f'value eq "{removed}"')),
        AddMembers((added,)),
        ReplaceMembers((added, removed)),
    ]


def test_entra_recorded_group_update_splits_rename_from_members() -> None:
    body = recorded("entra/update_group.json")
    others, commands = member_commands(GROUP, parse_patch_request(GROUP, body))
    assert [(o.op, o.path.attribute.name if o.path else None) for o in others] == [
        (REPLACE, "displayName")
    ]
    member = "f648f8d5ea4e4cd38e9c"
    assert commands == [AddMembers((member,)), RemoveMembers((member,))]


def test_okta_rename_with_the_groups_own_id_has_no_member_commands() -> None:
    body = ops({"op": "replace", "value": {"id": "g1", "displayName": "New name"}})
    others, commands = member_commands(GROUP, parse_patch_request(GROUP, body))
    assert commands == []
    assert sorted(o.path.attribute.name for o in others if o.path) == ["displayName", "id"]


def test_path_less_value_is_split_between_attributes_and_members() -> None:
    body = ops(
        {
            "op": "replace",
            "value": {"displayName": "Physics", "members": [{"value": BJENSEN}]},
        }
    )
    others, commands = member_commands(GROUP, parse_patch_request(GROUP, body))
    assert [o.path.attribute.name for o in others if o.path] == ["displayName"]
    assert commands == [ReplaceMembers((BJENSEN,))]


def test_user_operations_are_never_member_commands() -> None:
    body = ops({"op": "replace", "path": "active", "value": False})
    operations = parse_patch_request(USER, body)
    assert member_commands(USER, operations) == (operations, [])


ERRORS = [
    pytest.param(
        {"op": "add", "path": "members.value", "value": BJENSEN},
        Mutability,
        "sub-attributes",
        id="add to a member sub-attribute",
    ),
    pytest.param(
        {"op": "replace", "path": "members.display", "value": "x"},
        Mutability,
        "sub-attributes",
        id="replace a member sub-attribute",
    ),
    pytest.param(
        {"op": "remove", "path": f'members[value eq "{BJENSEN}"].display'},
        Mutability,
        "sub-attributes",
        id="remove a sub-attribute of matching members",
    ),
    pytest.param(
        {"op": "add", "path": f'members[value eq "{BJENSEN}"]', "value": {"value": OTHER}},
        Mutability,
        "immutable",
        id="add with a value filter",
    ),
    pytest.param(
        {"op": "replace", "path": f'members[value eq "{BJENSEN}"]', "value": {"value": OTHER}},
        Mutability,
        "immutable",
        id="replace with a value filter",
    ),
    pytest.param(
        {"op": "add", "path": "members", "value": [{"value": BJENSEN, "type": "Group"}]},
        InvalidValue,
        "Only Users can be members",
        id="add a group as member",
    ),
    pytest.param(
        {"op": "Remove", "path": "members", "value": [{"value": BJENSEN, "type": "Group"}]},
        InvalidValue,
        "nested groups are not supported",
        id="entra remove of a group member",
    ),
    pytest.param(
        {"op": "replace", "path": "members", "value": [{"display": "no id"}]},
        InvalidValue,
        "needs a value",
        id="a member without a value",
    ),
    pytest.param(
        {"op": "add", "path": "members", "value": [{"value": ""}]},
        InvalidValue,
        "needs a value",
        id="a member with an empty value",
    ),
]


@pytest.mark.parametrize(("operation", "error", "message"), ERRORS)
def test_member_operation_errors(
    operation: dict[str, Any], error: type[ScimError], message: str
) -> None:
    operations = parse_patch_request(GROUP, ops(operation))
    with pytest.raises(error, match=message) as raised:
        member_commands(GROUP, operations)
    assert raised.value.status == 400
    assert raised.value.scim_type == error.scim_type


def test_member_ids_reads_a_post_or_put_members_value() -> None:
    value = [{"value": "B"}, {"value": "a", "display": "ignored"}, {"value": "b"}]
    assert member_ids(value) == ["b", "a"]
    assert member_ids([]) == []
    with pytest.raises(InvalidValue, match="Only Users"):
        member_ids([{"value": "a", "type": "Group"}])


def test_replace_members_with_no_ids_removes_all() -> None:
    assert replace_members(["a", "b"]) == ReplaceMembers(("a", "b"))
    assert replace_members([]) == RemoveAllMembers()


class RecordingWriter:
    """Stands in for `app.store.memberships.Writer`: records the call each command makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def add(self, ids: Any) -> None:
        self.calls.append(("add", ids))

    def remove(self, ids: Any) -> None:
        self.calls.append(("remove", ids))

    def remove_matching(self, value_filter: Expr) -> None:
        self.calls.append(("remove_matching", value_filter))

    def remove_all(self) -> None:
        self.calls.append(("remove_all", None))

    def replace(self, ids: Any) -> None:
        self.calls.append(("replace", ids))


def test_each_command_runs_as_its_own_writer_call() -> None:
    expr = value_filter('value eq "c"')
    writer = RecordingWriter()
    for command in (
        AddMembers(("a",)),
        RemoveMembers(("b",)),
        RemoveMatching(expr),
        RemoveAllMembers(),
        ReplaceMembers(("d",)),
    ):
        command.run(writer)
    assert writer.calls == [
        ("add", ("a",)),
        ("remove", ("b",)),
        ("remove_matching", expr),
        ("remove_all", None),
        ("replace", ("d",)),
    ]


def test_commands_are_immutable_values() -> None:
    command = AddMembers(("a",))
    assert command == AddMembers(("a",))
    with pytest.raises(AttributeError):
        command.ids = ("b",)  # type: ignore[misc]
