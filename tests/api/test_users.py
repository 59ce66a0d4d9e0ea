"""/Users from the client's side: requests in, responses and stored state out."""

from __future__ import annotations

from typing import Any

import pytest

from app.store import lms_links, status
from app.store.models import AuditEvent, User, UserValue
from scim_schemas import CORE_USER, ENTERPRISE_USER, LIST_RESPONSE, LMS_USER, PATCH_OP
from tests.helpers import assert_error, create_user, user_body


def test_create_returns_the_resource_with_location_and_no_password(scim: Any) -> None:
    response = scim.post("/Users", user_body(password="S3cret-pass!"))
    assert response.status_code == 201
    assert response.mimetype == "application/scim+json"
    body = response.get_json()
    assert body["userName"] == "alice@example.com"
    assert body["active"] is True
    assert "password" not in body
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["location"].endswith(f"/scim/v2/Users/{body['id']}")
    assert response.headers["Location"] == body["meta"]["location"]
    assert response.headers["ETag"] == body["meta"]["version"]
    stored = User.get_by_id(body["id"])
    assert stored.password_hash.startswith("$argon2id$")
    assert "S3cret-pass!" not in stored.password_hash


def test_create_applies_lms_defaults_for_user_type_and_timezone(scim: Any) -> None:
    body = create_user(scim)
    assert body["userType"] == "learner"
    assert body["timezone"] == "UTC"
    explicit = create_user(scim, "bob@example.com", userType="instructor", timezone="Europe/Paris")
    assert explicit["userType"] == "instructor"
    assert explicit["timezone"] == "Europe/Paris"


def test_user_name_is_unique_without_regard_to_case(scim: Any) -> None:
    first = create_user(scim)
    response = scim.post(
        "/Users", user_body("ALICE@Example.com", emails=[{"value": "other@example.com"}])
    )
    body = assert_error(response, 409, "uniqueness")
    assert first["id"] in body["detail"]
    assert User.select().count() == 1


def test_email_is_unique_across_users(scim: Any) -> None:
    first = create_user(scim)
    response = scim.post("/Users", user_body("bob", emails=[{"value": "Alice@Example.com"}]))
    body = assert_error(response, 409, "uniqueness")
    assert first["id"] in body["detail"]
    assert User.select().count() == 1
    assert UserValue.select().count() == 1


def test_one_user_may_list_the_same_email_twice(scim: Any) -> None:
    body = create_user(
        scim, emails=[{"value": "a@x.org", "type": "work"}, {"value": "A@x.org", "type": "home"}]
    )
    assert [e["type"] for e in body["emails"]] == ["work", "home"]


def test_extension_attributes_round_trip(scim: Any) -> None:
    body = create_user(
        scim,
        schemas=[CORE_USER, ENTERPRISE_USER, LMS_USER],
        **{
            ENTERPRISE_USER: {
                "department": "Physics",
                "employeeNumber": "42",
                "manager": {"value": "boss-id"},
            },
            LMS_USER: {"branch": "North", "jobRole": "Tutor", "hireDate": "2024-09-01T00:00:00Z"},
        },
    )
    fetched = scim.get(f"/Users/{body['id']}").get_json()
    assert fetched[ENTERPRISE_USER] == {
        "department": "Physics",
        "employeeNumber": "42",
        "manager": {"value": "boss-id", "$ref": "http://localhost/scim/v2/Users/boss-id"},
    }
    assert fetched[LMS_USER]["branch"] == "North"
    assert fetched[LMS_USER]["hireDate"].startswith("2024-09-01T00:00:00")
    assert set(fetched["schemas"]) == {CORE_USER, ENTERPRISE_USER, LMS_USER}


