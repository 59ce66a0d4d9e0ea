"""Two real server instances (gunicorn, 2 workers x 4 threads each) on one database, driven at
once: uniqueness, group membership and user updates stay right across instances.

Each runs on PostgreSQL (one schema) and on SQLite (one file, opened by both instances' workers:
they take turns to write, by an `flock` beside the file, and the same unique indexes decide).

Each test releases its requests together (a barrier), spreads them over both instances, and
checks the answers and the database itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.live import (
    CORE_GROUP,
    LiveServer,
    patch_body,
    servers_in,
    unique_name,
    user_body,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 30


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def instances(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LiveServer]]:
    """Two instances sharing one database (the second reuses the first's token), stopped by
    their process ids before the other database's pair starts."""
    backend = request.param
    with servers_in(tmp_path_factory.mktemp(f"instances-{backend}")) as servers:
        database = servers.database(backend)
        first = servers.launch(backend, database, name="instance-a")
        second = servers.launch(backend, database, token=first.token, name="instance-b")
        yield [first, second]


def call(server: LiveServer, method: str, path: str, body: Any = None, **headers: str) -> Any:
    return requests.request(
        method,
        f"{server.scim_url}{path}",
        json=body,
        headers={**server.headers(), **headers},
        timeout=TIMEOUT,
    )


def at_once(count: int, job: Callable[[int], Any]) -> list[Any]:
    """Run `job(i)` for i < count in as many threads, released together by a barrier."""
    barrier = threading.Barrier(count, timeout=TIMEOUT)

    def run(index: int) -> Any:
        barrier.wait()
        return job(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_fifty_concurrent_posts_of_one_user_name_create_exactly_one(
    instances: list[LiveServer],
) -> None:
    name = unique_name()
    answers = at_once(
        50, lambda i: call(instances[i % 2], "POST", "/Users", user_body(name, externalId=f"x{i}"))
    )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: 49}, statuses
    created = next(a.json() for a in answers if a.status_code == 201)
    for answer in answers:
        if answer.status_code == 409:
            body = answer.json()
            assert body["scimType"] == "uniqueness"
            # The IdP can link the existing user: its id is in the detail (Entra, Okta retries).
            assert created["id"] in body["detail"], body["detail"]
    rows = instances[0].query("SELECT id FROM lms_user WHERE user_name_key = %s", name.lower())
    assert rows == [(created["id"],)]
    emails = instances[0].query("SELECT COUNT(*) FROM user_value WHERE user_id = %s", created["id"])
    assert emails == [(1,)]


def test_a_post_retried_after_a_client_timeout_meets_a_409_naming_the_user(
    instances: list[LiveServer],
) -> None:
    """The IdP gives up on instance A (read timeout), and its retry reaches instance B."""
    name = unique_name()
    body = user_body(name, password="Slow-to-hash-1")  # argon2id: the answer takes a while
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{instances[0].scim_url}/Users",
            json=body,
            headers={"Authorization": f"Bearer {instances[0].token}"},
            timeout=(5, 0.001),
        )
    deadline = time.monotonic() + 10
    rows: list[tuple[Any, ...]] = []
    while not rows and time.monotonic() < deadline:
        rows = instances[0].query("SELECT id FROM lms_user WHERE user_name_key = %s", name)
        time.sleep(0.05)
    assert rows, "the timed-out POST was never stored"
    retry = call(instances[1], "POST", "/Users", body)
    assert retry.status_code == 409, retry.text
    assert retry.json()["scimType"] == "uniqueness"
    assert rows[0][0] in retry.json()["detail"]
    found = call(instances[1], "GET", f'/Users?filter=userName eq "{name}"').json()
    assert [r["id"] for r in found["Resources"]] == [rows[0][0]]


def test_concurrent_member_adds_and_removes_on_one_group_lose_nothing(
    instances: list[LiveServer],
) -> None:
    tag = uuid.uuid4().hex[:6]
    users = [
        call(instances[i % 2], "POST", "/Users", user_body(f"m{i}-{tag}@example.com")).json()["id"]
        for i in range(40)
    ]
    stay, leave, join = users[:10], users[10:25], users[25:]
    group = call(
        instances[0],
        "POST",
        "/Groups",
        {
            "schemas": [CORE_GROUP],
            "displayName": f"g-{tag}",
            "members": [{"value": u} for u in stay + leave],
        },
    ).json()
    path = f"/Groups/{group['id']}"

    def change(index: int) -> int:
        if index < len(leave):
            operation = {"op": "remove", "path": f'members[value eq "{leave[index]}"]'}
        else:
            operation = {"op": "add", "path": "members", "value": [{"value": join[index - 15]}]}
        return call(instances[index % 2], "PATCH", path, patch_body(operation)).status_code

    statuses = at_once(len(leave) + len(join), change)
    assert set(statuses) == {204}, Counter(statuses)
    rows = instances[0].query("SELECT user_id FROM membership WHERE group_id = %s", group["id"])
    assert sorted(r[0] for r in rows) == sorted(stay + join)
    listed = call(instances[1], "GET", path).json()
    assert sorted(m["value"] for m in listed["members"]) == sorted(stay + join)
    # One version step per request that changed something, none lost between instances.
    assert listed["meta"]["version"] == f'W/"{1 + len(leave) + len(join)}"'


