"""A user read in one statement (issue 20): the user row and its e-mails, addresses, groups and
enrolments aggregated as JSON in one query on SQLite and PostgreSQL, answering exactly what the
separate queries (one per child table, `_separately` below) answer, and only the tenant's rows;
and a write reads the user it changes the same way, under its row lock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee
from flask import Flask
from playhouse.test_utils import count_queries

from app.store import enrolments, tenancy, users
from app.store.db import database
from app.store.models import (
    Group,
    KeptEnrolment,
    LmsTarget,
    Membership,
    Tenant,
    User,
    UserAddress,
    UserValue,
)
from app.store.paging import PageRequest, Sort
from app.store.user_mapping import to_resource
from scim_schemas import LMS_USER
from tests.helpers import Scim, create_group, create_user, patch_body, run

EMAILS = [
    {"value": "Ada@Example.com", "type": "work", "primary": True},
    {"value": "ada@home.example", "type": "home", "primary": False},
    {"value": "a.lovelace@example.org", "display": "Old address"},
]
ADDRESSES = [
    {"streetAddress": "1 Main St", "locality": "Leeds", "country": "GB", "primary": True},
    {"formatted": "PO Box 7\nYork", "type": "other", "primary": False},
    {"postalCode": "LS1", "region": "West Yorkshire"},
]


def _separately(rows: list[User]) -> dict[str, dict[str, Any]]:
    """The resources of `rows` from one plain query per child table: the reference the
    one-statement read must equal."""
    ids = [u.id for u in rows]
    values: dict[str, list[UserValue]] = defaultdict(list)
    addresses: dict[str, list[UserAddress]] = defaultdict(list)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for value in UserValue.select().where(UserValue.user.in_(ids)):
        values[value.user_id].append(value)
    for address in UserAddress.select().where(UserAddress.user.in_(ids)):
        addresses[address.user_id].append(address)
    joined = Membership.select(Membership.user, Group.id, Group.display_name).join(Group)
    for user_id, group_id, display in joined.order_by(Group.id).tuples():
        groups[user_id].append({"value": group_id, "display": display, "type": "direct"})
    courses = enrolments.of_users(ids)
    return {
        u.id: to_resource(u, values[u.id], addresses[u.id], groups[u.id], courses.get(u.id))
        for u in rows
    }


def _rich_user(app: Flask, scim: Scim) -> str:
    """Ada: three e-mails, two phone numbers, three addresses, three groups, enrolments by two
    rules (courses 101 and 9) and one kept from a group she left (course 55)."""
    ada = create_user(
        scim,
        "ada@example.com",
        emails=EMAILS,
        phoneNumbers=[{"value": "+44 1", "type": "work"}, {"value": "+44 2", "primary": True}],
        addresses=ADDRESSES,
        title="Countess",
    )["id"]
    groups = [create_group(scim, name, ada)["id"] for name in ("Zeta", "Alpha", "Mid")]
    home = ("--tenant", "default")  # another tenant may be there (`acme`)
    run(app, "enrolments", "add", groups[0], "101", "--role", "student", *home)
    run(app, "enrolments", "add", groups[1], "9", "--role", "teacher", *home)
    leaving = create_group(scim, "Leaving", ada)["id"]
    run(app, "enrolments", "add", leaving, "55", "--role", "student", "--keep-on-leave", *home)
    leave = patch_body({"op": "remove", "path": f'members[value eq "{ada}"]'})
    assert scim.patch(f"/Groups/{leaving}", leave).status_code in (200, 204)
    return ada


def test_a_rich_user_reads_back_as_the_separate_queries_read_it(app: Flask, scim: Scim) -> None:
    ada = _rich_user(app, scim)
    create_user(scim, "bare@example.com")  # a user without any child row, on the same page
    with app.app_context():
        rows = list(User.select().order_by(User.id))
        expected = _separately(rows)
        assert users.get(ada) == expected[ada]
        assert {r["id"]: r for r in users.by_ids([r.id for r in rows])} == expected
        found = users.search(None, Sort(User.id), PageRequest(count=10))
        assert found.items == [expected[r.id] for r in rows]
    read = expected[ada]
    assert read["emails"] == EMAILS
    assert read["addresses"] == ADDRESSES
    assert [g["display"] for g in read["groups"]] == [
        g["display"] for g in sorted(read["groups"], key=lambda g: g["value"])
    ]
    assert {g["display"] for g in read["groups"]} == {"Zeta", "Alpha", "Mid"}
    assert read[LMS_USER]["enrolments"] == [
        {"courseId": "9", "role": "teacher"},
        {"courseId": "55", "role": "student"},
        {"courseId": "101", "role": "student"},
    ]
    got = scim.get(f"/Users/{ada}").get_json()
    assert got["emails"] == EMAILS
    assert got["addresses"] == ADDRESSES
    assert got[LMS_USER]["enrolments"] == read[LMS_USER]["enrolments"]


def test_get_lookup_and_page_are_one_statement_each(app: Flask, scim: Scim) -> None:
    ada = _rich_user(app, scim)
    scim.get("/Users?count=0")  # the token is verified and cached before counting
    for path in (f"/Users/{ada}", '/Users?filter=userName eq "ada@example.com"', "/Users"):
        with count_queries() as counted:
            response = scim.get(path)
        assert response.status_code == 200
        sent = [r.msg[0] for r in counted.get_queries() if "api_token" not in r.msg[0]]
        assert len(sent) == 1, sent
        assert all(table in sent[0] for table in ("lms_user", "user_value", "kept_enrolment"))


def _reads(counted: Any) -> list[str]:
    """The SELECTs a request sent, other than the token's."""
    sent = [r.msg[0] for r in counted.get_queries()]
    return [q for q in sent if q.lstrip().upper().startswith("SELECT") and "api_token" not in q]


