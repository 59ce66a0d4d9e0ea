"""Settings belong to an app, not to the process: two apps with different settings, served
in one process and used in turn, each answer by their own (`app.runtime`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from app import runtime
from app.config import Config
from app.secretbox import SecretUnreadable, reveal
from app.store import tenancy
from app.store.models import LmsTarget, SigningKey, Tenant
from scim_schemas import CORE_USER
from tests.helpers import Scim, app_with, feed, run


def _user(name: str, email: str) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": name, "emails": [{"value": email}]}


def test_two_apps_in_one_process_keep_their_own_settings(app: Flask, token: str) -> None:
    strict = app_with(app, unique_emails=True, default_user_type="learner", max_page_size=2)
    lenient = app_with(app, unique_emails=False, default_user_type="instructor", max_page_size=50)
    a, b = Scim.of(strict, token), Scim.of(lenient, token)

    first = a.post("/Users", _user("one", "shared@example.com"))
    assert first.status_code == 201
    assert first.get_json()["userType"] == "learner"
    # The same address: refused by the strict app, taken by the lenient one, in turn.
    assert a.post("/Users", _user("two", "shared@example.com")).status_code == 409
    second = b.post("/Users", _user("two", "shared@example.com"))
    assert second.status_code == 201
    assert second.get_json()["userType"] == "instructor"
    assert a.post("/Users", _user("three", "SHARED@example.com")).status_code == 409
    assert b.post("/Users", _user("three", "x@example.com")).get_json()["userType"] == "instructor"
    assert a.post("/Users", _user("four", "y@example.com")).get_json()["userType"] == "learner"

    # Page sizes: each app caps `count` at its own MAX_PAGE_SIZE, and says so in discovery.
    assert a.get("/Users?count=10").get_json()["itemsPerPage"] == 2
    assert b.get("/Users?count=10").get_json()["itemsPerPage"] == 4
    assert a.get("/Users?count=10").get_json()["itemsPerPage"] == 2
    assert a.get("/ServiceProviderConfig").get_json()["filter"]["maxResults"] == 2
    assert b.get("/ServiceProviderConfig").get_json()["filter"]["maxResults"] == 50

    assert runtime.of(strict).config.unique_emails is True
    assert runtime.of(lenient).config.unique_emails is False


def test_each_app_signs_cursors_with_its_own_secret(app: Flask, token: str) -> None:
    one = Scim.of(app_with(app, secret_key="one" * 16), token)
    two = Scim.of(app_with(app, secret_key="two" * 16), token)
    for name in ("a", "b", "c"):
        assert one.post("/Users", _user(name, f"{name}@example.com")).status_code == 201
    page = one.get("/Users?cursor=&count=1").get_json()
    cursor = page["nextCursor"]
    assert one.get(f"/Users?cursor={cursor}&count=1").status_code == 200
    refused = two.get(f"/Users?cursor={cursor}&count=1")
    assert refused.status_code == 400
    assert refused.get_json()["scimType"] == "invalidCursor"


def test_each_app_seals_secrets_with_its_own_key(app: Flask) -> None:
    one = app_with(app, secret_key="one" * 16, secret_key_previous=())
    two = app_with(app, secret_key="two" * 16, secret_key_previous=("one" * 16,))
    three = app_with(app, secret_key="three" * 10, secret_key_previous=())
    context = "tenant:1:lms_token"
    with one.app_context():  # as request and CLI code get it
        sealed = runtime.current().secret_box.seal("ws-token", context)
    stored: list[str] = []
    with two.app_context():
        assert runtime.current().secret_box.open(sealed, context, stored.append) == "ws-token"
    (resealed,) = stored  # under two's key
    with three.app_context(), pytest.raises(SecretUnreadable):
        runtime.current().secret_box.open(sealed, context)
    with one.app_context(), pytest.raises(SecretUnreadable):
        runtime.current().secret_box.open(resealed, context)
    assert runtime.of(one).secret_box is not runtime.of(two).secret_box
    assert runtime.of(one).secret_box.open(sealed, context) == "ws-token"


def _sealed(app: Flask) -> tuple[str, str, str]:
    """The default tenant's sealed LMS_TOKEN, LMS target `b`'s sealed token, and the signing
    key's sealed private half, as stored."""
    with app.app_context():
        settings = json.loads(Tenant.get_by_id(tenancy.DEFAULT_TENANT).settings)
        (target,) = LmsTarget.select().where(LmsTarget.name == "b")
        (key,) = SigningKey.select()
        return settings["LMS_TOKEN"], target.token, key.private_key


def test_a_secret_only_a_previous_key_opens_is_resealed_where_it_is_read(
    app: Flask, token: str
) -> None:
    old = app_with(app, secret_key="old" * 16, secret_key_previous=())
    tenant_token, target_token = "tenant-ws-token-0123456789", "target-ws-token-9876543210"
    setting = ("tenants", "set", "default", "LMS_TOKEN", "LMS_URL=https://a.example")
    assert feed(old, tenant_token + "\n", *setting).exit_code == 0
    assert (
        feed(old, target_token + "\n", "lms", "add", "b", "--url", "https://b.example").exit_code
        == 0
    )
    out = run(old, "clients", "create", "entra").stdout.splitlines()
    creds = dict(line.split("=", 1) for line in out)
    form = {"grant_type": "client_credentials", **creds}
    assert old.test_client().post("/oauth/token", data=form).status_code == 200
    before = _sealed(app)
    # SECRET_KEY rotated: each secret is resealed under the new key where it is opened.
    rotated = app_with(app, secret_key="new" * 16, secret_key_previous=("old" * 16,))
    assert Scim.of(rotated, token).get("/Users").status_code == 200
    assert _sealed(app) == before  # SCIM reads the tenant's settings, never opens its token
    assert tenant_token[-4:] in run(rotated, "tenants", "show", "default").stdout  # the tenant's
    assert rotated.test_client().post("/oauth/token", data=form).status_code == 200  # the signer
    assert target_token[-4:] in run(rotated, "lms", "show", "b").stdout  # the target
    after = _sealed(app)
    assert all(a != b for a, b in zip(after, before, strict=True))
    # Then the previous key can go: every secret opens under the new one alone.
    new_only = app_with(app, secret_key="new" * 16, secret_key_previous=())
    assert Scim.of(new_only, token).get("/Users").status_code == 200
    with new_only.app_context():
        assert reveal(runtime.current().tenant_settings().lms_token) == tenant_token
    assert target_token[-4:] in run(new_only, "lms", "show", "b").stdout
    assert new_only.test_client().post("/oauth/token", data=form).status_code == 200
    assert _sealed(app) == after  # opened under the current key: nothing more is written


def test_every_variable_is_read_with_its_parser_and_default() -> None:
    variables = Config.variables()
    assert variables["MAX_PAGE_SIZE"] == 1000
    assert variables["LMS_ROLE_IDS"] == (("student", 5), ("teacher", 3))
    config = Config.from_env(
        {"MAX_PAGE_SIZE": "7", "UNIQUE_EMAILS": "off", "LMS_ROLE_IDS": "student=9, teacher=4"}
    )
    assert config.max_page_size == 7
    assert config.unique_emails is False
    assert config.lms_role_ids == (("student", 9), ("teacher", 4))
    # Empty means unset: the default.
    assert Config.from_env({"MAX_PAGE_SIZE": ""}).max_page_size == 1000
    # Every field but `testing` is read from exactly one variable.
    assert len(variables) == len(Config.__dataclass_fields__) - 1
    assert len(set(variables)) == len(variables)