def test_attribute_names_are_case_insensitive_and_null_means_absent(scim: Any) -> None:
    response = scim.post(
        "/Users",
        {
            "schemas": [CORE_USER],
            "UserName": "carol",
            "Active": "False",
            "NAME": {"GivenName": "Carol"},
            "nickName": None,
            "roles": None,
        },
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["userName"] == "carol"
    assert body["active"] is False
    assert body["name"] == {"givenName": "Carol"}
    assert "nickName" not in body


@pytest.mark.parametrize(
    ("body", "status", "scim_type"),
    [
        ({"schemas": [CORE_USER]}, 400, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": 7}, 400, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": "x", "active": "maybe"}, 400, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": "x", "emails": "a@b"}, 400, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": "x", "shoeSize": 9}, 400, "invalidValue"),
        ({"schemas": ["urn:example:nope"], "userName": "x"}, 400, "invalidValue"),
        ({"schemas": [CORE_USER], "userName": "x" * 600}, 400, "invalidValue"),
        (  # RFC 7643 §2.4: at most one primary value
            {
                "schemas": [CORE_USER],
                "userName": "x",
                "emails": [
                    {"value": "a@example.com", "primary": True},
                    {"value": "b@example.com", "primary": "True"},
                ],
            },
            400,
            "invalidValue",
        ),
        (["not", "an", "object"], 400, "invalidSyntax"),
    ],
)
def test_bad_bodies_get_a_scim_error_and_store_nothing(
    scim: Any, body: Any, status: int, scim_type: str
) -> None:
    assert_error(scim.post("/Users", body), status, scim_type)
    assert User.select().count() == 0


def test_malformed_json_is_invalid_syntax(scim: Any) -> None:
    response = scim.client.post(
        "/scim/v2/Users",
        data="{not json",
        headers={**scim.headers, "Content-Type": "application/scim+json"},
    )
    assert_error(response, 400, "invalidSyntax")


def test_plain_json_is_accepted_and_other_media_types_are_refused(scim: Any) -> None:
    import json

    ok = scim.client.post(
        "/scim/v2/Users",
        data=json.dumps(user_body()),
        headers={**scim.headers, "Content-Type": "application/json"},
    )
    assert ok.status_code == 201
    refused = scim.client.post(
        "/scim/v2/Users", data="userName=x", headers={**scim.headers, "Content-Type": "text/plain"}
    )
    assert_error(refused, 415, "invalidSyntax")


def test_a_body_over_the_limit_is_413(scim: Any) -> None:
    huge = user_body(displayName="x" * (1024 * 1024 + 10))
    assert_error(scim.post("/Users", huge), 413)


def test_unknown_id_is_404_in_the_scim_envelope(scim: Any) -> None:
    assert_error(scim.get("/Users/does-not-exist"), 404)
    assert_error(scim.put("/Users/does-not-exist", user_body()), 404)
    assert_error(scim.delete("/Users/does-not-exist"), 404)


def test_unknown_route_and_wrong_method(scim: Any) -> None:
    assert_error(scim.get("/Nope"), 404)
    assert_error(scim.request("DELETE", "/Users"), 405)


def test_missing_or_wrong_token_is_401_with_bearer_challenge(client: Any, token: str) -> None:
    for headers in ({}, {"Authorization": "Bearer lmsscim_wrong"}, {"Authorization": "Basic x"}):
        response = client.get("/scim/v2/Users", headers=headers)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_put_replaces_ignoring_read_only_and_clearing_omitted(scim: Any) -> None:
    created = create_user(scim, nickName="Ally", title="Dr")
    replacement = user_body(name={"givenName": "Alicia"}, title="Prof")
    replacement.update(id="someone-else", meta={"resourceType": "User"}, groups=[])
    response = scim.put(f"/Users/{created['id']}", replacement)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["id"] == created["id"]
    assert body["name"] == {"givenName": "Alicia"}
    assert body["title"] == "Prof"
    assert "nickName" not in body
    assert body["meta"]["version"] != created["meta"]["version"]
    assert scim.get(f"/Users/{created['id']}").get_json() == body


def test_put_without_active_keeps_the_user_deactivated(scim: Any) -> None:
    created = create_user(scim, active=False)
    body = user_body()
    del body["active"]
    assert scim.put(f"/Users/{created['id']}", body).get_json()["active"] is False


def test_put_that_changes_nothing_keeps_the_version(scim: Any) -> None:
    created = create_user(scim)
    body = scim.put(f"/Users/{created['id']}", user_body()).get_json()
    assert body["meta"]["version"] == created["meta"]["version"]


