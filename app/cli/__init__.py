"""The `lms-scim` command: Flask's CLI group plus one module per command group (database,
tokens, audit, users, operators, enrolments, courses, relay, LMS targets, OAuth clients and keys,
statistics). Thin: the store (`app.store.*`) and `app.auth` do the work."""

from __future__ import annotations

from flask import Flask
from flask.cli import FlaskGroup

from app.cli import (
    audit,
    clients,
    courses,
    db,
    enrolments,
    lms,
    operators,
    relay,
    stats,
    tenants,
    tokens,
    users,
)


def register(app: Flask) -> None:
    for command in (
        db.db_group,
        tokens.tokens_group,
        audit.audit_group,
        users.users_group,
        operators.operators_group,
        stats.stats_command,
        enrolments.enrolments_group,
        courses.courses_group,
        relay.relay_group,
        lms.lms_group,
        tenants.tenants_group,
        clients.clients_group,
        clients.keys_group,
    ):
        app.cli.add_command(command)


def _create_app() -> Flask:
    from app import create_app

    return create_app()


def main() -> None:
    FlaskGroup(
        name="lms-scim",
        create_app=_create_app,
        add_default_commands=True,
        add_version_option=False,
        load_dotenv=False,
        help="lms-scim: SCIM 2.0 provisioning for the LMS.",
    )()
