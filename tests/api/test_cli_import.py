"""`lms-scim users import FILE.csv` on SQLite and PostgreSQL: the CSV `users list --format csv`
writes comes back unchanged; a dry run by default that writes nothing; `--apply` through the
store (uniqueness, identity keys), audited as `cli`; errors with line numbers; per tenant."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.store.models import AuditEvent, User
from tests.helpers import create_user, deactivate, invoke, run

HEADER = "id,userName,name,email,userType,active,externalId,lastModified"


@pytest.fixture
def people(scim: Any) -> dict[str, Any]:
    alice = create_user(scim, "alice@example.com", externalId="okta-1")
    bob = create_user(scim, "bob@example.com", userType="instructor")
    deactivate(scim, bob["id"])
    return {"alice": alice, "bob": bob}


def _file(tmp_path: Path, text: str, name: str = "users.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _exported(app: Flask, *extra: str) -> list[dict[str, str]]:
    out = run(app, "users", "list", "--format", "csv", *extra).stdout
    return list(csv.DictReader(io.StringIO(out)))


def _csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER.split(","), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_what_users_list_writes_imports_as_unchanged(
    app: Flask, people: dict[str, Any], tmp_path: Path
) -> None:
    path = _file(tmp_path, run(app, "users", "list", "--format", "csv").stdout)
    events = AuditEvent.select().count()
    dry = run(app, "users", "import", path).stdout
    assert "0 to create, 0 to update, 2 unchanged, 0 error(s)" in dry
    assert (
        "created 0, updated 0, 2 unchanged." in run(app, "users", "import", path, "--apply").stdout
    )
    assert AuditEvent.select().count() == events


def test_a_dry_run_says_what_would_happen_and_writes_nothing_then_apply_does_it(
    app: Flask, scim: Any, people: dict[str, Any], tmp_path: Path
) -> None:
    rows = _exported(app)
    by_name = {r["userName"]: r for r in rows}
    by_name["bob@example.com"]["active"] = "true"  # back from leave
    by_name["alice@example.com"]["email"] = "alice@new.example.com"
    by_name["alice@example.com"]["name"] = "Alice Pleasance Liddell"
    new = {"userName": "carol@example.com", "email": "carol@example.com", "active": "false"}
    path = _file(tmp_path, _csv([*rows, new]))
    events = AuditEvent.select().count()
    last = AuditEvent.select().order_by(AuditEvent.id.desc()).first().id

    dry = run(app, "users", "import", path)
    assert "users.csv: 1 to create, 2 to update, 0 unchanged, 0 error(s)" in dry.stdout
    assert "a dry run: nothing written" in dry.stdout
    assert "line 4: create 'carol@example.com'" in dry.stdout
    assert "active=true" in dry.stdout
    assert AuditEvent.select().count() == events
    assert User.select().count() == 2
    assert User.get(User.id == people["bob"]["id"]).active is False

    applied = run(app, "users", "import", path, "--apply")
    assert "created 1, updated 2, 0 unchanged" in applied.stdout
    bob = scim.get(f"/Users/{people['bob']['id']}").get_json()
    assert bob["active"] is True
    alice = scim.get(f"/Users/{people['alice']['id']}").get_json()
    assert [e["value"] for e in alice["emails"]] == ["alice@new.example.com"]
    assert alice["displayName"] == "Alice Pleasance Liddell"
    assert alice["externalId"] == "okta-1"  # kept
    found = scim.get('/Users?filter=userName eq "CAROL@example.com"').get_json()["Resources"]
    assert found[0]["active"] is False
    assert found[0]["userType"] == "learner"  # the tenant's default
    operations = [
        (e.operation, e.token_name)
        for e in AuditEvent.select().where(AuditEvent.id > last).order_by(AuditEvent.id)
    ]
    assert sorted(operations) == [("activate", "cli"), ("create", "cli"), ("patch", "cli")]
    again = run(app, "users", "import", path)
    assert "0 to create, 0 to update, 3 unchanged" in again.stdout


def test_a_line_without_an_id_updates_the_user_with_that_username(
    app: Flask, people: dict[str, Any], tmp_path: Path
) -> None:
    path = _file(tmp_path, "userName,userType\nALICE@EXAMPLE.COM,instructor\n")
    run(app, "users", "import", path, "--apply")
    assert User.select().count() == 2
    alice = User.get(User.id == people["alice"]["id"])
    assert (alice.user_type, alice.user_name) == ("instructor", "ALICE@EXAMPLE.COM")


def test_errors_name_their_lines_and_nothing_is_written(
    app: Flask, people: dict[str, Any], tmp_path: Path
) -> None:
    text = "\n".join(
        [
            "userName,email,active,id",
            "dana@example.com,dana@example.com,true,",  # 2: fine
            "erin@example.com,BOB@example.com,,",  # 3: bob's address
            "dana@example.com,,,",  # 4: dana again
            ",x@example.com,,",  # 5: no userName
            "fay@example.com,,maybe,",  # 6: not a boolean
            f"gus@example.com,,,{'0' * 32}",  # 7: no such id
            "hal@example.com,not an address,,",  # 8: fine (e-mails are not checked)
        ]
    )
    path = _file(tmp_path, text + "\n")
    events = AuditEvent.select().count()
    for args in ((), ("--apply",)):
        result = invoke(app, "users", "import", path, *args)
        assert result.exit_code == 1
        err = result.stderr
        assert "line 3: An e-mail address of this user is already in use by user" in err
        assert "line 4: userName 'dana@example.com' is on line 2 too" in err
        assert "line 5: userName is empty" in err
        assert "line 6: active must be true or false, not 'maybe'" in err
        assert f"line 7: no user with id '{'0' * 32}'" in err
        assert "line 2:" not in err
        assert "2 to create, 0 to update, 0 unchanged, 5 error(s); nothing written." in err
        assert "Traceback" not in result.output
    assert User.select().count() == 2
    assert AuditEvent.select().count() == events


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,email\nx,y\n", "line 1 must name the columns, userName among them"),
        ("userName,password\nx,y\n", "unknown column(s) 'password'"),
        ("userName,name\nx,y,z\n", "line 2: more cells than the header has columns"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused(
    app: Flask, tmp_path: Path, text: str, message: str
) -> None:
    result = invoke(app, "users", "import", _file(tmp_path, text))
    assert result.exit_code == 1
    assert message in result.stderr


def test_a_file_that_is_not_utf8_is_refused(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("userName\nJosé\n".encode("latin-1"))
    result = invoke(app, "users", "import", str(path))
    assert result.exit_code == 1
    assert "latin1.csv is not UTF-8 text." in result.stderr


def test_import_works_for_the_tenant_named(
    app: Flask, people: dict[str, Any], tmp_path: Path
) -> None:
    run(app, "tenants", "create", "acme", "--name", "Acme")
    path = _file(tmp_path, "userName\nalice@example.com\n")
    assert "--tenant" in invoke(app, "users", "import", path).output  # which one?
    result = run(app, "users", "import", path, "--tenant", "acme", "--apply")
    assert "created 1, updated 0, 0 unchanged" in result.stdout
    assert len(_exported(app, "--tenant", "acme")) == 1
    assert len(_exported(app, "--tenant", "default")) == 2


def test_an_email_change_replaces_the_primary_address_only(
    app: Flask, scim: Any, tmp_path: Path
) -> None:
    user = create_user(
        scim,
        "ann@example.com",
        emails=[
            {"value": "home@example.com", "type": "home"},
            {"value": "ann@example.com", "type": "work", "primary": True},
        ],
    )
    path = _file(tmp_path, f"id,userName,email\n{user['id']},ann@example.com,ann@new.example.com\n")
    assert "0 to create, 1 to update" in run(app, "users", "import", path).stdout
    run(app, "users", "import", path, "--apply")
    emails = scim.get(f"/Users/{user['id']}").get_json()["emails"]
    assert sorted((e["value"], e.get("primary", False)) for e in emails) == [
        ("ann@new.example.com", True),
        ("home@example.com", False),
    ]
    assert "1 unchanged" in run(app, "users", "import", path).stdout
