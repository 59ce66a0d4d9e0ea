"""lms-scim: a SCIM 2.0 provisioning service for an LMS user store."""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Config


def create_app(config: Config | None = None) -> Flask:
    """The app factory: config → runtime → logs and metrics → store → errors → limits →
    blueprints → CLI. The frozen Config lives in the app's `Runtime` (`app.runtime`), never in
    module state, so two apps in one process keep their own settings."""
    from app import admin, cli, docs, errors, observability, ratelimit, runtime, scim
    from app.oauth import endpoint as oauth_endpoint
    from app.scim.request_checks import BodyLimit, refuse_nul_in_path, refuse_oversized_body
    from app.store import db

    config = config or Config.from_env()
    app = Flask(__name__)
    # MAX_BODY_BYTES is enforced by BodyLimit and refuse_oversized_body, not MAX_CONTENT_LENGTH
    # (werkzeug would cut a chunked body at the limit and pass it on).
    app.config.update(TESTING=config.testing)
    settings = runtime.Runtime.build(config)
    runtime.install(app, settings)
    observability.register(app, config)
    db.init(config)
    if config.trusted_proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.trusted_proxy_hops, x_proto=config.trusted_proxy_hops
        )
    app.wsgi_app = BodyLimit(app.wsgi_app, config.max_body_bytes)  # type: ignore[method-assign]

    @app.teardown_appcontext
    def _release_connection(_exc: BaseException | None) -> None:
        # Pooled PostgreSQL connections go back to the pool; SQLite keeps one per thread.
        db.release()

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    errors.register(app)
    app.before_request(refuse_oversized_body)
    app.before_request(refuse_nul_in_path)
    ratelimit.init(app, config)
    scim.register(app)
    oauth_endpoint.register(app)
    docs.register(app)
    admin.register(app, settings)
    cli.register(app)
    return app
