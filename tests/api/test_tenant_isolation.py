"""Tenant isolation, table-driven over every endpoint, write path and filter that takes an id or
could match a row: tenant `acme` aims at the default tenant's users and groups, sees nothing,
changes nothing, and each foreign id answers exactly as an absent one (on SQLite and
PostgreSQL). The database's own refusal is in tests/unit/test_migrations.py (m0011).

Every case runs twice on each database: through Flask's test client, and over real HTTP to a
live gunicorn (two workers) whose tenants and tokens were made by the `lms-scim` commands, one
server per database for the whole module (`transport`, `live_tenants` in tests/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from app.store import tenancy
from app.store.models import AuditEvent, KeptEnrolment, Outbox, Tenant
from scim_schemas import CORE_USER, ENTERPRISE_USER, SEARCH_REQUEST
from tests.helpers import (
    Scim,
    create_group,
    create_user,
    group_body,
    members,
    patch_body,
    run,
    user_body,
)

ABSENT = "0" * 32
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
ANY_ID = re.compile(r"\b[0-9a-f]{32}\b")


@pytest.fixture(params=["flask", pytest.param("http", marks=pytest.mark.e2e)])
def transport(request: pytest.FixtureRequest) -> str:
    """`scim` and `acme` in this process, then over real HTTP."""
    return request.param


@pytest.fixture
def home(scim: Scim) -> dict[str, str]:
    """The default tenant's rows: alice (e-mail, externalId), bob (managed by alice), and
    group Staff (alice a member, externalId)."""
    alice = create_user(scim, "alice@example.com", externalId="ext-alice", title="Boss")
    enterprise = {ENTERPRISE_USER: {"manager": {"value": alice["id"]}}}
    bob = create_user(scim, "bob@example.com", schemas=[CORE_USER, ENTERPRISE_USER], **enterprise)
    staff = create_group(scim, "Staff", alice["id"], externalId="ext-staff")
    return {"alice": alice["id"], "bob": bob["id"], "staff": staff["id"]}


def state(scim: Scim) -> Any:
    """Everything a tenant has, as its own token reads it."""
    return [scim.get(path).get_json() for path in ("/Users", "/Groups")]


def masked(value: Any) -> Any:
    """`value` with every id (foreign, absent or freshly made) written as `<id>`."""
    if isinstance(value, str):
        return ANY_ID.sub("<id>", value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items() if k not in ("meta", "location")}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def answer(response: Any) -> tuple[int, Any]:
    return response.status_code, masked(response.get_json(silent=True))


def assert_as_absent(
    scim: Scim, home: dict[str, str], call: Callable[[str], Any], target: str
) -> None:
    """`call(home[target])` answers as `call(ABSENT)`, and the home tenant is unchanged."""
    before = state(scim)
    foreign = answer(call(home[target]))
    assert foreign == answer(call(ABSENT))
    assert state(scim) == before


# -- the resource endpoints ------------------------------------------------------------------

REPLACE_ACTIVE = patch_body({"op": "replace", "path": "active", "value": False})
RENAME = patch_body({"op": "replace", "path": "displayName", "value": "Taken"})
ADD_SELF = patch_body({"op": "add", "path": "members", "value": members(ABSENT)})


@pytest.mark.parametrize(
    ("method", "kind", "target", "body"),
    [
        ("GET", "Users", "alice", None),
        ("PUT", "Users", "alice", user_body("alice@example.com")),
        ("PATCH", "Users", "alice", REPLACE_ACTIVE),
        ("DELETE", "Users", "alice", None),
        ("GET", "Groups", "staff", None),
        ("PUT", "Groups", "staff", group_body("Staff", members=[])),
        ("PATCH", "Groups", "staff", RENAME),
        ("PATCH", "Groups", "staff", ADD_SELF),
        ("PATCH", "Groups", "staff", patch_body({"op": "remove", "path": "members"})),
        ("DELETE", "Groups", "staff", None),
    ],
)
def test_a_foreign_resource_answers_as_an_absent_one(
    scim: Scim, acme: Scim, home: dict[str, str], method: str, kind: str, target: str, body: Any
) -> None:
    def call(rid: str) -> Any:
        return acme.request(method, f"/{kind}/{rid}", body)

    assert_as_absent(scim, home, call, target)
    assert call(home[target]).status_code == 404


# -- write paths that name a foreign user as a member -----------------------------------------


MEMBER_WRITES: dict[str, Callable[[Scim, str, str], Any]] = {
    "PATCH add": lambda c, g, uid: c.patch(
        f"/Groups/{g}", patch_body({"op": "add", "path": "members", "value": members(uid)})
    ),
    "PATCH replace": lambda c, g, uid: c.patch(
        f"/Groups/{g}", patch_body({"op": "replace", "path": "members", "value": members(uid)})
    ),
    "PATCH remove by filter": lambda c, g, uid: c.patch(
        f"/Groups/{g}", patch_body({"op": "remove", "path": f'members[value eq "{uid}"]'})
    ),
    "PATCH remove by value": lambda c, g, uid: c.patch(
        f"/Groups/{g}", patch_body({"op": "remove", "path": "members", "value": members(uid)})
    ),
    "PUT members": lambda c, g, uid: c.put(f"/Groups/{g}", group_body("Own", members=members(uid))),
    "POST with members": lambda c, g, uid: c.post(
        "/Groups", group_body("New", members=members(uid))
    ),
}


@pytest.mark.parametrize("write", sorted(MEMBER_WRITES))
def test_a_foreign_user_is_no_member_to_add_remove_or_replace(
    scim: Scim, acme: Scim, home: dict[str, str], write: str
) -> None:
    mate = create_user(acme, "mate@acme.test")
    own = create_group(acme, "Own", mate["id"])
    before = state(acme)

    def call(uid: str) -> Any:
        return MEMBER_WRITES[write](acme, own["id"], uid)

    assert_as_absent(scim, home, call, "alice")
    assert state(acme) == before or write == "POST with members"
    listed = acme.get(f"/Groups/{own['id']}").get_json()
    assert [m["value"] for m in listed.get("members", [])] in ([mate["id"]], [])
    assert home["alice"] not in str(acme.get("/Groups").get_json())


# -- Bulk ------------------------------------------------------------------------------------


def _bulk(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [BULK_REQUEST], "Operations": list(operations)}


BULK: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "PUT user": lambda uid, gid: _bulk(
        {"method": "PUT", "path": f"/Users/{uid}", "data": user_body("alice@example.com")}
    ),
    "PATCH user": lambda uid, gid: _bulk(
        {"method": "PATCH", "path": f"/Users/{uid}", "data": REPLACE_ACTIVE}
    ),
    "DELETE user": lambda uid, gid: _bulk({"method": "DELETE", "path": f"/Users/{uid}"}),
    "DELETE group": lambda uid, gid: _bulk({"method": "DELETE", "path": f"/Groups/{gid}"}),
    "POST group with a foreign member": lambda uid, gid: _bulk(
        {
            "method": "POST",
            "path": "/Groups",
            "bulkId": "g",
            "data": group_body(f"G{uid[:4]}", members=members(uid)),
        }
    ),
    "bulkId into a foreign group": lambda uid, gid: _bulk(
        {"method": "POST", "path": "/Users", "bulkId": "u", "data": user_body(f"n{uid[:6]}@a.t")},
        {
            "method": "PATCH",
            "path": f"/Groups/{gid}",
            "data": patch_body({"op": "add", "path": "members", "value": [{"value": "bulkId:u"}]}),
        },
    ),
}


def _bulk_answer(response: Any) -> list[tuple[Any, ...]]:
    operations = response.get_json()["Operations"]
    return [(op["status"], masked(op.get("response"))) for op in operations]


@pytest.mark.parametrize("case", sorted(BULK))
def test_bulk_operations_with_foreign_ids_answer_as_absent_ones(
    scim: Scim, acme: Scim, home: dict[str, str], case: str
) -> None:
    before = state(scim)
    foreign = acme.post("/Bulk", BULK[case](home["alice"], home["staff"]))
    absent = acme.post("/Bulk", BULK[case](ABSENT, ABSENT))
    assert foreign.status_code == absent.status_code == 200
    assert _bulk_answer(foreign) == _bulk_answer(absent)
    assert any(status in ("400", "404") for status, _ in _bulk_answer(foreign))
    assert state(scim) == before
    assert home["alice"] not in str(state(acme))


# -- filters, searches and cursors -----------------------------------------------------------

USER_FILTERS = [
    'userName eq "alice@example.com"',
    'emails.value eq "alice@example.com"',
    'emails co "alice"',
    'externalId eq "ext-alice"',
    'id eq "{alice}"',
    'groups.value eq "{staff}"',
    f'{ENTERPRISE_USER}:manager.value eq "{{alice}}"',
    'meta.created gt "2000-01-01T00:00:00Z"',
    'userName co "alice"',
    'userName sw "ali"',
    "userName pr",
    "title pr",
]
GROUP_FILTERS = [
    'displayName eq "Staff"',
    'members.value eq "{alice}"',
    'id eq "{staff}"',
    'externalId eq "ext-staff"',
    'meta.created gt "2000-01-01T00:00:00Z"',
    'displayName co "taf"',
    'displayName sw "St"',
    "members pr",
]


def _searches(kind: str, text: str) -> list[Callable[[Scim], Any]]:
    body = {"schemas": [SEARCH_REQUEST], "filter": text}
    return [
        lambda c: c.get(f"/{kind}", query_string={"filter": text}),
        lambda c: c.post(f"/{kind}/.search", body),
        lambda c: c.post("/.search", body),
    ]


@pytest.mark.parametrize(
    ("kind", "text"),
    [("Users", f) for f in USER_FILTERS] + [("Groups", f) for f in GROUP_FILTERS],
)
def test_no_filter_matches_a_foreign_row(
    scim: Scim, acme: Scim, home: dict[str, str], kind: str, text: str
) -> None:
    text = text.format(**home)
    for search in _searches(kind, text):
        mine = search(scim).get_json()
        assert mine["totalResults"] >= 1, (text, mine)  # the filter does match, at home
        theirs = search(acme).get_json()
        assert (theirs["totalResults"], theirs.get("Resources", [])) == (0, []), text


@pytest.mark.parametrize("path", ["/Users", "/Groups", "/.search"])
def test_a_cursor_from_the_other_tenant_is_refused_as_one_of_another_query(
    scim: Scim, acme: Scim, home: dict[str, str], path: str
) -> None:
    """A cursor carries its tenant in its query digest: replayed by another tenant, it is
    400 invalidCursor exactly as the same tenant's cursor replayed with another filter, and
    the walk shows nothing of the tenant that made it."""
    create_group(scim, "Other")

    def page(c: Scim, cursor: str, text: str = "meta.created pr") -> Any:
        if path == "/.search":
            body = {"schemas": [SEARCH_REQUEST], "cursor": cursor, "count": 1, "filter": text}
            return c.post(path, body)
        return c.get(path, query_string={"cursor": cursor, "count": 1, "filter": text})

    cursor = page(scim, "").get_json()["nextCursor"]
    assert page(scim, cursor).status_code == 200
    foreign = page(acme, cursor)
    assert foreign.status_code == 400
    assert answer(foreign) == answer(page(scim, cursor, "id pr"))
    assert answer(foreign)[1]["scimType"] == "invalidCursor"


# -- /Me and manager.value -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "POST"])
def test_me_names_no_one_in_either_tenant(
    scim: Scim, acme: Scim, home: dict[str, str], method: str
) -> None:
    """/Me is 501 (app/scim/me.py: tokens belong to IdPs, not users): the same for both."""
    assert answer(acme.request(method, "/Me")) == answer(scim.request(method, "/Me"))
    assert acme.request(method, "/Me").status_code == 501


def test_a_manager_value_naming_a_foreign_user_is_stored_as_an_absent_one(
    scim: Scim, acme: Scim, home: dict[str, str]
) -> None:
    """manager.value is a reference the IdP sends (RFC 7643 §4.3), not resolved: a foreign id
    is kept as sent, exactly as an absent one, and reveals nothing of the user it names."""
    before = state(scim)

    def call(uid: str) -> Any:
        body = user_body(f"m{uid[:6]}@acme.test", schemas=[CORE_USER, ENTERPRISE_USER])
        body[ENTERPRISE_USER] = {"manager": {"value": uid}}
        return acme.post("/Users", body)

    foreign, absent = call(home["alice"]), call(ABSENT)
    assert foreign.status_code == absent.status_code == 201
    assert set(foreign.get_json()[ENTERPRISE_USER]["manager"]) == {"value", "$ref"}
    assert masked(foreign.get_json()[ENTERPRISE_USER]) == masked(absent.get_json()[ENTERPRISE_USER])
    assert state(scim) == before
    found = scim.get("/Users", query_string={"filter": USER_FILTERS[6].format(**home)})
    assert found.get_json()["totalResults"] == 1  # only bob, at home


# -- rows written by INSERT … SELECT belong to the tenant at hand -----------------------------


@pytest.mark.parametrize("transport", ["flask"])
def test_kept_enrolments_audit_and_outbox_rows_of_a_tenant_are_its_own(
    app: Flask, acme: Scim, transport: str
) -> None:
    """INSERT … SELECT gets no Python default: each such writer names the tenant, or the
    database's default (the default tenant) would take the row — and m0011 refuses a kept
    enrolment that points across tenants (acme has an LMS, so its changes are queued). In
    process only: it reads the store of the test's own app."""
    run(app, "tenants", "set", "acme", "LMS_URL=https://lms.acme.test")
    mate = create_user(acme, "mate@acme.test")
    own = create_group(acme, "Own", mate["id"])
    run(app, "enrolments", "add", own["id"], "7", "--role", "student", "--keep-on-leave",
        "--tenant", "acme")  # fmt: skip
    leave = patch_body({"op": "remove", "path": f'members[value eq "{mate["id"]}"]'})
    assert acme.patch(f"/Groups/{own['id']}", leave).status_code in (200, 204)
    create_group(acme, "Gone", mate["id"])
    gone = acme.get("/Groups", query_string={"filter": 'displayName eq "Gone"'}).get_json()
    assert acme.delete(f"/Groups/{gone['Resources'][0]['id']}").status_code == 204
    with tenancy.everywhere():
        kept = list(KeptEnrolment.select(KeptEnrolment.tenant_id).tuples())
        leaves = AuditEvent.select(AuditEvent.tenant_id).where(
            AuditEvent.operation == "group_leave"
        )
        queued = list(Outbox.select(Outbox.tenant_id).tuples())
        acme_id = Tenant.get(Tenant.slug == "acme").id
    assert kept == [(acme_id,)]
    assert {row.tenant_id for row in leaves} == {acme_id}
    assert {tenant for (tenant,) in queued} == {acme_id}
