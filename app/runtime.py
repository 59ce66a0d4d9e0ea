"""What one app holds besides Flask: its frozen `Config` and the services built from it.

`create_app` builds one `Runtime` and keeps it in `app.extensions`. Request and CLI code read it
through `current()` and pass the settings the lower layers need as arguments; nothing below the
HTTP and CLI layers reads settings from anywhere else, so two apps in one process (each with its
own settings) never see each other's.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, current_app

from app.auth import TokenCache
from app.config import Config
from app.marshal import Limits as InputLimits
from app.passwords import Hasher
from app.secretbox import SecretBox
from app.store.tenant_names import TenantNames

EXTENSION = "lms_scim"
# `/admin` sign-ins hash apart from SCIM writes: one at a time per process, and a sign-in that
# finds the slot taken this long is refused (503) instead of queueing.
SIGN_IN_HASHES = 1
SIGN_IN_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class Runtime:
    """The settings of one app and the per-app state that goes with them."""

    config: Config
    # Signs `/admin` session cookies and SCIM cursors (`resolve_secret_key`).
    secret_key: str = field(repr=False)
    # Seals and opens the secrets kept in the database (`app.secretbox`).
    secret_box: SecretBox
    hasher: Hasher
    # argon2id for `/admin` sign-ins: a budget of their own, so they never delay SCIM writes.
    sign_in_hasher: Hasher
    tokens: TokenCache
    input_limits: InputLimits
    # Tenant ids ↔ slugs for tenant base URLs and log lines, without a query per request.
    tenant_names: TenantNames = field(default_factory=TenantNames)

    @classmethod
    def build(cls, config: Config) -> Runtime:
        secret_key = resolve_secret_key(config)
        return cls(
            config=config,
            secret_key=secret_key,
            secret_box=SecretBox(secret_key, config.secret_key_previous),
            hasher=Hasher(config.hash_concurrency),
            sign_in_hasher=Hasher(SIGN_IN_HASHES, wait=SIGN_IN_WAIT_SECONDS),
            tokens=TokenCache(config.token_cache_seconds),
            input_limits=InputLimits(
                multi_values=config.max_multi_values,
                members=config.max_members_per_operation,
            ),
        )


def install(app: Flask, runtime: Runtime) -> None:
    app.extensions[EXTENSION] = runtime


def of(app: Flask) -> Runtime:
    """The runtime of `app` (tests, and code that holds the app itself)."""
    return app.extensions[EXTENSION]


def current() -> Runtime:
    """The runtime of the app handling this request or CLI command."""
    return of(current_app)


def resolve_secret_key(config: Config) -> str:
    """`SECRET_KEY`, else a key generated once and kept in `SECRET_KEY_FILE` (mode 0600), so a
    restart keeps operators signed in and cursors valid (tests get a throwaway key). Workers
    starting together race benignly: the first `link` wins and everyone reads the winner's key."""
    if config.secret_key:
        return config.secret_key
    if config.testing:  # tests never write into the checkout's var/
        return secrets.token_urlsafe(48)
    path = Path(config.secret_key_file)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # var/: the owner's only
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
