"""The `lms-scim` command: one module per command group (database, tokens, audit, users,
operators, enrolments, courses, relay, LMS targets, OAuth clients and keys, statistics) on a
Flask CLI group that loads the app. Thin: the store (`app.store.*`) and `app.auth` do the work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
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


# Flask's own options: the app is always lms-scim's, configured by the environment.
_FLASK_OPTIONS = ("env_file", "app", "debug")


class LmsScimGroup(FlaskGroup):
    """Flask's group (it loads the app and pushes its context for each command) showing
    lms-scim's commands only: not Flask's `run`, `shell` and `routes` (gunicorn serves; a shell
    is `python`), nor its `--app`, `--env-file` and `--debug` options, nor plugins' commands."""

    def __init__(self, create_app: Callable[[], Flask] = _create_app, **extra: Any) -> None:
        super().__init__(
            name="lms-scim",
            create_app=create_app,
            add_default_commands=False,
            add_version_option=False,
            load_dotenv=False,
            set_debug_flag=False,
            help="lms-scim: SCIM 2.0 provisioning for the LMS.",
            # Wide enough that no command's summary is cut short on an 80-column terminal.
            context_settings={"max_content_width": 100},
            **extra,
        )
        self.params = [p for p in self.params if p.name not in _FLASK_OPTIONS]

    def _load_plugin_commands(self) -> None:
        """Other packages' `flask.commands` are not lms-scim's."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Flask's version reads --app and --env-file from FLASK_* variables first.
        return click.Group.parse_args(self, ctx, args)


def main() -> None:
    LmsScimGroup()()
