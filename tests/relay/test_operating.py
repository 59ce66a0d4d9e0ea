"""Enrolment rules and relay status for operators: the CLI, the SCIM view, the status page, and
a real `lms-scim relay run` process stopping on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from playhouse.test_utils import count_queries

from app.store.models import AuditEvent, KeptEnrolment, Outbox
from tests.helpers import create_group, create_user, invoke, run
from tests.relay.harness import Clock, drain, leave

LMS = "urn:lms-scim:schemas:extension:lms:2.0:User"


def test_enrolment_rules_add_list_remove(app: Flask, scim: Any) -> None:
    ann = create_user(scim, "ann@example.com")
    group = create_group(scim, "Physics 101", ann["id"])
    out = run(app, "enrolments", "add", "physics 101", "101", "--role", "student").stdout
    assert "Members of 'Physics 101' (1) are enrolled in course 101 as student" in out
    run(app, "enrolments", "add", group["id"], "102", "--role", "teacher", "--keep-on-leave")
    table = run(app, "enrolments", "list").stdout.splitlines()
    assert table[0].split() == ["group", "course", "role", "on", "leave", "members"]
    assert table[1].split() == ["Physics", "101", "101", "student", "unenrol", "1"]
    assert table[2].split() == ["Physics", "101", "102", "teacher", "keep", "1"]
    rules = json.loads(run(app, "enrolments", "list", "Physics 101", "--format", "json").stdout)
    assert [(r["courseId"], r["keepOnLeave"]) for r in rules] == [("101", False), ("102", True)]

    body = scim.get(f"/Users/{ann['id']}").get_json()
    assert body[LMS]["enrolments"] == [
        {"courseId": "101", "role": "student"},
        {"courseId": "102", "role": "teacher"},
    ]
    assert LMS in body["schemas"]

    # Leaving keeps what the keep rule gave; removing the other rule changes nothing for her.
    leave(scim, group["id"], ann["id"])
    assert KeptEnrolment.select().count() == 1
    body = scim.get(f"/Users/{ann['id']}").get_json()
    assert body[LMS]["enrolments"] == [{"courseId": "102", "role": "teacher"}]
    assert "are unenrolled" in run(app, "enrolments", "remove", "Physics 101", "101").stdout
    operations = [
        e.operation for e in AuditEvent.select().where(AuditEvent.resource_type == "EnrolmentRule")
    ]
    assert operations == ["add", "add", "remove"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Nope", "101", "--role", "student"), "No group with id or displayName 'Nope'"),
        (("Twin", "101", "--role", "student"), "More than one group is called 'Twin'"),
        (("Solo", "abc", "--role", "student"), "is not an LMS course id"),
    ],
)
def test_enrolment_rules_refuse_what_cannot_work(
    app: Flask, scim: Any, args: tuple[str, ...], message: str
) -> None:
    create_group(scim, "Twin")
    create_group(scim, "twin")
    create_group(scim, "Solo")
    result = invoke(app, "enrolments", "add", *args)
    assert result.exit_code == 1
    assert message in result.stderr


def test_a_page_of_users_gets_enrolments_in_the_same_statement(app: Flask, scim: Any) -> None:
    users = [create_user(scim, f"p{n}@example.com") for n in range(12)]
    group = create_group(scim, "Page", *(u["id"] for u in users))
    scim.get("/Users?count=0")  # the token is verified and cached before counting
    with count_queries() as without:
        assert scim.get("/Users?count=20").status_code == 200
    run(app, "enrolments", "add", group["id"], "101", "--role", "student")
    scim.get("/Users?count=0")  # a new rule moves the cache generation on: one more query
    with count_queries() as counter:
        listed = scim.get("/Users?count=20").get_json()["Resources"]
    assert counter.count == without.count
    assert all(r[LMS]["enrolments"] == [{"courseId": "101", "role": "student"}] for r in listed)


def test_a_replace_without_enrolments_changes_nothing(app: Flask, scim: Any) -> None:
    """`enrolments` is read-only and computed: a PUT of the same user is not a change."""
    ann = create_user(scim, "ann@example.com")
    create_group(scim, "Physics", ann["id"])
    run(app, "enrolments", "add", "Physics", "101", "--role", "student")
    body = scim.get(f"/Users/{ann['id']}").get_json()
    before = Outbox.select().count()
    again = scim.put(f"/Users/{ann['id']}", body)
    assert again.status_code == 200
    assert again.get_json()["meta"]["version"] == body["meta"]["version"]
    assert Outbox.select().count() == before


def test_relay_status_page_and_user_view(
    app: Flask, scim: Any, signed_in: FlaskClient, moodle: Any, relay: Any, clock: Clock
) -> None:
    good = create_user(scim, "lee@example.com")
    bad = create_user(scim, "bad name", emails=[{"value": "bad@example.com"}])
    drain(relay, clock)
    page = signed_in.get("/admin/relay").get_data(as_text=True)
    assert "LMS relay" in page
    assert "Invalid username: bad name" in page
    assert f"/admin/users/{bad['id']}" in page
    user_page = signed_in.get(f"/admin/users/{good['id']}").get_data(as_text=True)
    assert "in step with the LMS since" in user_page
    bad_page = signed_in.get(f"/admin/users/{bad['id']}").get_data(as_text=True)
    assert "not in step with the LMS" in bad_page
    status = json.loads(run(app, "relay", "status", "--format", "json").stdout)
    assert status["failures"] == 1
    assert status["backlog"] == 0
    assert status["deadLetters"][0]["userId"] == bad["id"]
    assert status["lastDelivery"]


def test_relay_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """A real worker process: it polls (the LMS is unreachable: nothing listens on the port),
    and SIGTERM ends it within a moment with exit status 0."""
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        "LMS_URL": "http://127.0.0.1:9",
        "LMS_TOKEN": "unused",
        "LMS_TIMEOUT_MS": "500",
        "SECRET_KEY": "test",
    }
    subprocess.run(
        [bin_dir / "lms-scim", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    subprocess.run(
        [bin_dir / "lms-scim", "users", "add", "zoe", "--email", "zoe@example.com"],
        env=env,
        check=True,
        capture_output=True,
    )
    worker = subprocess.Popen(
        [bin_dir / "lms-scim", "relay", "run", "--idle", "0.2"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    assert "SIGTERM" in stderr
    assert "relay: stopped" in stderr
    status = subprocess.run(
        [bin_dir / "lms-scim", "relay", "status", "--format", "json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    found = json.loads(status.stdout)
    assert found["backlog"] == 1
    assert found["retrying"] == 1
