"""All configuration, read from the environment in one place; defaults work out of the box."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///var/lms-scim.db"


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Config:
    """Service settings; `from_env()` is the only reader of environment variables."""

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    web_concurrency: int = 2
    scim_base_url: str | None = None
    max_body_bytes: int = 1024 * 1024
    default_user_type: str = "learner"
    default_timezone: str = "UTC"
    unique_emails: bool = True
    # RFC 7643 §4.2 leaves displayName non-unique; some LMSs need one audience per name.
    unique_group_names: bool = False
    # RFC 7644 §3.5.2: 200 with the group or 204. 204 by default: Entra prefers it, Okta accepts
    # both, and a 200 would serialise the whole member list after every one-member change.
    group_patch_status: int = 204
    password_policy: str = "hash"  # noqa: S105 - a policy name, not a password
    default_page_size: int = 100
    max_page_size: int = 1000
    filter_max_length: int = 4096
    log_level: str = "INFO"
    testing: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Seconds a verified token is trusted without a query; a revocation reaches other processes
    # within this time (0: check the database on every request).
    token_cache_seconds: float = 5.0
    audit_retention_days: int = 365
    # Signs `/admin` session cookies; when unset, a key generated once is kept in this file.
    secret_key: str | None = None
    secret_key_file: str = "var/secret_key"  # noqa: S105 - a file name, not a key
    # None: Secure cookies unless HOST is a loopback address (local http).
    admin_cookie_secure: bool | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        env = os.environ if environ is None else environ

        def get(name: str, default: Any, convert: Any = str) -> Any:
            raw = env.get(name)
            return default if raw in (None, "") else convert(raw)

        config = cls(
            database_url=get("DATABASE_URL", DEFAULT_DATABASE_URL),
            host=get("HOST", "127.0.0.1"),
            port=get("PORT", 8000, int),
            web_concurrency=get("WEB_CONCURRENCY", 2, int),
            scim_base_url=get("SCIM_BASE_URL", None),
            max_body_bytes=get("MAX_BODY_BYTES", 1024 * 1024, int),
            default_user_type=get("DEFAULT_USER_TYPE", "learner"),
            default_timezone=get("DEFAULT_TIMEZONE", "UTC"),
            unique_emails=get("UNIQUE_EMAILS", True, _bool),
            unique_group_names=get("UNIQUE_GROUP_NAMES", False, _bool),
            group_patch_status=get("GROUP_PATCH_RESPONSE", 204, int),
            password_policy=get("PASSWORD_POLICY", "hash"),
            default_page_size=get("DEFAULT_PAGE_SIZE", 100, int),
            max_page_size=get("MAX_PAGE_SIZE", 1000, int),
            filter_max_length=get("FILTER_MAX_LENGTH", 4096, int),
            log_level=get("LOG_LEVEL", "INFO"),
            token_cache_seconds=get("TOKEN_CACHE_SECONDS", 5.0, float),
            audit_retention_days=get("AUDIT_RETENTION_DAYS", 365, int),
            secret_key=get("SECRET_KEY", None),
            secret_key_file=get("SECRET_KEY_FILE", "var/secret_key"),
            admin_cookie_secure=get("ADMIN_COOKIE_SECURE", None, _bool),
        )
        config = replace(config, **overrides)
        config.validate()
        return config

    def validate(self) -> None:
        if self.password_policy not in ("hash", "ignore"):
            raise ValueError("PASSWORD_POLICY must be 'hash' or 'ignore'")
        if self.group_patch_status not in (200, 204):
            raise ValueError("GROUP_PATCH_RESPONSE must be 200 or 204")
        if self.max_page_size < 1 or self.default_page_size < 0:
            raise ValueError("page sizes must be positive")
        if self.token_cache_seconds < 0 or self.audit_retention_days < 1:
            raise ValueError("TOKEN_CACHE_SECONDS must be >= 0 and AUDIT_RETENTION_DAYS >= 1")

    def sqlite_path(self) -> Path | None:
        """The file an embedded SQLite URL points at (so its folder can be created)."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        path = self.database_url[len(prefix) :].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)

    def cookie_secure(self) -> bool:
        """`ADMIN_COOKIE_SECURE`, or by default true unless the service listens on loopback only
        (an operator at the machine uses plain http; anything reachable from outside is behind
        TLS)."""
        if self.admin_cookie_secure is not None:
            return self.admin_cookie_secure
        return self.host not in ("127.0.0.1", "::1", "localhost")
