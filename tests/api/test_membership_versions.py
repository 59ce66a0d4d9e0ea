"""A user's `groups` is part of the user: joining, leaving, a renamed or deleted group moves the
user's `meta.version` and `meta.lastModified`, and the user's own history says what happened."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from tests.helpers import (
    Scim,
    create_group,
    create_user,
    invoke,
    members,
    patch_body,
    sign_in,
)


def _fresh(scim: Scim, user: dict[str, Any]) -> dict[str, Any]:
    """The user as a client that cached `user` sees it now: 304 would mean "unchanged"."""
    response = scim.get(f"/Users/{user['id']}", headers={"If-None-Match": user["meta"]["version"]})
    assert response.status_code == 200, "a stale body would have been kept (304)"
    return response.get_json()


def _history(app: Flask, user_id: str) -> str:
    return invoke(app, "users", "status", user_id, "--history", "20").output


def test_joining_and_leaving_move_the_users_version(app: Flask, scim: Scim) -> None:
    alice = create_user(scim, "alice")
    group = create_group(scim, "Physics 101")
    add = patch_body({"op": "add", "path": "members", "value": members(alice["id"])})
    assert scim.patch(f"/Groups/{group['id']}", add).status_code in (200, 204)

    joined = _fresh(scim, alice)
    assert [g["display"] for g in joined["groups"]] == ["Physics 101"]
    assert joined["meta"]["lastModified"] >= alice["meta"]["lastModified"]

    remove = patch_body({"op": "remove", "path": f'members[value eq "{alice["id"]}"]'})
    assert scim.patch(f"/Groups/{group['id']}", remove).status_code in (200, 204)
    left = _fresh(scim, joined)
    assert "groups" not in left

    history = _history(app, alice["id"])
    assert "group_join" in history
    assert "group_leave" in history
    assert "Physics 101" in history


def test_a_group_created_with_members_a_rename_and_a_delete_move_it_too(
    app: Flask, scim: Scim
) -> None:
    bob = create_user(scim, "bob")
    group = create_group(scim, "Chemistry", bob["id"])
    with_group = _fresh(scim, bob)
    assert [g["display"] for g in with_group["groups"]] == ["Chemistry"]

    rename = patch_body({"op": "replace", "path": "displayName", "value": "Chemistry 2"})
    assert scim.patch(f"/Groups/{group['id']}", rename).status_code in (200, 204)
    renamed = _fresh(scim, with_group)
    assert [g["display"] for g in renamed["groups"]] == ["Chemistry 2"]

    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    deleted = _fresh(scim, renamed)
    assert "groups" not in deleted
    history = _history(app, bob["id"])
    events = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d\s+(\w+)", history, re.MULTILINE)
    assert events == ["group_leave", "group_join", "create"], history


def test_the_admin_user_page_shows_membership_changes(app: Flask, scim: Scim, client: Any) -> None:
    invoke(app, "operators", "create", "olivia", "--password", "a long operator password")
    carol = create_user(scim, "carol")
    create_group(scim, "Biology", carol["id"])
    assert sign_in(client).status_code == 302
    page = client.get(f"/admin/users/{carol['id']}").get_data(as_text=True)
    assert "group_join" in page
    assert "Biology" in page
