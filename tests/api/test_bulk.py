"""/Bulk (RFC 7644 §3.7) from the client's side, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from app.store.models import AuditEvent, Group, Membership, User
from scim_schemas import CORE_GROUP, CORE_USER, ENTERPRISE_USER, ERROR, PATCH_OP
from tests.helpers import Scim, assert_error, create_group, create_user

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"


def bulk(*operations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"schemas": [BULK_REQUEST], **extra, "Operations": list(operations)}


def post_user(bulk_id: str, user_name: str, **extra: Any) -> dict[str, Any]:
    data = {"schemas": [CORE_USER], "userName": user_name, **extra}
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": data}


def post_group(bulk_id: str, name: str, *member_values: str) -> dict[str, Any]:
    data: dict[str, Any] = {"schemas": [CORE_GROUP], "displayName": name}
    if member_values:
        data["members"] = [{"type": "User", "value": value} for value in member_values]
    return {"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": data}


def send(scim: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = scim.post("/Bulk", body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/scim+json"
    result = response.get_json()
    assert result["schemas"] == [BULK_RESPONSE]
    return result["Operations"]


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["status"] for r in results]


def op_error(result: dict[str, Any], status: int, scim_type: str | None = None) -> str:
    """The operation failed with this status; its `response` is a SCIM error (§3.7.3)."""
    assert result["status"] == str(status), result
    error = result["response"]
    assert error["schemas"] == [ERROR]
    assert error["status"] == str(status)
    assert error.get("scimType") == scim_type
    return error["detail"]


def user_id(user_name: str) -> str:
    return User.get(User.user_name == user_name).id


# -- the RFC's examples ------------------------------------------------------------------------


def test_rfc7644_section_3_7_2_user_created_and_added_to_a_new_group(scim: Any) -> None:
    """§3.7.2: a user and a group naming it by `bulkId:qwerty`, in one request."""
    results = send(
        scim,
        bulk(
            post_user("qwerty", "Alice"),
            post_group("ytrewq", "Tour Guides", "bulkId:qwerty"),
        ),
    )
    assert statuses(results) == ["201", "201"]
    alice, guides = results
    assert alice["method"] == "POST"
    assert alice["bulkId"] == "qwerty"
    alice_id = user_id("Alice")
    assert alice["location"].endswith(f"/scim/v2/Users/{alice_id}")
    assert alice["version"] == 'W/"1"'
    assert "response" not in alice
    group = Group.get(Group.display_name == "Tour Guides")
    assert guides["location"].endswith(f"/scim/v2/Groups/{group.id}")
    assert scim.get(f"/Groups/{group.id}").get_json()["members"][0]["value"] == alice_id


def test_rfc7644_section_3_7_3_post_put_patch_delete(scim: Any) -> None:
    """§3.7.3's request: POST, PUT with version, PATCH with version, DELETE with version."""
    bob = create_user(scim, "bob", nickName="Bobby")
    dave = create_user(scim, "dave-to-be", nickName="Nick")
    gone = create_user(scim, "gone")
    body = bulk(
        post_user("qwerty", "Alice"),
        {
            "method": "PUT",
            "path": f"/Users/{bob['id']}",
            "version": bob["meta"]["version"],
            "data": {"schemas": [CORE_USER], "id": bob["id"], "userName": "Bob"},
        },
        {
            "method": "PATCH",
            "path": f"/Users/{dave['id']}",
            "version": dave["meta"]["version"],
            "data": {
                "schemas": [PATCH_OP],
                "Operations": [
                    {"op": "remove", "path": "nickName"},
                    {"op": "replace", "path": "userName", "value": "Dave"},
                ],
            },
        },
        {"method": "DELETE", "path": f"/Users/{gone['id']}", "version": gone["meta"]["version"]},
        failOnErrors=1,
    )
    results = send(scim, body)
    assert statuses(results) == ["201", "200", "200", "204"]
    assert [r["method"] for r in results] == ["POST", "PUT", "PATCH", "DELETE"]
    assert results[1]["version"] == 'W/"2"'
    assert results[1]["location"].endswith(f"/Users/{bob['id']}")
    assert results[3]["location"].endswith(f"/Users/{gone['id']}")
    assert "version" not in results[3]
    assert scim.get(f"/Users/{bob['id']}").get_json()["userName"] == "Bob"
    assert "nickName" not in scim.get(f"/Users/{bob['id']}").get_json()
    patched = scim.get(f"/Users/{dave['id']}").get_json()
    assert patched["userName"] == "Dave"
    assert "nickName" not in patched
    assert scim.get(f"/Users/{gone['id']}").status_code == 404


