"""Per-tenant settings and the tenant's life cycle: `tenants show/set/disable/enable/delete`.
A tenant's settings override the environment's for its own requests only; the default tenant
keeps the environment's (UNIQUE_EMAILS true, DEFAULT_USER_TYPE learner, 204 group PATCHes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from app import runtime
from app.secretbox import reveal
from app.store import tenancy
from app.store import tenants as tenant_store
from app.store.models import AuditEvent, Operator, Tenant, User
from tests.helpers import (
    Scim,
    assert_error,
    create_group,
    create_user,
    feed,
    group_body,
    invoke,
    last_line,
    members,
    patch_body,
    run,
    user_body,
)

TOKEN = "moodle-ws-token-0123456789abcdef"


def _shown(app: Flask, slug: str) -> dict[str, Any]:
    return json.loads(run(app, "tenants", "show", slug, "--format", "json").output)


def _with_email(name: str, email: str, **extra: Any) -> dict[str, Any]:
    return user_body(name, emails=[{"value": email, "type": "work"}], **extra)


def test_unique_emails_per_tenant(app: Flask, scim: Scim, acme: Scim) -> None:
    run(app, "tenants", "set", "acme", "UNIQUE_EMAILS=false")
    for name in ("one", "two"):
        assert acme.post("/Users", _with_email(name, "shared@example.com")).status_code == 201
    assert scim.post("/Users", _with_email("one", "shared@example.com")).status_code == 201
    assert_error(scim.post("/Users", _with_email("two", "shared@example.com")), 409, "uniqueness")


def test_default_user_type_and_timezone_per_tenant(app: Flask, scim: Scim, acme: Scim) -> None:
    run(
        app,
        "tenants",
        "set",
        "acme",
        "DEFAULT_USER_TYPE=instructor",
        "DEFAULT_TIMEZONE=Europe/Paris",
    )
    made = create_user(acme, "ann")
    assert made["userType"] == "instructor"
    assert create_user(scim, "bob")["userType"] == "learner"
    with app.app_context(), tenancy.use(tenant_store.by_slug("acme").id):
        assert User.get(User.id == made["id"]).timezone == "Europe/Paris"
    # `users add` in the tenant uses its default too.
    user_id = last_line(run(app, "users", "add", "carl", "--tenant", "acme"))
    assert acme.get(f"/Users/{user_id}").get_json()["userType"] == "instructor"


def test_password_policy_per_tenant(app: Flask, scim: Scim, acme: Scim) -> None:
    run(app, "tenants", "set", "acme", "PASSWORD_POLICY=ignore")
    theirs = create_user(acme, "ann", password="Secret-123456")
    ours = create_user(scim, "bob", password="Secret-123456")
    with app.app_context():
        with tenancy.use(tenant_store.by_slug("acme").id):
            assert User.get(User.id == theirs["id"]).password_hash is None
        assert User.get(User.id == ours["id"]).password_hash.startswith("$argon2id$")


def test_group_patch_response_per_tenant(app: Flask, scim: Scim, acme: Scim) -> None:
    run(app, "tenants", "set", "acme", "GROUP_PATCH_RESPONSE=200")
    change = patch_body({"op": "replace", "path": "displayName", "value": "Renamed"})
    theirs, ours = create_group(acme, "Staff"), create_group(scim, "Staff")
    answer = acme.patch(f"/Groups/{theirs['id']}", change)
    assert answer.status_code == 200
    assert answer.get_json()["displayName"] == "Renamed"
    assert scim.patch(f"/Groups/{ours['id']}", change).status_code == 204


def test_unique_group_names_per_tenant(app: Flask, scim: Scim, acme: Scim) -> None:
    run(app, "tenants", "set", "acme", "UNIQUE_GROUP_NAMES=true")
    create_group(acme, "Staff")
    assert_error(acme.post("/Groups", group_body("Staff")), 409, "uniqueness")
    create_group(scim, "Staff")
    create_group(scim, "Staff")


def test_show_set_and_reset(app: Flask, acme: Scim) -> None:
    shown = _shown(app, "acme")
    assert shown["state"] == "active"
    assert shown["settings"]["UNIQUE_EMAILS"] == {"value": "true", "source": "default"}
    assert shown["settings"]["LMS_ROLE_IDS"]["value"] == "student=5,teacher=3"
    run(app, "tenants", "set", "acme", "UNIQUE_EMAILS=no", "LMS_ROLE_IDS=student=7,teacher=4")
    shown = _shown(app, "acme")["settings"]
    assert shown["UNIQUE_EMAILS"] == {"value": "false", "source": "tenant"}
    assert shown["LMS_ROLE_IDS"] == {"value": "student=7,teacher=4", "source": "tenant"}
    run(app, "tenants", "set", "acme", "UNIQUE_EMAILS=")
    assert _shown(app, "acme")["settings"]["UNIQUE_EMAILS"] == {
        "value": "true",
        "source": "default",
    }
    # The default tenant is untouched; the table form names the sources too.
    assert _shown(app, "default")["settings"]["LMS_ROLE_IDS"]["source"] == "default"
    table = run(app, "tenants", "show", "acme").output
    assert "LMS_ROLE_IDS" in table
    assert "tenant" in table
    with app.app_context():
        events = [
            e.changes for e in AuditEvent.select().where(AuditEvent.operation == "tenant_settings")
        ]
    assert events == []  # the default tenant's trail; acme's has them
    with app.app_context(), tenancy.use(tenant_store.by_slug("acme").id):
        ops = [e.operation for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert ops.count("tenant_settings") == 2


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("NOPE=1", "not a per-tenant setting"),
        ("MAX_PAGE_SIZE=5", "not a per-tenant setting"),
        ("UNIQUE_EMAILS=maybe", "not a boolean"),
        ("GROUP_PATCH_RESPONSE=201", "GROUP_PATCH_RESPONSE must be 200 or 204"),
        ("GROUP_PATCH_RESPONSE=two", "GROUP_PATCH_RESPONSE"),
        ("PASSWORD_POLICY=plain", "PASSWORD_POLICY must be"),
        ("LMS_MATCH_FIELD=id", "LMS_MATCH_FIELD must be"),
        ("LMS_ROLE_IDS=student", "LMS_ROLE_IDS must look like"),
        ("UNIQUE_EMAILS", "KEY=VALUE"),
        (f"LMS_TOKEN={TOKEN}", "never taken from the command line"),
    ],
)
def test_set_refuses_what_config_refuses(
    app: Flask, acme: Scim, assignment: str, message: str
) -> None:
    before = _shown(app, "acme")
    result = invoke(app, "tenants", "set", "acme", "DEFAULT_USER_TYPE=x", assignment)
    assert result.exit_code != 0
    assert message in result.output
    assert TOKEN not in result.output
    assert _shown(app, "acme") == before  # nothing of the command was stored


def test_set_refuses_an_unknown_tenant(app: Flask) -> None:
    result = invoke(app, "tenants", "set", "nope", "UNIQUE_EMAILS=true")
    assert result.exit_code != 0
    assert "No tenant 'nope'" in result.output


def test_lms_token_from_stdin_is_sealed_and_masked(app: Flask, acme: Scim) -> None:
    result = feed(
        app, TOKEN + "\n", "tenants", "set", "acme", "LMS_TOKEN", "LMS_URL=https://lms.example"
    )
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    with app.app_context():
        tenant = tenant_store.by_slug("acme")
        stored = Tenant.get_by_id(tenant.id).settings
        assert TOKEN not in stored
        assert json.loads(stored)["LMS_TOKEN"].startswith("v1:")
        settings = runtime.of(app).tenant_settings(tenant.id)
        assert reveal(settings.lms_token) == TOKEN
        assert settings.lms_url == "https://lms.example"
        assert runtime.of(app).tenant_settings(tenancy.DEFAULT_TENANT).lms_token is None
        with tenancy.everywhere():
            trail = " ".join(str(e.changes) for e in AuditEvent.select())
        assert TOKEN not in trail
        assert TOKEN not in repr(settings)
    shown = run(app, "tenants", "show", "acme").output
    assert TOKEN not in shown
    assert "••••cdef" in shown
    # An empty line sets nothing; `LMS_TOKEN=` removes it.
    assert feed(app, "\n", "tenants", "set", "acme", "LMS_TOKEN").exit_code != 0
    run(app, "tenants", "set", "acme", "LMS_TOKEN=")
    assert _shown(app, "acme")["settings"]["LMS_TOKEN"] == {"value": "not set", "source": "default"}


def test_disable_refuses_the_tenants_tokens_only(app: Flask, scim: Scim, acme: Scim) -> None:
    run(app, "tenants", "disable", "acme")
    refused = assert_error(acme.get("/Users"), 403)
    assert "scimType" not in refused
    assert "disabled" in refused["detail"]
    assert_error(acme.post("/Users", user_body("ann")), 403)
    assert scim.get("/Users").status_code == 200
    assert "disabled" in run(app, "tenants", "list").output
    assert "already" in run(app, "tenants", "disable", "acme").output
    run(app, "tenants", "enable", "acme")
    assert acme.get("/Users").status_code == 200


def test_disabling_the_default_tenant_warns(app: Flask, scim: Scim) -> None:
    result = run(app, "tenants", "disable", "default")
    assert "Warning" in result.stderr
    assert_error(scim.get("/Users"), 403)
    run(app, "tenants", "enable", "default")
    assert scim.get("/Users").status_code == 200


def _populate(scim: Scim, prefix: str) -> None:
    ann = create_user(scim, f"{prefix}-ann", emails=[{"value": f"{prefix}@example.com"}])
    bob = create_user(scim, f"{prefix}-bob")
    group = create_group(scim, "Staff", ann["id"])
    change = patch_body({"op": "add", "path": "members", "value": members(bob["id"])})
    assert scim.patch(f"/Groups/{group['id']}", change).status_code == 204


def test_delete_refused_with_users_then_purged(app: Flask, scim: Scim, acme: Scim) -> None:
    _populate(scim, "ours")
    _populate(acme, "theirs")
    with app.app_context():
        acme_id = tenant_store.by_slug("acme").id
        ours_before = tenant_store.row_counts(tenancy.DEFAULT_TENANT)
        theirs_before = tenant_store.row_counts(acme_id)
    assert theirs_before["lms_user"] == 2
    assert theirs_before["membership"] == 2
    refused = invoke(app, "tenants", "delete", "acme")
    assert refused.exit_code != 0
    assert "--purge" in refused.output
    wrong = feed(app, "acm\n", "tenants", "delete", "acme", "--purge")
    assert wrong.exit_code != 0
    with app.app_context():
        assert tenant_store.row_counts(acme_id) == theirs_before
    done = feed(app, "acme\n", "tenants", "delete", "acme", "--purge")
    assert done.exit_code == 0, done.output
    with app.app_context():
        assert set(tenant_store.row_counts(acme_id).values()) == {0}
        assert Tenant.get_or_none(Tenant.id == acme_id) is None
        ours_after = tenant_store.row_counts(tenancy.DEFAULT_TENANT)
    # The default tenant lost nothing; its trail gained the deletion.
    assert ours_after == {**ours_before, "audit_event": ours_before["audit_event"] + 1}
    assert acme.get("/Users").status_code == 401
    assert scim.get("/Users").get_json()["totalResults"] == 2


def test_a_tenant_without_users_deletes_without_purge(app: Flask, acme: Scim) -> None:
    run(app, "operators", "create", "bea", "--tenant", "acme", "--password", "a long passphrase")
    run(app, "operators", "create", "gil", "--password", "a long passphrase")
    done = run(app, "tenants", "delete", "acme")
    assert "Deleted tenant 'acme'" in done.output
    assert "1 operator" in done.output  # bound to acme, it could see nothing else
    assert "acme" not in run(app, "tenants", "list").output
    with app.app_context():
        assert [o.name for o in Operator.select()] == ["gil"]


def test_the_default_tenant_cannot_be_deleted(app: Flask) -> None:
    result = feed(app, "default\n", "tenants", "delete", "default", "--purge")
    assert result.exit_code != 0
    assert "cannot be deleted" in result.output


def test_list_as_csv_with_last_activity(app: Flask, scim: Scim, acme: Scim) -> None:
    create_user(acme, "ann")
    lines = run(app, "tenants", "list", "--format", "csv").stdout.splitlines()
    assert lines[0] == "slug,name,state,lastActivity,users,activeUsers,groups,tokens"
    acme_line = next(line for line in lines if line.startswith("acme,"))
    assert acme_line.split(",")[4:] == ["1", "1", "0", "1"]
    assert acme_line.split(",")[3].startswith("20")
    table = run(app, "tenants", "list").output
    assert "last activity" in table
    listed = json.loads(run(app, "tenants", "list", "--format", "json").output)
    assert all("lastActivity" in row for row in listed)
