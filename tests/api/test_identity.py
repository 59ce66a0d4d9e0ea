"""One identity per person: userName, e-mail values and (under UNIQUE_GROUP_NAMES) group names
are unique under their NFKC case-fold with invisible characters removed, and names that only
look like another (edge white space, controls, bidi overrides) are refused."""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.store.db import database
from app.store.migrations import m0007_identity_keys
from app.store.models import Group, User, UserValue
from scim_schemas.identity import identity_key, name_problem
from tests.helpers import (
    Scim,
    api_examples,
    assert_error,
    create_group,
    create_user,
    group_body,
    invoke,
    patch_body,
    user_body,
)

# A name as the plain ASCII user has it, and a form the audit accepted as another person.
SAME_PERSON = [
    pytest.param("jos\u00e9", "jose\u0301", id="NFC-vs-NFD"),
    pytest.param("alice", "\uff41\uff4c\uff49\uff43\uff45", id="fullwidth"),
    pytest.param("fiona", "\ufb01ona", id="ligature"),
    pytest.param("stra\u00dfe", "STRASSE", id="sharp-s"),
    pytest.param("istanbul", "\u0130STANBUL", id="dotted-capital-I"),
    pytest.param("alice", "al\u200bice", id="zero-width-space"),
    pytest.param("alice", "al\u00adice", id="soft-hyphen"),
    pytest.param("alice", "ALICE\ufeff", id="byte-order-mark"),
]
REFUSED = [
    pytest.param("", "empty", id="empty"),
    pytest.param("   ", "empty", id="only-spaces"),
    pytest.param(" alice", "white space", id="leading-space"),
    pytest.param("alice ", "white space", id="trailing-space"),
    pytest.param("al\tice", "control character (U+0009)", id="tab"),
    pytest.param("alice\u202emoc.live", "bidirectional formatting", id="right-to-left-override"),
    pytest.param("alice\u2066", "bidirectional formatting", id="bidi-isolate"),
]


@pytest.mark.parametrize(("plain", "lookalike"), SAME_PERSON)
def test_a_lookalike_userName_is_the_same_identity(scim: Scim, plain: str, lookalike: str) -> None:
    existing = create_user(scim, plain)
    response = scim.post("/Users", user_body(lookalike))
    body = assert_error(response, 409, "uniqueness")
    assert existing["id"] in body["detail"]
    # The IdP's look-up before create finds the user that the create collides with.
    found = scim.get("/Users", query_string={"filter": f'userName eq "{lookalike}"'}).get_json()
    assert [r["id"] for r in found["Resources"]] == [existing["id"]]
    # The stored value is the one the IdP sent.
    assert scim.get(f"/Users/{existing['id']}").get_json()["userName"] == plain


@pytest.mark.parametrize(("name", "why"), REFUSED)
def test_a_name_that_hides_what_it_is_is_refused(scim: Scim, name: str, why: str) -> None:
    assert why in assert_error(scim.post("/Users", user_body(name)), 400, "invalidValue")["detail"]
    assert (
        why in assert_error(scim.post("/Groups", group_body(name)), 400, "invalidValue")["detail"]
    )
    with_email = user_body("carol", emails=[{"value": name, "type": "work"}])
    assert why in assert_error(scim.post("/Users", with_email), 400, "invalidValue")["detail"]
    assert scim.get("/Users").get_json()["totalResults"] == 0


def test_patch_and_put_refuse_a_blank_userName(scim: Scim) -> None:
    user = create_user(scim, "dave")
    patch = patch_body({"op": "replace", "path": "userName", "value": " "})
    assert_error(scim.patch(f"/Users/{user['id']}", patch), 400, "invalidValue")
    assert_error(scim.put(f"/Users/{user['id']}", user_body("")), 400, "invalidValue")
    assert scim.get(f"/Users/{user['id']}").get_json()["userName"] == "dave"