def test_okta_patch_deactivates_and_reactivates_without_deleting(scim: Any) -> None:
    created = create_user(scim)
    for active in (False, True):
        response = scim.patch(
            f"/Users/{created['id']}",
            {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]},
        )
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["active"] is active
        assert User.get_by_id(created["id"]).active is active
    operations = [e.operation for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert operations[-2:] == ["deactivate", "activate"]


def test_okta_password_push_is_hashed_and_never_returned(scim: Any) -> None:
    created = create_user(scim)
    assert User.get_by_id(created["id"]).password_hash is None
    response = scim.patch(
        f"/Users/{created['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"password": "n3w!"}}]},
    )
    assert response.status_code == 200
    assert "password" not in response.get_json()
    from app.passwords import Hasher

    assert Hasher().verify(User.get_by_id(created["id"]).password_hash, "n3w!")
    audit = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
    assert "n3w!" not in (audit.changes or "")


def test_patch_replace_with_a_simple_path(scim: Any) -> None:
    created = create_user(scim)
    response = scim.patch(
        f"/Users/{created['id']}",
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Alice L."}],
        },
    )
    assert response.get_json()["displayName"] == "Alice L."


def test_delete_frees_user_name_and_email_at_once(scim: Any) -> None:
    created = create_user(scim)
    assert scim.delete(f"/Users/{created['id']}").status_code == 204
    assert_error(scim.get(f"/Users/{created['id']}"), 404)
    again = create_user(scim)
    assert again["id"] != created["id"]


def test_list_pages_with_true_totals_and_stable_order(scim: Any) -> None:
    ids = {create_user(scim, f"user{i}@example.com")["id"] for i in range(7)}
    seen: list[str] = []
    for start in (1, 4, 7):
        body = scim.get(f"/Users?startIndex={start}&count=3").get_json()
        assert body["schemas"] == [LIST_RESPONSE]
        assert body["totalResults"] == 7
        assert body["startIndex"] == start
        assert body["itemsPerPage"] == len(body["Resources"])
        seen += [r["id"] for r in body["Resources"]]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("query", "total", "items", "start"),
    [
        ("count=0", 3, 0, 1),
        ("count=-5", 3, 0, 1),
        ("startIndex=0&count=2", 3, 2, 1),
        ("startIndex=-3", 3, 3, 1),
        ("startIndex=10", 3, 0, 10),
        # Beyond a 64-bit OFFSET (found by schemathesis: a 500 on PostgreSQL).
        ("startIndex=162836181763012414693663834112", 3, 0, 2**62),
    ],
)
def test_paging_edges(scim: Any, query: str, total: int, items: int, start: int) -> None:
    for i in range(3):
        create_user(scim, f"u{i}")
    body = scim.get(f"/Users?{query}").get_json()
    assert (body["totalResults"], body["itemsPerPage"], body["startIndex"]) == (total, items, start)
    assert len(body["Resources"]) == items


def test_non_integer_paging_is_invalid_value(scim: Any) -> None:
    assert_error(scim.get("/Users?count=ten"), 400, "invalidValue")


def test_lookup_filters_okta_and_entra_use(scim: Any) -> None:
    alice = create_user(scim, externalId="00u-Alice")
    create_user(scim, "bob@example.com", externalId="00u-bob")
    cases = {
        'userName eq "ALICE@example.com"': [alice["id"]],
        'externalId eq "00u-Alice"': [alice["id"]],
        'externalId eq "00u-alice"': [],  # externalId is caseExact
        'emails.value eq "Alice@Example.com"': [alice["id"]],
        'emails[type eq "work"].value eq "alice@example.com"': [alice["id"]],
        f'id eq "{alice["id"]}"': [alice["id"]],
        'userName eq "nobody"': [],
    }
    for text, expected in cases.items():
        response = scim.get("/Users", query_string={"filter": text})
        body = response.get_json()
        assert [r["id"] for r in body["Resources"]] == expected, text
        assert body["totalResults"] == len(expected)


def test_unknown_filter_attribute_is_refused_not_ignored(scim: Any) -> None:
    create_user(scim)
    assert_error(
        scim.get("/Users", query_string={"filter": 'shoeSize eq "9"'}), 400, "invalidFilter"
    )
    assert_error(scim.get("/Users", query_string={"filter": "userName eq"}), 400, "invalidFilter")


def test_search_endpoint_takes_a_search_request(scim: Any) -> None:
    alice = create_user(scim)
    response = scim.post(
        "/Users/.search",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "alice@example.com"',
            "attributes": ["userName"],
        },
    )
    body = response.get_json()
    assert body["totalResults"] == 1
    assert body["Resources"][0] == {
        "schemas": [CORE_USER],
        "id": alice["id"],
        "userName": "alice@example.com",
    }