def test_rfc7644_section_3_7_3_fail_on_errors_stops_after_the_first_error(scim: Any) -> None:
    """§3.7.3: with failOnErrors 1 the first failure ends the job; the response holds what
    was processed, and nothing after it is done."""
    create_user(scim, "Alice")
    body = bulk(
        post_user("qwerty", "Alice"),  # already taken: 409
        post_user("ytrewq", "Bob"),
        failOnErrors=1,
    )
    results = send(scim, body)
    assert len(results) == 1
    assert results[0]["bulkId"] == "qwerty"
    assert "location" not in results[0]
    op_error(results[0], 409, "uniqueness")
    assert not User.select().where(User.user_name == "Bob").exists()


def test_rfc7644_section_3_7_1_circular_group_references_are_409(scim: Any) -> None:
    """§3.7.1's two groups naming each other: the cycle cannot be ordered, so both are 409
    (which the section allows) and neither group is created."""
    group_a = post_group("qwerty", "Group A")
    group_a["data"]["members"] = [{"type": "Group", "value": "bulkId:ytrewq"}]
    group_b = post_group("ytrewq", "Group B")
    group_b["data"]["members"] = [{"type": "Group", "value": "bulkId:qwerty"}]
    results = send(scim, bulk(group_a, group_b))
    assert [r["bulkId"] for r in results] == ["qwerty", "ytrewq"]
    for result in results:
        assert "ircular" in op_error(result, 409)
    assert Group.select().count() == 0


# -- successes and failures mixed -------------------------------------------------------------


def mixed(scim: Any) -> dict[str, Any]:
    existing = create_user(scim, "taken")
    return bulk(
        post_user("a", "ann"),
        post_user("b", "taken"),  # 409 uniqueness
        post_user("c", "cid", emails="not-a-list"),  # 400 invalidValue
        {"method": "DELETE", "path": "/Users/0000"},  # 404
        {
            "method": "PATCH",
            "path": f"/Users/{existing['id']}",
            "version": 'W/"99"',  # 412
            "data": {
                "schemas": [PATCH_OP],
                "Operations": [{"op": "add", "path": "title", "value": "x"}],
            },
        },
        post_user("d", "dan"),
    )


def test_without_fail_on_errors_every_operation_is_processed(scim: Any) -> None:
    """§3.7: "continue performing as many changes as possible and disregard partial failures";
    each operation commits on its own."""
    results = send(scim, mixed(scim))
    assert statuses(results) == ["201", "409", "400", "404", "412", "201"]
    op_error(results[1], 409, "uniqueness")
    op_error(results[2], 400, "invalidValue")
    op_error(results[3], 404)
    op_error(results[4], 412)
    assert results[3]["location"].endswith("/Users/0000")
    assert results[4]["location"].endswith("/Users/" + user_id("taken"))
    names = {u.user_name for u in User.select()}
    assert names == {"taken", "ann", "dan"}


def test_fail_on_errors_stops_processing_but_keeps_what_succeeded(scim: Any) -> None:
    """failOnErrors 2: the second failure ends the job; the first success stays (there is no
    rollback in RFC 7644 §3.7), nothing after the second failure is attempted."""
    results = send(scim, {**mixed(scim), "failOnErrors": 2})
    assert statuses(results) == ["201", "409", "400"]
    assert {u.user_name for u in User.select()} == {"taken", "ann"}


def test_operation_errors_of_the_request_itself(scim: Any) -> None:
    results = send(
        scim,
        bulk(
            {"method": "GET", "path": "/Users"},
            {"method": "POST", "path": "/Users", "data": {"userName": "x"}},  # no bulkId
            {"method": "POST", "path": "/Widgets", "bulkId": "w", "data": {}},
            {"method": "PUT", "path": "/Users/abc"},  # no data
            {"method": "DELETE", "path": "/Users"},  # no id
            {"method": "POST", "path": "/Users/abc", "bulkId": "p", "data": {}},
            "not an object",
            {"method": "PATCH", "path": "/Users/a/b", "data": {}},
        ),
    )
    assert statuses(results) == ["400"] * 8
    assert "method" in op_error(results[0], 400, "invalidValue")
    assert "bulkId" in op_error(results[1], 400, "invalidValue")
    op_error(results[2], 400, "invalidValue")
    op_error(results[3], 400, "invalidSyntax")
    op_error(results[4], 400, "invalidValue")
    op_error(results[5], 400, "invalidValue")
    op_error(results[6], 400, "invalidSyntax")
    op_error(results[7], 400, "invalidValue")
    assert User.select().count() == 0
    # Every result names its method as the operation sent it (RFC 7644 §3.7.3), refused or not.
    assert [r.get("method") for r in results] == [
        "GET", "POST", "POST", "PUT", "DELETE", "POST", None, "PATCH"
    ]  # fmt: skip


