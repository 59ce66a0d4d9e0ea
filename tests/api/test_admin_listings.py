"""`/admin/users` and `/admin/groups`: cursor paging through any number of rows, filters,
search, escaping of odd names, and clear 400 pages for bad parameters."""

from __future__ import annotations

import html
import re

from flask import Flask
from flask.testing import FlaskClient

from app.store import outbox, seed
from app.store.models import Outbox
from scim_schemas import CORE_USER
from tests.helpers import (
    Scim,
    create_group,
    create_user,
    deactivate,
    members,
    patch_body,
    run,
)


def _page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.get_data(as_text=True))
    return response.get_data(as_text=True)


def _user_names(page: str) -> list[str]:
    rows = re.findall(r'<td><a href="/admin/users/[0-9a-f]+">([^<]*)</a></td>', page)
    return [html.unescape(r) for r in rows]


def _next(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" class="pager-next"', page)
    return html.unescape(found[1]) if found else None


def test_the_users_page_pages_through_every_user(signed_in: FlaskClient, scim: Scim) -> None:
    names = [f"user{n:02d}@example.com" for n in range(7)]
    for name in reversed(names):
        create_user(scim, name)
    seen: list[str] = []
    path: str | None = "/admin/users?count=3"
    pages = 0
    while path:
        page = _page(signed_in, path)
        assert "7 users" in page
        seen += _user_names(page)
        path = _next(page)
        pages += 1
    assert pages == 3
    assert seen == names  # in userName order, each once
    assert "First page" in _page(signed_in, _next(_page(signed_in, "/admin/users?count=3")) or "")


def test_more_than_a_hundred_users_page_on_by_the_next_link(
    app: Flask, signed_in: FlaskClient
) -> None:
    """130 users (seeded in one batch through the store): 100 a page puts 30 on the second page,
    reached by the "next" link's cursor; the default page size (50) takes three pages. No user
    is missed or shown twice, in userName order."""
    names = [f"p{n:03d}@example.com" for n in range(130)]
    with app.app_context():
        seed.bulk_create({"schemas": [CORE_USER], "userName": name} for name in reversed(names))
    first = _page(signed_in, "/admin/users?count=100")
    assert "130 users" in first
    assert _user_names(first) == names[:100]
    following = _next(first)
    assert following is not None
    assert "cursor=" in following
    second = _page(signed_in, following)
    assert _user_names(second) == names[100:]
    assert _next(second) is None
    assert "First page" in second

    seen: list[str] = []
    path: str | None = "/admin/users"
    pages = 0
    while path:
        page = _page(signed_in, path)
        seen += _user_names(page)
        path = _next(page)
        pages += 1
    assert (pages, seen) == (3, names)


def test_filters_by_state_type_group_and_search(signed_in: FlaskClient, scim: Scim) -> None:
    ana = create_user(scim, "ana@example.com", userType="Student", externalId="okta-ana")
    bo = create_user(
        scim, "bo@example.com", userType="Teacher", name={"givenName": "Bo", "familyName": "Zed"}
    )
    create_user(scim, "cy@example.com", emails=[{"value": "cy.work@school.example"}])
    deactivate(scim, bo["id"])
    group = create_group(scim, "Teachers", bo["id"], ana["id"])

    def names(query: str) -> list[str]:
        return _user_names(_page(signed_in, f"/admin/users?{query}"))

    assert names("state=inactive") == ["bo@example.com"]
    assert names("state=active") == ["ana@example.com", "cy@example.com"]
    assert names("type=Student") == ["ana@example.com"]
    assert names("type=learner") == ["cy@example.com"]  # DEFAULT_USER_TYPE
    assert names(f"group={group['id']}") == ["ana@example.com", "bo@example.com"]
    assert names(f"group={group['id']}&state=active") == ["ana@example.com"]
    assert names("q=zed") == ["bo@example.com"]  # family name
    assert names("q=SCHOOL.example") == ["cy@example.com"]  # an e-mail that is not the userName
    assert names("q=okta-ana") == ["ana@example.com"]  # externalId
    assert names("q=okta-an") == []  # externalId is matched whole
    assert names(f"q={ana['id']}") == ["ana@example.com"]
    page = _page(signed_in, "/admin/users?state=inactive&type=Student")
    assert "No user matches these filters." in page
    choices = _page(signed_in, "/admin/users")
    assert '<option value="Teacher"' in choices
    assert f'<option value="{group["id"]}"' in choices


def test_odd_user_names_are_escaped_and_stay_clickable(signed_in: FlaskClient, scim: Scim) -> None:
    odd = [
        "ana maría@example.com",
        'o\'brien "the" <script>alert(1)</script>',
        "a/b/../c?d#e",
        "ünïcødé 名前",
        "100%_off\\x",
    ]
    ids = {create_user(scim, name, emails=[])["id"]: name for name in odd}
    page = _page(signed_in, "/admin/users")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert sorted(_user_names(page)) == sorted(odd)
    for user_id, name in ids.items():
        assert f'href="/admin/users/{user_id}"' in page
        user_page = _page(signed_in, f"/admin/users/{user_id}")
        assert name in html.unescape(user_page)
        assert "<script>alert" not in user_page
    assert _user_names(_page(signed_in, "/admin/users?q=100%25_off")) == ["100%_off\\x"]
    assert _user_names(_page(signed_in, "/admin/users?q=%E5%90%8D%E5%89%8D")) == ["ünïcødé 名前"]


def test_bad_listing_parameters_are_clear_400_pages(signed_in: FlaskClient, scim: Scim) -> None:
    for n in range(3):
        create_user(scim, f"u{n}@example.com")
    first = _page(signed_in, "/admin/users?count=1&state=active")
    cursor = re.search(r"cursor=([^&\"]+)", first)
    assert cursor
    cases = {
        "/admin/users?state=asleep": "state must be",
        "/admin/users?count=0": "count must be",
        "/admin/users?count=abc": "count must be",
        "/admin/users?cursor=forged.forged": "not one this service issued",
        # A cursor of one listing cannot continue another (another filter here).
        f"/admin/users?count=1&state=inactive&cursor={cursor[1]}": "different query",
        "/admin/users?q=%00": "NUL",
    }
    for path, text in cases.items():
        response = signed_in.get(path)
        assert response.status_code == 400, path
        assert response.mimetype == "text/html"
        assert text in html.unescape(response.get_data(as_text=True)), path


def _group_names(page: str) -> list[str]:
    rows = re.findall(r'<td><a href="/admin/groups/[0-9a-f]+">([^<]*)</a></td>', page)
    return [html.unescape(r) for r in rows]


def test_the_groups_page_shows_members_rules_and_relay(
    app: Flask, signed_in: FlaskClient, scim: Scim
) -> None:
    ana = create_user(scim, "ana@example.com")
    bo = create_user(scim, "bo@example.com")
    teachers = create_group(scim, "Teachers", ana["id"], bo["id"], externalId="okta-teachers")
    students = create_group(scim, "Students <all>")
    create_group(scim, "Staff")
    run(app, "enrolments", "add", "Teachers", "101", "--role", "teacher")
    outbox.group(students["id"])
    outbox.dead(Outbox.select().order_by(Outbox.id.desc()).first(), "cohort refused by Moodle")

    page = _page(signed_in, "/admin/groups")
    assert _group_names(page) == ["Staff", "Students <all>", "Teachers"]
    assert "3 groups" in page
    row = page.split(f'href="/admin/groups/{teachers["id"]}"')[1].split("</tr>")[0]
    assert f'href="/admin/users?group={teachers["id"]}" title="List the members">2</a>' in row
    assert "course 101 · teacher" in row
    assert "okta-teachers" in row
    students_row = page.split(f'href="/admin/groups/{students["id"]}"')[1].split("</tr>")[0]
    assert "1 change(s) failed: cohort refused by Moodle" in students_row
    assert "&lt;all&gt;" in page
    assert "<all>" not in page

    assert _group_names(_page(signed_in, "/admin/groups?q=TEACH")) == ["Teachers"]
    assert _group_names(_page(signed_in, "/admin/groups?q=okta-teachers")) == ["Teachers"]
    assert "No group matches “nope”" in _page(signed_in, "/admin/groups?q=nope")
    seen, path = [], "/admin/groups?count=2"
    while path:
        listed = _page(signed_in, path)
        seen += _group_names(listed)
        path = _next(listed)
    assert seen == ["Staff", "Students <all>", "Teachers"]


def test_a_group_page_pages_members_and_tells_who_joined_and_left(
    signed_in: FlaskClient, scim: Scim
) -> None:
    ana = create_user(scim, "ana@example.com")
    bo = create_user(scim, "bo@example.com")
    cy = create_user(scim, "cy@example.com")
    group = create_group(scim, "Teachers", ana["id"], bo["id"])
    patched = scim.patch(
        f"/Groups/{group['id']}",
        patch_body(
            {"op": "add", "path": "members", "value": members(cy["id"])},
            {"op": "remove", "path": f'members[value eq "{bo["id"]}"]'},
        ),
    )
    assert patched.status_code in (200, 204), patched.get_json()

    page = _page(signed_in, f"/admin/groups/{group['id']}?count=1")
    assert _user_names(page) == ["ana@example.com"]
    second = _page(signed_in, _next(page) or "")
    assert _user_names(second) == ["cy@example.com"]
    assert _next(second) is None
    history = html.unescape(page.split('id="history"')[1])
    assert "members: +1 (cy@example.com) −1 (bo@example.com)" in history
    assert "members: +2 (ana@example.com, bo@example.com)" in history
    assert "displayName: Teachers" in history
    assert "test-idp" in history

    # Each member's own history says which group they joined and left.
    bo_page = html.unescape(_page(signed_in, f"/admin/users/{bo['id']}"))
    assert "joined group “Teachers”" in bo_page
    assert "left group “Teachers”" in bo_page
    assert "group_leave" in bo_page
    ana_page = _page(signed_in, f"/admin/users/{ana['id']}")
    assert f'href="/admin/groups/{group["id"]}">Teachers</a>' in ana_page
    response = signed_in.get(f"/admin/groups/{'0' * 32}")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_a_changed_user_shows_which_values_changed(signed_in: FlaskClient, scim: Scim) -> None:
    ana = create_user(scim, "ana@example.com")
    patched = scim.patch(
        f"/Users/{ana['id']}",
        patch_body(
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "ana@school.test"},
            {"op": "replace", "path": "active", "value": False},
        ),
    )
    assert patched.status_code == 200, patched.get_json()
    page = html.unescape(_page(signed_in, f"/admin/users/{ana['id']}"))
    assert "emails[work]: ana@example.com (primary) → ana@school.test (primary)" in page
    assert "active: true → false" in page
    assert '"value"' not in page  # no raw JSON


def test_text_the_database_cannot_compare_is_a_400_page(signed_in: FlaskClient) -> None:
    for path in ("/admin/users/a%00b", "/admin/groups/a%00b"):
        response = signed_in.get(path)
        assert response.status_code in (400, 404), path  # never a 500
        assert response.mimetype == "text/html"
    for path in (
        "/admin/groups?q=%00",
        "/admin/connection?name=a%00b",
        "/admin/users?group=%00",
        "/admin/users?type=%00",
    ):
        response = signed_in.get(path)
        assert response.status_code == 400, path
        assert response.mimetype == "text/html"


def test_a_group_chosen_from_its_page_stays_chosen(signed_in: FlaskClient, scim: Scim) -> None:
    group = create_group(scim, "Teachers")
    page = _page(signed_in, f"/admin/users?group={group['id']}")
    assert f'<option value="{group["id"]}" selected>Teachers</option>' in page
    absent = "f" * 32
    page = _page(signed_in, f"/admin/users?group={absent}")
    assert f'<option value="{absent}" selected>(no group {absent})</option>' in page
