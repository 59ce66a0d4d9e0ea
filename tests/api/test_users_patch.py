"""PATCH /Users from the client's side: atomicity, versions, ETags and concurrency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from app.store.models import AuditEvent, User
from tests.helpers import Scim, assert_error, create_user, in_threads, patch_body


def test_a_failing_operation_leaves_the_user_untouched(scim: Any) -> None:
    alice = create_user(scim, nickName="Ally")
    response = scim.patch(
        f"/Users/{alice['id']}",
        patch_body(
            {"op": "replace", "path": "nickName", "value": "Changed"},
            {"op": "add", "path": "emails", "value": [{"value": "x@example.com"}]},
            {"op": "replace", "path": "active", "value": "perhaps"},
        ),
    )
    assert_error(response, 400, "invalidValue")
    after = scim.get(f"/Users/{alice['id']}").get_json()
    assert after == alice | {"meta": after["meta"]}
    assert after["meta"]["version"] == alice["meta"]["version"]
    assert AuditEvent.select().where(AuditEvent.operation == "patch").count() == 0


def test_a_failing_uniqueness_check_rolls_everything_back(scim: Any) -> None:
    bob = create_user(scim, "bob@example.com")
    alice = create_user(scim)
    response = scim.patch(
        f"/Users/{alice['id']}",
        patch_body(
            {"op": "replace", "path": "displayName", "value": "New"},
            {"op": "replace", "path": "userName", "value": "BOB@example.com"},
        ),
    )
    assert bob["id"] in assert_error(response, 409, "uniqueness")["detail"]
    assert User.get_by_id(alice["id"]).display_name is None


def test_a_clashing_email_names_the_other_user_not_this_one(scim: Any) -> None:
    bob = create_user(scim, "bob@example.com")
    alice = create_user(scim)
    emails = [{"value": "alice@example.com"}, {"value": "BOB@example.com"}]
    body = patch_body({"op": "replace", "path": "emails", "value": emails})
    detail = assert_error(scim.patch(f"/Users/{alice['id']}", body), 409, "uniqueness")["detail"]
    assert bob["id"] in detail
    assert alice["id"] not in detail


def test_version_changes_on_effective_changes_only(scim: Any) -> None:
    alice = create_user(scim)
    url = f"/Users/{alice['id']}"
    same = scim.patch(
        url, patch_body({"op": "replace", "path": "active", "value": True})
    ).get_json()
    assert same["meta"]["version"] == alice["meta"]["version"]
    assert same["meta"]["lastModified"] == alice["meta"]["lastModified"]
    changed = scim.patch(
        url, patch_body({"op": "replace", "path": "title", "value": "Dr"})
    ).get_json()
    assert changed["meta"]["version"] != alice["meta"]["version"]


def test_patch_response_honours_attributes(scim: Any) -> None:
    alice = create_user(scim)
    response = scim.patch(
        f"/Users/{alice['id']}?attributes=title",
        patch_body({"op": "replace", "path": "title", "value": "Dr"}),
    )
    assert response.get_json() == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": alice["id"],
        "title": "Dr",
    }


def test_if_match_on_patch_and_delete(scim: Any) -> None:
    alice = create_user(scim)
    url = f"/Users/{alice['id']}"
    stale = {"If-Match": 'W/"0"'}
    assert_error(
        scim.patch(
            url, patch_body({"op": "replace", "path": "title", "value": "x"}), headers=stale
        ),
        412,
    )
    assert_error(scim.delete(url, headers=stale), 412)
    current = {"If-Match": alice["meta"]["version"]}
    response = scim.patch(
        url, patch_body({"op": "replace", "path": "title", "value": "x"}), headers=current
    )
    assert response.status_code == 200
    assert response.headers["ETag"] != alice["meta"]["version"]
    # A list of tags matches when one of them is current (RFC 7232 §3.1).
    listed = {"If-Match": f'W/"0", {response.headers["ETag"]}'}
    assert scim.delete(url, headers=listed).status_code == 204


def test_remove_without_path_is_no_target(scim: Any) -> None:
    alice = create_user(scim)
    assert_error(scim.patch(f"/Users/{alice['id']}", patch_body({"op": "remove"})), 400, "noTarget")


def test_read_only_target_is_mutability(scim: Any) -> None:
    alice = create_user(scim)
    body = patch_body({"op": "replace", "path": "id", "value": "other"})
    assert_error(scim.patch(f"/Users/{alice['id']}", body), 400, "mutability")


def test_concurrent_patches_lose_no_operation(app: Flask, token: str) -> None:
    scim = Scim.of(app, token)
    alice = create_user(scim)
    url = f"/Users/{alice['id']}"
    errors: list[Any] = []

    def add_phone(n: int) -> Callable[[Scim], None]:
        def job(client: Scim) -> None:
            phone = {"value": f"+100{n}", "type": "work"}
            response = client.patch(
                url, patch_body({"op": "add", "path": "phoneNumbers", "value": [phone]})
            )
            if response.status_code != 200:
                errors.append(response.get_json())

        return job

    assert in_threads(app, [add_phone(n) for n in range(12)], token) == []
    assert errors == []
    phones = {p["value"] for p in scim.get(url).get_json()["phoneNumbers"]}
    assert phones == {f"+100{n}" for n in range(12)}
    assert scim.get(url).get_json()["meta"]["version"] == 'W/"13"'


def test_concurrent_patches_with_if_match_lose_nothing_silently(app: Flask, token: str) -> None:
    scim = Scim.of(app, token)
    alice = create_user(scim)
    url = f"/Users/{alice['id']}"
    statuses: list[int] = []

    def set_title(n: int) -> Callable[[Scim], None]:
        def job(client: Scim) -> None:
            body = patch_body({"op": "replace", "path": "title", "value": f"T{n}"})
            response = client.patch(url, body, headers={"If-Match": alice["meta"]["version"]})
            statuses.append(response.status_code)

        return job

    assert in_threads(app, [set_title(n) for n in range(8)], token) == []
    assert sorted(statuses) == [200] + [412] * 7


def test_removing_active_is_refused_rather_than_ignored(scim: Any) -> None:
    alice = create_user(scim)
    body = patch_body({"op": "remove", "path": "active"})
    assert_error(scim.patch(f"/Users/{alice['id']}", body), 400, "mutability")
    assert User.get_by_id(alice["id"]).active is True


def test_write_responses_equal_what_a_read_returns(scim: Any) -> None:
    alice = create_user(
        scim,
        addresses=[{"locality": "Oxford", "primary": True}],
        phoneNumbers=[{"value": "+1", "primary": False}],
    )
    assert scim.get(f"/Users/{alice['id']}").get_json() == alice
    url = f"/Users/{alice['id']}"
    for operation in (
        {"op": "replace", "path": "title", "value": "Dr"},
        {"op": "replace", "path": "title", "value": "Dr"},
    ):  # the second: a no-op
        response = scim.patch(url, patch_body(operation)).get_json()
        assert response == scim.get(url).get_json()