def test_a_refused_method_is_echoed_as_sent_and_never_null(scim: Any) -> None:
    results = send(
        scim,
        bulk(
            {"method": "AAA", "bulkId": "0", "path": "", "data": None},
            {"method": 5, "path": "/Users"},
            {"path": "/Users"},
        ),
    )
    assert statuses(results) == ["400"] * 3
    assert results[0]["method"] == "AAA"
    assert "method" not in results[1]
    assert "method" not in results[2]


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ([], "invalidSyntax"),
        ({"schemas": [BULK_REQUEST]}, "invalidSyntax"),
        ({"schemas": [BULK_REQUEST], "Operations": []}, "invalidSyntax"),
        ({"schemas": ["urn:nope"], "Operations": [post_user("a", "a")]}, "invalidSyntax"),
        (bulk(post_user("a", "a"), failOnErrors="1"), "invalidValue"),
        (bulk(post_user("a", "a"), failOnErrors=0), "invalidValue"),
        (bulk(post_user("a", "a"), failOnErrors=True), "invalidValue"),
        (bulk(post_user("a", "a"), post_user("a", "b")), "invalidValue"),
    ],
)
def test_bad_bulk_requests_are_400_and_change_nothing(scim: Any, body: Any, scim_type: str) -> None:
    assert_error(scim.post("/Bulk", body), 400, scim_type)
    assert User.select().count() == 0


def test_keys_are_case_insensitive(scim: Any) -> None:
    body = {
        "schemas": [BULK_REQUEST],
        "operations": [
            {"METHOD": "post", "Path": "/users", "BULKID": "x", "Data": {"userName": "u"}}
        ],
    }
    results = send(scim, body)
    assert statuses(results) == ["201"]
    assert results[0]["bulkId"] == "x"
    assert results[0]["method"] == "POST"


# -- bulkId references -------------------------------------------------------------------------


def test_a_forward_reference_runs_after_the_operation_it_names(scim: Any) -> None:
    """A group created in operation 1 with a user created in operation 3: the group waits for
    the user; results still come back in request order."""
    results = send(
        scim,
        bulk(
            post_group("g", "Chemistry", "bulkId:u2", "bulkId:u1"),
            post_user("u1", "first"),
            post_user("u2", "second"),
        ),
    )
    assert statuses(results) == ["201", "201", "201"]
    assert [r["bulkId"] for r in results] == ["g", "u1", "u2"]
    group_id = results[0]["location"].rsplit("/", 1)[1]
    members = {m["value"] for m in scim.get(f"/Groups/{group_id}").get_json()["members"]}
    assert members == {user_id("first"), user_id("second")}


def test_references_in_paths_patch_values_and_the_manager(scim: Any) -> None:
    results = send(
        scim,
        bulk(
            {
                "method": "PATCH",
                "path": "/Groups/bulkId:g",
                "data": {
                    "schemas": [PATCH_OP],
                    "Operations": [
                        {"op": "add", "path": "members", "value": [{"value": "bulkId:m"}]}
                    ],
                },
            },
            {
                "method": "PUT",
                "path": "/Users/bulkId:m",
                "data": {"schemas": [CORE_USER], "userName": "mgr", "title": "Head"},
            },
            post_user("m", "mgr"),
            post_user(
                "e",
                "employee",
                **{ENTERPRISE_USER: {"manager": {"value": "bulkId:m"}}},
                schemas=[CORE_USER, ENTERPRISE_USER],
            ),
            post_group("g", "Staff"),
        ),
    )
    assert statuses(results) == ["204", "200", "201", "201", "201"]
    manager_id = user_id("mgr")
    assert results[1]["location"].endswith(f"/Users/{manager_id}")
    employee = scim.get(f"/Users/{user_id('employee')}").get_json()
    assert employee[ENTERPRISE_USER]["manager"]["value"] == manager_id
    assert scim.get(f"/Users/{manager_id}").get_json()["title"] == "Head"
    group = Group.get(Group.display_name == "Staff")
    members = Membership.select().where(Membership.group == group.id)
    assert [m.user_id for m in members] == [manager_id]