def _put_with_if_match(server: LiveServer, path: str, email: str) -> int:
    """Read, add an e-mail, PUT with If-Match; on 412 read again (bounded). Returns attempts."""
    for attempt in range(1, 101):
        current = call(server, "GET", path)
        resource = current.json()
        resource["emails"] = [*resource.get("emails", []), {"value": email, "type": "other"}]
        answer = call(server, "PUT", path, resource, **{"If-Match": current.headers["ETag"]})
        if answer.status_code == 200:
            return attempt
        assert answer.status_code == 412, answer.text
        time.sleep(0.005 * attempt)
    pytest.fail(f"PUT of {email} still conflicted after 100 attempts")


def test_concurrent_put_and_patch_of_one_user_lose_no_update(instances: list[LiveServer]) -> None:
    """PATCHes (applied under a row lock) and If-Match PUTs (read-modify-write, retried on 412)
    race on one user from both instances; every change is in the result."""
    name = unique_name()
    user = call(instances[0], "POST", "/Users", user_body(name)).json()
    path = f"/Users/{user['id']}"
    tag = uuid.uuid4().hex[:6]
    phones = [f"+1555{tag}{i:02d}" for i in range(16)]
    emails = [f"put{i}-{tag}@example.com" for i in range(8)]

    def change(index: int) -> int:
        server = instances[index % 2]
        if index < len(phones):
            value = [{"value": phones[index], "type": "work"}]
            operation = {"op": "add", "path": "phoneNumbers", "value": value}
            answer = call(server, "PATCH", path, patch_body(operation))
            assert answer.status_code == 200, answer.text
            return 1
        return _put_with_if_match(server, path, emails[index - len(phones)])

    attempts = at_once(len(phones) + len(emails), change)
    final = call(instances[1], "GET", path).json()
    assert sorted(p["value"] for p in final["phoneNumbers"]) == sorted(phones)
    assert {e["value"] for e in final["emails"]} == {name, *emails}
    assert final["meta"]["version"] == f'W/"{1 + len(phones) + len(emails)}"'
    print(f"If-Match PUTs needed {sum(attempts) - len(phones)} attempts for {len(emails)} writes")


def test_fifty_concurrent_posts_of_one_user_name_in_each_of_two_tenants_create_one_per_tenant(
    instances: list[LiveServer],
) -> None:
    """The same userName raced 50 times in each of two tenants at once, over both instances:
    the unique index (tenant_id, user_name_key) lets exactly one through per tenant, and the
    other tenant's row never counts as a collision (the 409s name their own tenant's user)."""
    slug = f"t{uuid.uuid4().hex[:8]}"
    tokens = {"default": instances[0].token, slug: instances[0].tenant(slug, "Race Corp")}
    tenants = sorted(tokens)
    name = unique_name()

    def post(i: int) -> tuple[str, Any]:
        tenant = tenants[i % 2]
        auth = f"Bearer {tokens[tenant]}"
        body = user_body(name, externalId=f"x{i}")
        return tenant, call(instances[(i // 2) % 2], "POST", "/Users", body, Authorization=auth)

    answers = at_once(100, post)
    for tenant in tenants:
        mine = [answer for owner, answer in answers if owner == tenant]
        statuses = Counter(a.status_code for a in mine)
        assert statuses == {201: 1, 409: 49}, (tenant, statuses)
        created = next(a.json() for a in mine if a.status_code == 201)
        for answer in mine:
            if answer.status_code == 409:
                assert answer.json()["scimType"] == "uniqueness"
                assert created["id"] in answer.json()["detail"]
    rows = instances[0].query(
        "SELECT t.slug, count(*) FROM lms_user u JOIN tenant t ON t.id = u.tenant_id "
        "WHERE u.user_name_key = %s GROUP BY t.slug ORDER BY t.slug",
        name.lower(),
    )
    assert rows == [(tenant, 1) for tenant in tenants]
