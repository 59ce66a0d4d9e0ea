"""lms-scim: a SCIM 2.0 provisioning service for an LMS user store."""

from __future__ import annotations

import logging

from flask import Flask, Response

from app.config import Config


def create_app(config: Config | None = None) -> Flask:
    """The app factory: config → store → errors → blueprints → CLI."""
    from app import admin, auth, cli, errors, scim
    from app.store import db, users

    config = config or Config.from_env()
    app = Flask(__name__)
    app.config.update(SCIM=config, MAX_CONTENT_LENGTH=config.max_body_bytes, TESTING=config.testing)
    logging.basicConfig(level=config.log_level)
    database = db.init(config)
    users.settings.unique_emails = config.unique_emails
    auth.settings.cache_seconds = config.token_cache_seconds

    @app.teardown_appcontext
    def _release_connection(_exc: BaseException | None) -> None:
        # Pooled PostgreSQL connections go back to the pool; SQLite keeps one per thread.
        if db.is_postgres() and not database.is_closed():
            database.close()

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    errors.register(app)
    scim.register(app)
    admin.register(app)
    cli.register(app)
    return app