def test_a_cycle_of_managers_is_409_and_the_rest_still_runs(scim: Any) -> None:
    def with_manager(bulk_id: str, name: str, manager: str) -> dict[str, Any]:
        return post_user(
            bulk_id,
            name,
            schemas=[CORE_USER, ENTERPRISE_USER],
            **{ENTERPRISE_USER: {"manager": {"value": f"bulkId:{manager}"}}},
        )

    results = send(
        scim,
        bulk(
            with_manager("a", "a", "b"),
            with_manager("b", "b", "a"),
            with_manager("self", "self", "self"),
            post_group("g", "waits for a cycle", "bulkId:a"),
            post_user("ok", "fine"),
        ),
    )
    assert statuses(results) == ["409", "409", "409", "409", "201"]
    assert "ircular" in op_error(results[2], 409)
    assert {u.user_name for u in User.select()} == {"fine"}


def test_a_reference_to_a_failed_or_unknown_operation(scim: Any) -> None:
    results = send(
        scim,
        bulk(
            post_user("bad", "x", emails="nope"),
            post_group("g", "Needs bad", "bulkId:bad"),
            post_group("h", "Needs nobody", "bulkId:nobody"),
        ),
    )
    assert statuses(results) == ["400", "409", "400"]
    assert "bad" in op_error(results[1], 409)
    assert "nobody" in op_error(results[2], 400, "invalidValue")
    assert Group.select().count() == 0


# -- the same code as the single endpoints -----------------------------------------------------


def test_bulk_operations_are_audited_with_the_request_and_hash_passwords(scim: Any) -> None:
    response = scim.post(
        "/Bulk",
        bulk(post_user("p", "pat", password="S3cret-pass!"), post_group("g", "G", "bulkId:p")),
        headers={"X-Request-Id": "bulk-req-1"},
    )
    assert response.status_code == 200
    events = list(AuditEvent.select().where(AuditEvent.request_id == "bulk-req-1"))
    assert sorted((e.resource_type, e.operation) for e in events) == [
        ("Group", "create"),
        ("User", "create"),
        ("User", "group_join"),  # pat's own history says pat joined G
    ]
    assert {e.token_name for e in events} == {"test-idp"}
    assert all("S3cret" not in (e.changes or "") for e in events)
    assert User.get(User.user_name == "pat").password_hash.startswith("$argon2id$")


def test_group_patch_status_follows_the_configuration(
    scim_with: Callable[..., Scim],
) -> None:
    client = scim_with(group_patch_status=200)
    group = create_group(client, "Physics")
    patch = {
        "method": "PATCH",
        "path": f"/Groups/{group['id']}",
        "data": {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "displayName", "value": "P2"}],
        },
    }
    results = send(client, bulk(patch))
    assert statuses(results) == ["200"]
    assert results[0]["version"] == 'W/"2"'


def test_read_only_tokens_cannot_bulk(app: Any, client: Any) -> None:
    from app import auth

    with app.app_context():
        secret = auth.issue("reader", read_only=True)
    reader = Scim(client, secret)
    assert_error(reader.post("/Bulk", bulk(post_user("a", "a"))), 403)


# -- limits (§3.7.4) ---------------------------------------------------------------------------


def test_limits_are_advertised_and_enforced_with_413(
    scim_with: Callable[..., Scim],
) -> None:
    client = scim_with(bulk_max_operations=2, bulk_max_payload_bytes=600)
    config = client.get("/ServiceProviderConfig").get_json()
    assert config["bulk"] == {"supported": True, "maxOperations": 2, "maxPayloadSize": 600}
    three = bulk(post_user("a", "a"), post_user("b", "b"), post_user("c", "c"))
    detail = assert_error(client.post("/Bulk", three), 413)["detail"]
    assert "maxOperations (2)" in detail
    big = bulk(post_user("a", "a", displayName="x" * 700))
    assert len(json.dumps(big)) > 600
    detail = assert_error(client.post("/Bulk", big), 413)["detail"]
    assert "maxPayloadSize (600)" in detail
    assert User.select().count() == 0
    assert statuses(send(client, bulk(post_user("a", "a"), post_user("b", "b")))) == ["201", "201"]


def test_default_limits_are_advertised(scim: Any) -> None:
    config = scim.get("/ServiceProviderConfig").get_json()
    assert config["bulk"] == {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1048576}
