"""`app.history.describe`: an audit event's changes as readable lines (plain data in, lines out)."""

from __future__ import annotations

from typing import Any

import pytest

from app.history import MAX_NAMES, describe, member_names

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def change(before: Any = None, after: Any = None) -> dict[str, Any]:
    return {"before": before, "after": after}


@pytest.mark.parametrize(
    ("changes", "lines"),
    [
        ({"active": change(True, False)}, ["active: true → false"]),
        ({"title": change(None, "Lead")}, ["title: Lead"]),
        ({"title": change("Lead", None)}, ["title: Lead → —"]),
        ({"title": change("Lead", "Lead")}, []),
        (
            {
                "emails": change(
                    [{"value": "a@x", "type": "work"}], [{"value": "b@x", "type": "work"}]
                )
            },
            ["emails[work]: a@x → b@x"],
        ),
        (
            {
                "emails": change(
                    [{"value": "a@x", "type": "work"}, {"value": "h@x", "type": "home"}],
                    [{"value": "a@x", "type": "work"}, {"value": "o@x", "type": "other"}],
                )
            },
            ["emails[home]: − h@x", "emails[other]: + o@x"],
        ),
        (
            {
                "emails": change(
                    [{"value": "a@x", "type": "work"}],
                    [{"value": "a@x", "type": "work", "primary": True}],
                )
            },
            ["emails[work]: a@x → a@x (primary)"],
        ),
        ({"phoneNumbers": change(None, [{"value": "+1 555"}])}, ["phoneNumbers: + +1 555"]),
        (
            {"addresses": change(None, [{"type": "work", "locality": "Oslo", "country": "NO"}])},
            ["addresses[work]: + Oslo, NO"],
        ),
        (
            {
                "name": change(
                    {"givenName": "Al", "familyName": "Li"},
                    {"givenName": "Alice", "familyName": "Li"},
                )
            },
            ["name.givenName: Al → Alice"],
        ),
        ({f"{ENTERPRISE}:department": change("Maths", "Physics")}, ["department: Maths → Physics"]),
        (
            {f"{ENTERPRISE}:manager": change(None, {"value": "m1"})},
            ["manager.value: m1"],
        ),
        ({"roles": change(["a", "b"], ["b", "c"])}, ["roles: + c, − a"]),
        ({"members": {"count": 12}}, ["members: 12"]),
        ({"odd": "something"}, ["odd: changed"]),
        ({"n": change(1, 2.5)}, ["n: 1 → 2.5"]),
        ({"x": change("<script>", "a\nb")}, ["x: <script> → a\nb"]),  # escaping is the page's job
    ],
)
def test_changes_read_as_lines(changes: dict[str, Any], lines: list[str]) -> None:
    assert describe("patch", changes) == lines


def test_members_are_counted_and_named() -> None:
    names = {"a": "Ana", "b": "Bo", "c": "Cy", "d": "Dee"}
    changes = {"members": {"added": ["a", "b", "c"], "removed": ["d"]}}
    assert describe("patch", changes, names) == ["members: +3 (Ana, Bo, Cy) −1 (Dee)"]
    assert describe("patch", {"members": {"removed": ["d"]}}, names) == ["members: −1 (Dee)"]
    gone = "0123456789abcdef0123456789abcdef"
    assert describe("patch", {"members": {"added": [gone]}}) == ["members: +1 (01234567…)"]


def test_many_members_are_cut_with_a_count() -> None:
    ids = [f"u{n}" for n in range(MAX_NAMES + 3)]
    names = {uid: uid.upper() for uid in ids}
    (line,) = describe("create", {"members": {"added": ids}}, names)
    assert line == "members: +8 (U0, U1, U2, U3, U4, … 3 more)"
    assert member_names({"members": {"added": ids[:2], "removed": ["x"]}}) == ["u0", "u1", "x"]
    assert member_names({"active": change(True, False)}) == []
    assert member_names(None) == []


def test_groups_joined_and_left_read_as_such() -> None:
    joined = {"group": {"after": "Teachers"}, "groupId": {"after": "g1"}}
    left = {"group": {"before": "Teachers"}, "groupId": {"before": "g1"}}
    assert describe("group_join", joined) == ["joined group “Teachers”"]
    assert describe("group_leave", left) == ["left group “Teachers”"]


def test_long_values_are_cut_not_the_line() -> None:
    (line,) = describe("patch", {"a": change("x" * 200, "y"), "b": change(None, "z")})[:1]
    assert line.startswith("a: " + "x" * 79 + "… → y")
    assert describe("create", None) == []