def test_a_lookalike_email_is_taken(scim: Scim) -> None:
    bob = create_user(scim, "bob", emails=[{"value": "bob@example.com", "type": "work"}])
    lookalike = user_body("robert", emails=[{"value": "BOB\uff20example.com", "type": "work"}])
    assert_error(scim.post("/Users", lookalike), 409, "uniqueness")
    query = {"filter": 'emails[value eq "b\u200bob@EXAMPLE.com"]'}
    found = scim.get("/Users", query_string=query).get_json()
    assert [r["id"] for r in found["Resources"]] == [bob["id"]]


def test_a_lookalike_group_name_is_taken_when_names_are_unique(
    scim_with: Callable[..., Scim],
) -> None:
    scim = scim_with(unique_group_names=True)
    staff = create_group(scim, "Staff")
    assert_error(
        scim.post("/Groups", group_body("\uff33\uff34\uff21\uff26\uff26")), 409, "uniqueness"
    )
    found = scim.get("/Groups", query_string={"filter": 'displayName eq "sta\u00adff"'}).get_json()
    assert [r["id"] for r in found["Resources"]] == [staff["id"]]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("users", "add", ""), "empty"),
        (("tokens", "create", " idp"), "white space"),
        (("operators", "create", "ad\u202emin", "--password", "a long operator password"), "bidi"),
    ],
    ids=["users-add-empty", "token-leading-space", "operator-bidi-override"],
)
def test_the_cli_refuses_a_blank_or_hidden_name(app: Any, args: tuple[str, ...], why: str) -> None:
    result = invoke(app, *args)
    assert result.exit_code != 0
    assert why in result.output
    assert "Traceback" not in result.output


# -- property: the second create collides exactly when the keys agree ---------------------------

_VARIANTS: list[Callable[[str], str]] = [
    str.upper,
    str.title,
    lambda s: unicodedata.normalize("NFD", s),
    lambda s: unicodedata.normalize("NFKD", s),
    lambda s: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s),  # fullwidth
    lambda s: s[:1] + "\u200b" + s[1:],
    lambda s: s + "\u00ad",
]
names = st.text(min_size=1, max_size=12).filter(lambda s: name_problem(s) is None)


@st.composite
def name_pairs(draw: st.DrawFn) -> tuple[str, str]:
    first = draw(names)
    second = draw(st.sampled_from(_VARIANTS))(first) if draw(st.booleans()) else draw(names)
    return first, second


@given(pair=name_pairs())
@api_examples(60)
def test_the_second_create_is_refused_exactly_when_the_keys_agree(
    scim: Scim, pair: tuple[str, str]
) -> None:
    first, second = pair
    if name_problem(second) is not None:
        assert_error(scim.post("/Users", user_body(second)), 400, "invalidValue")
        return
    prefix = f"{uuid.uuid4().hex}-"  # a fresh identity per example, on the same database
    assert scim.post("/Users", user_body(prefix + first)).status_code == 201
    response = scim.post("/Users", user_body(prefix + second))
    same = identity_key(prefix + first) == identity_key(prefix + second)
    assert response.status_code == (409 if same else 201), (first, second)


# -- databases from before the identity key: m0007 keeps colliding rows apart -------------------


def _as_release_m0006_stored(user_id: str, name: str, email: str) -> None:
    """What an older release stored for a user called `name` with `email` (lower-case keys)."""
    User.update(user_name=name, user_name_key=name.lower()).where(User.id == user_id).execute()
    UserValue.update(value=email, value_key=email.lower(), unique_key=email.lower()).where(
        UserValue.user == user_id
    ).execute()


def _upgrade_keys() -> None:
    with database.atomic():
        m0007_identity_keys.apply(database.obj, None)


