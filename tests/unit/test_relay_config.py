"""`config.names_an_lms` (what the relay metrics use to tell a tenant with an LMS from one
without, from stored settings alone) agrees with the settings `TenantSettings.overlay` builds."""

from __future__ import annotations

import pytest

from app.config import Config, TenantSettings, names_an_lms

SITE = "https://moodle.example.com"


@pytest.mark.parametrize("environment", [None, SITE])
@pytest.mark.parametrize("stored", [{}, {"LMS_URL": ""}, {"LMS_URL": "https://own.example.com"}])
@pytest.mark.parametrize("default_tenant", [True, False])
def test_names_an_lms_agrees_with_the_overlay(
    environment: str | None, stored: dict[str, str], default_tenant: bool
) -> None:
    config = Config.from_env({}, lms_url=environment, testing=True)
    built = TenantSettings.overlay(config, stored, default_tenant=default_tenant)
    assert names_an_lms(config, stored, default_tenant=default_tenant) == bool(built.lms_url)
