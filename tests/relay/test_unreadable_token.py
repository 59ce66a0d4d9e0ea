"""A tenant's LMS token (or an LMS target's) sealed under a SECRET_KEY the app no longer has
(changed without SECRET_KEY_PREVIOUS): SCIM, /admin and the commands that only show settings
keep working; what uses the token (the relay's deliveries, `relay test`) fails, saying why and
how to fix it, and the relay keeps the changes with its usual back-off."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from app.relay.moodle import TokenUnreadable
from app.secretbox import UNREADABLE
from app.store import tenancy
from app.store import tenants as tenant_store
from app.store.models import Outbox, utcnow
from tests.helpers import (
    OPERATOR,
    PASSWORD,
    Scim,
    app_with,
    create_user,
    feed,
    invoke,
    run,
    sign_in,
)
from tests.relay.harness import A_URL, B_URL
from tests.relay.moodle_sim import TOKEN, MoodleSim

OLD_KEY, NEW_KEY = "old" * 16, "new" * 16
TENANT_FIX = "`lms-scim tenants set acme LMS_TOKEN` (the token on stdin)"
TARGET_FIX = "`lms-scim lms set extra token --tenant acme` (the token on stdin)"


@pytest.fixture
def rekeyed(app: Flask, acme: Scim, sites: tuple[MoodleSim, MoodleSim]) -> Flask:
    """acme's LMS token (site B) and its target `extra`'s (site A) sealed under OLD_KEY; the
    app it returns runs under NEW_KEY alone."""
    old = app_with(app, secret_key=OLD_KEY, secret_key_previous=())
    setting = ("tenants", "set", "acme", "LMS_TOKEN", f"LMS_URL={B_URL}")
    assert feed(old, TOKEN + "\n", *setting).exit_code == 0
    target = ("lms", "add", "extra", "--url", A_URL, "--tenant", "acme")
    assert feed(old, TOKEN + "\n", *target).exit_code == 0
    return app_with(app, secret_key=NEW_KEY, secret_key_previous=())


def test_scim_admin_and_show_commands_keep_working(
    rekeyed: Flask, acme_token: str, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    acme = Scim.of(rekeyed, acme_token)
    assert acme.get("/Users").status_code == 200
    ann = create_user(acme, "ann@acme.example")
    assert acme.get(f"/Users/{ann['id']}").status_code == 200
    with rekeyed.app_context(), tenancy.use(tenant_store.by_slug("acme").id):
        assert Outbox.select().count() == 2  # queued for both targets, as ever

    shown = json.loads(run(rekeyed, "tenants", "show", "acme", "--format", "json").stdout)
    assert shown["settings"]["LMS_TOKEN"] == {"value": UNREADABLE, "source": "tenant"}
    assert shown["settings"]["LMS_URL"]["value"] == B_URL
    assert UNREADABLE in run(rekeyed, "lms", "show", "extra", "--tenant", "acme").stdout
    assert UNREADABLE in run(rekeyed, "lms", "show", "default", "--tenant", "acme").stdout
    assert "extra" in run(rekeyed, "lms", "list", "--tenant", "acme").stdout
    status = run(rekeyed, "relay", "status", "--tenant", "acme").stdout
    assert "1 change(s) waiting" in status

    run(rekeyed, "operators", "create", OPERATOR, "--password", PASSWORD)
    browser = rekeyed.test_client()
    assert sign_in(browser).status_code == 302
    for page in ("", "users", "relay"):
        assert browser.get(f"/admin/t/acme/{page}").status_code == 200, page
    assert all(site.calls == [] for site in sites)


def test_relay_test_says_why_and_exits_1(
    rekeyed: Flask, sites: tuple[MoodleSim, MoodleSim]
) -> None:
    result = invoke(rekeyed, "relay", "test", "--tenant", "acme")
    assert result.exit_code == 1
    out = result.output
    assert "acme: cannot use the LMS web service: the LMS token of tenant 'acme' cannot" in out
    assert "acme/extra: cannot use the LMS web service: the token of LMS target 'extra'" in out
    for fix in (TENANT_FIX, TARGET_FIX, "SECRET_KEY_PREVIOUS"):
        assert fix in out
    assert "2 LMS site(s) cannot be used as they are" in out
    assert TOKEN not in out
    assert all(site.calls == [] for site in sites)

    # Set again under the new key, both check out.
    assert feed(rekeyed, TOKEN + "\n", "tenants", "set", "acme", "LMS_TOKEN").exit_code == 0
    fixed = ("lms", "set", "extra", "token", "--tenant", "acme")
    assert feed(rekeyed, TOKEN + "\n", *fixed).exit_code == 0
    tested = run(rekeyed, "relay", "test", "--tenant", "acme").stdout
    assert tested.count("every required function is allowed") == 2


def test_the_relay_records_the_reason_and_backs_off(
    rekeyed: Flask,
    acme_token: str,
    sites: tuple[MoodleSim, MoodleSim],
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_user(Scim.of(rekeyed, acme_token), "ann@acme.example")
    started = utcnow()
    with caplog.at_level(logging.ERROR, logger="app.relay.worker"):
        summary = run(rekeyed, "relay", "run", "--once", "--tenant", "acme").stdout
    assert "backlog: 2 (2 retrying); failures: 0" in summary
    with rekeyed.app_context(), tenancy.use(tenant_store.by_slug("acme").id):
        rows = list(Outbox.select().order_by(Outbox.id))
    assert [(r.state, r.attempts) for r in rows] == [("pending", 1)] * 2
    assert all(r.next_attempt_at > started for r in rows)  # back-off, not a dead letter
    errors = sorted(r.last_error for r in rows)
    assert errors[0].startswith("the LMS token of tenant 'acme' cannot be unsealed (")
    assert errors[1].startswith("the token of LMS target 'extra' of tenant 'acme' cannot be")
    assert TENANT_FIX in errors[0]
    assert TARGET_FIX in errors[1]
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 2
    assert all("will be retried" in r.getMessage() for r in logged)
    assert all(site.calls == [] for site in sites)

    status = run(rekeyed, "relay", "status", "--tenant", "acme").stdout
    assert "retrying:      1 (the" in status
    assert "cannot be unsealed" in status


def test_an_unreadable_token_is_a_transient_lms_error() -> None:
    error = TokenUnreadable("the LMS token of tenant 'acme' cannot be unsealed")
    assert error.transient
    assert not error.missing