def test_pairs_the_upgrade_found_stay_apart_until_an_idp_resolves_them(
    app: Any, scim: Scim
) -> None:
    email = [{"value": "al@example.com", "type": "work"}]
    alice = create_user(scim, "alice", emails=email)
    twin = create_user(scim, "twin", emails=[{"value": "twin@example.com", "type": "work"}])
    _as_release_m0006_stored(twin["id"], "\uff41\uff4c\uff49\uff43\uff45", "AL\uff20example.com")
    _upgrade_keys()

    listed = invoke(app, "users", "duplicates", "--format", "json")
    pairs = json.loads(listed.output)
    assert [(p["attribute"], p["kept"]["id"], p["marked"]["id"]) for p in pairs] == [
        ("userName", alice["id"], twin["id"]),
        ("emails.value", alice["id"], twin["id"]),
    ]
    # Neither the name nor the address can be taken by a third.
    assert_error(scim.post("/Users", user_body("ALICE")), 409, "uniqueness")
    third = user_body("carol", emails=[{"value": "AL@example.com"}])
    assert_error(scim.post("/Users", third), 409, "uniqueness")
    # The twin can still be deactivated and updated while the pair waits.
    twin_path = f"/Users/{twin['id']}"
    active = patch_body({"op": "replace", "path": "active", "value": False})
    assert scim.patch(twin_path, active).status_code == 200
    phone = patch_body({"op": "add", "path": "phoneNumbers", "value": [{"value": "+47 1"}]})
    assert scim.patch(twin_path, phone).status_code == 200
    assert len(json.loads(invoke(app, "users", "duplicates", "--format", "json").output)) == 2

    # Renaming resolves the userName pair; a new address resolves the e-mail pair.
    rename = patch_body({"op": "replace", "path": "userName", "value": "alice.twin"})
    assert scim.patch(twin_path, rename).status_code == 200
    pairs = json.loads(invoke(app, "users", "duplicates", "--format", "json").output)
    assert [p["attribute"] for p in pairs] == ["emails.value"]
    new_email = patch_body(
        {"op": "replace", "path": "emails", "value": [{"value": "twin@example.com"}]}
    )
    assert scim.patch(twin_path, new_email).status_code == 200
    assert "No duplicate identities." in invoke(app, "users", "duplicates").output


def test_a_pair_whose_holder_is_gone_is_resolved_by_the_next_write(app: Any, scim: Scim) -> None:
    alice = create_user(scim, "alice", emails=[{"value": "al@example.com", "type": "work"}])
    twin = create_user(scim, "twin", emails=[{"value": "twin@example.com", "type": "work"}])
    _as_release_m0006_stored(twin["id"], "ALICE\u200b", "al\u00ad@example.com")
    _upgrade_keys()
    User.delete().where(User.id == alice["id"]).execute()
    assert "nobody now" in invoke(app, "users", "duplicates").output

    emails = patch_body({"op": "add", "path": "emails", "value": [{"value": "t2@example.com"}]})
    assert scim.patch(f"/Users/{twin['id']}", emails).status_code == 200
    assert "No duplicate identities." in invoke(app, "users", "duplicates").output
    found = scim.get("/Users", query_string={"filter": 'userName eq "alice"'}).get_json()
    assert [r["id"] for r in found["Resources"]] == [twin["id"]]


def test_a_group_pair_keeps_working_and_keeps_its_name_taken(
    scim_with: Callable[..., Scim],
) -> None:
    scim = scim_with(unique_group_names=True)
    staff = create_group(scim, "Staff")
    twin = create_group(scim, "Twin")
    name = "\uff33\uff54\uff41\uff46\uff46"
    Group.update(
        display_name=name, display_name_key=name.lower(), unique_name_key=name.lower()
    ).where(Group.id == twin["id"]).execute()
    _upgrade_keys()

    user = create_user(scim, "bob")
    add = patch_body({"op": "add", "path": "members", "value": [{"value": user["id"]}]})
    assert scim.patch(f"/Groups/{twin['id']}", add).status_code in (200, 204)
    assert_error(scim.post("/Groups", group_body("STAFF")), 409, "uniqueness")
    found = scim.get("/Groups", query_string={"filter": 'displayName eq "staff"'}).get_json()
    assert {r["id"] for r in found["Resources"]} == {staff["id"], twin["id"]}