def test_a_write_reads_the_user_once_under_its_lock(app: Flask, scim: Scim) -> None:
    """PUT and PATCH read the user they change in one statement, enrolments included, and
    answer with the same resource a GET returns."""
    ada = _rich_user(app, scim)
    scim.get("/Users?count=0")  # the token is verified and cached before counting
    body = scim.get(f"/Users/{ada}").get_json()
    writes = [
        lambda: scim.patch(
            f"/Users/{ada}", patch_body({"op": "replace", "path": "title", "value": "Dr"})
        ),
        lambda: scim.put(f"/Users/{ada}", {**body, "title": "Prof"}),
        lambda: scim.put(f"/Users/{ada}", {**body, "title": "Prof"}),  # no change
    ]
    for write in writes:
        with count_queries() as counted:
            response = write()
        assert response.status_code == 200, response.get_data(as_text=True)
        reads = [q for q in _reads(counted) if "user_value" in q]
        assert len(reads) == 1, reads
        assert all(table in reads[0] for table in ("user_value", "membership", "kept_enrolment"))
        if isinstance(database.obj, peewee.PostgresqlDatabase):  # locked first (see _read_locked)
            locks = [q for q in _reads(counted) if "FOR UPDATE" in q.upper()]
            assert len(locks) == 1, locks
            assert "user_value" not in locks[0]
        assert response.get_json() == scim.get(f"/Users/{ada}").get_json()
    assert response.get_json()[LMS_USER]["enrolments"] == body[LMS_USER]["enrolments"]


def test_a_write_without_enrolment_rules_reads_no_enrolment(app: Flask, scim: Scim) -> None:
    bo = create_user(scim, "bo@example.com")["id"]
    create_group(scim, "Plain", bo)
    scim.get("/Users?count=0")
    change = patch_body({"op": "replace", "path": "active", "value": False})
    with count_queries() as counted:
        response = scim.patch(f"/Users/{bo}", change)
    assert response.status_code == 200
    sent = " ".join(r.msg[0] for r in counted.get_queries())
    assert "enrolment_rule" not in sent
    assert "kept_enrolment" not in sent
    assert response.get_json()["active"] is False
    assert LMS_USER not in response.get_json()


@contextmanager
def _unchecked_foreign_keys() -> Iterator[None]:
    """Let rows in that the composite keys (m0011) would refuse, to prove that the read itself
    keeps to the tenant too (SQLite's pragma is ignored inside a transaction: set it first)."""
    db = database.obj
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SET session_replication_role = replica")
        try:
            yield
        finally:
            db.execute_sql("SET session_replication_role = DEFAULT")
    else:
        db.execute_sql("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            db.execute_sql("PRAGMA foreign_keys = ON")


def test_child_rows_of_another_tenant_with_the_same_user_id_never_appear(
    app: Flask, scim: Scim, acme: Scim
) -> None:
    ada = _rich_user(app, scim)
    theirs = create_group(acme, "Theirs")["id"]
    before = scim.get(f"/Users/{ada}").get_json()
    with app.app_context():
        with tenancy.everywhere():
            acme_id = Tenant.get(Tenant.slug == "acme").id
        with tenancy.use(acme_id):
            target = LmsTarget.select(LmsTarget.id).scalar()
            with _unchecked_foreign_keys(), database.atomic():
                UserValue.insert(
                    user=ada, attr="emails", position=7, value="stray@acme.test", primary=True
                ).execute()
                UserAddress.insert(user=ada, position=7, locality="Elsewhere").execute()
                Membership.insert(group=theirs, user=ada).execute()
                KeptEnrolment.insert(
                    user=ada, target_id=target, course_id="stray-course", role="teacher"
                ).execute()
        with tenancy.everywhere():
            strays = UserValue.select().where(UserValue.tenant_id == acme_id).count()
        assert strays == 1
    assert scim.get(f"/Users/{ada}").get_json() == before
    lookup = scim.get("/Users", query_string={"filter": 'userName eq "ada@example.com"'})
    assert lookup.get_json()["Resources"] == [before]
    assert [r for r in scim.get("/Users").get_json()["Resources"] if r["id"] == ada] == [before]
    # Distinctive markers only: a short number such as "777" can occur in an id or a timestamp.
    assert not [text for text in ("stray", "Elsewhere", theirs) if text in str(before)]
    assert acme.get(f"/Users/{ada}").status_code == 404