def test_attributes_and_excluded_attributes(scim: Any) -> None:
    alice = create_user(scim)
    only = scim.get(f"/Users/{alice['id']}?attributes=name.givenName,active").get_json()
    assert only == {
        "schemas": [CORE_USER],
        "id": alice["id"],
        "name": {"givenName": "Alice"},
        "active": True,
    }
    without = scim.get(f"/Users/{alice['id']}?excludedAttributes=emails,meta").get_json()
    assert "emails" not in without
    assert "meta" not in without
    assert without["id"] == alice["id"]
    assert_error(scim.get(f"/Users/{alice['id']}?attributes=shoeSize"), 400, "invalidValue")


def test_if_none_match_gives_304(scim: Any) -> None:
    alice = create_user(scim)
    response = scim.get(
        f"/Users/{alice['id']}", headers={"If-None-Match": alice["meta"]["version"]}
    )
    assert response.status_code == 304


def test_if_match_mismatch_is_412(scim: Any) -> None:
    alice = create_user(scim)
    assert_error(
        scim.put(f"/Users/{alice['id']}", user_body(), headers={"If-Match": 'W/"999"'}), 412
    )


@pytest.mark.parametrize("sort_by", ["emails", "emails.value", "EMAILS.Value"])
def test_sort_by_a_multi_valued_attribute_uses_its_primary_value(scim: Any, sort_by: str) -> None:
    """RFC 7644 §3.4.2.3: a multi-valued sortBy sorts by the primary value; no e-mail: last."""
    create_user(scim, "carol", emails=[{"value": "b@example.com", "primary": True}])
    create_user(
        scim,
        "alice",
        emails=[{"value": "0@example.com"}, {"value": "c@example.com", "primary": True}],
    )
    create_user(scim, "bob", emails=[{"value": "a@example.com", "primary": True}])
    create_user(scim, "dave", emails=[])
    for order, expected in (
        ("ascending", ["bob", "carol", "alice", "dave"]),
        ("descending", ["alice", "carol", "bob", "dave"]),
    ):
        query = {"sortBy": sort_by, "sortOrder": order}
        found = scim.get("/Users", query_string=query).get_json()["Resources"]
        assert [r["userName"] for r in found] == expected


def test_sort_by_a_sub_attribute_other_than_value_is_refused(scim: Any) -> None:
    assert_error(scim.get("/Users?sortBy=emails.type"), 400, "invalidValue")


def test_primary_false_comes_back_as_sent(scim: Any) -> None:
    """Issue 15 §5: an element sent with `"primary": false` comes back with it (it came back
    without `primary`, a different value than the client wrote); one sent without `primary`
    still comes back without it."""
    emails = [
        {"value": "a@example.com", "primary": True},
        {"value": "b@example.com", "primary": False},
        {"value": "c@example.com"},
    ]
    addresses = [{"locality": "Oxford", "primary": False}, {"locality": "Leeds"}]
    created = create_user(scim, emails=emails, addresses=addresses)
    read = scim.get(f"/Users/{created['id']}").get_json()
    for resource in (created, read):
        assert resource["emails"] == emails
        assert resource["addresses"] == addresses
    # Filters see the stored false as the client wrote it (RFC 7644 §3.4.2.2).
    for text in (
        "emails[primary eq false]",
        'addresses[primary eq false and locality eq "oxford"]',
    ):
        found = scim.get("/Users", query_string={"filter": text}).get_json()
        assert [r["id"] for r in found["Resources"]] == [created["id"]], text


def test_a_put_that_repeats_primary_false_keeps_the_version(scim: Any) -> None:
    """Writing back what was read is a no-op (no new version, no audit event)."""
    emails = [
        {"value": "a@example.com", "primary": True},
        {"value": "b@example.com", "primary": False},
    ]
    created = create_user(scim, emails=emails)
    again = scim.put(f"/Users/{created['id']}", user_body(emails=emails)).get_json()
    assert again["meta"]["version"] == created["meta"]["version"]


def test_the_primary_e_mail_is_found_first_beside_a_non_primary_one(scim: Any) -> None:
    """The relay's profile and the operator listing pick the primary e-mail, also when an
    earlier element is explicitly `primary: false` (stored as false, not NULL)."""
    emails = [
        {"value": "first@example.com", "primary": False},
        {"value": "main@example.com", "primary": True},
    ]
    alice = create_user(scim, emails=emails)
    profile = lms_links.profile(alice["id"])
    assert profile is not None
    assert profile.email == "main@example.com"
    (row,) = status.summarise(list(User.select().where(User.id == alice["id"])))
    assert row["email"] == "main@example.com"
