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
    # argon2id hashes running at once per process (each 19 MiB and a core for ~20 ms).
    hash_concurrency: int = 1
    default_page_size: int = 100
    max_page_size: int = 1000
    filter_max_length: int = 4096
    # A filter's size in AST nodes and its nesting depth (parentheses, value paths, `not`).
    filter_max_nodes: int = 200
    filter_max_depth: int = 20
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
    # RFC 7644 §3.7.4: the most operations and bytes one POST /Bulk may carry.
    bulk_max_operations: int = 1000
    bulk_max_payload_bytes: int = 1024 * 1024
    # RFC 9865 §4 `cursorTimeout`: seconds a `nextCursor` stays valid.
    cursor_timeout_seconds: int = 3600
    # The LMS relay (`lms-scim relay run`): a Moodle-compatible REST web service and its token.
    lms_url: str | None = None
    lms_token: str | None = None
    lms_timeout_ms: int = 10_000
    # How an LMS account is matched on first sight: `email` or `username`.
    lms_match_field: str = "email"
    # Moodle `auth` plugin of accounts the relay creates (e.g. `saml2`, `oauth2` with SSO).
    lms_auth: str = "manual"
    # LMS role ids of the enrolment roles (Moodle's defaults: student 5, editing teacher 3).
    lms_role_ids: str = "student=5,teacher=3"
    # Production (README "Deploying and scaling"): pool, input bounds, rate limits, observability.
    web_threads: int = 4
    # Connections per process; None: one per gunicorn thread plus two (CLI, stragglers).
    db_pool_size: int | None = None
    db_pool_timeout: float = 10.0  # seconds a request waits for a free connection, then 503
    db_connect_timeout: int = 5
    max_json_depth: int = 32
    max_multi_values: int = 100  # values of one multi-valued attribute (emails, phoneNumbers…)
    max_members_per_operation: int = 1000  # members a POST/PUT or one PATCH op may name
    rate_limit_per_token: str = "30000/minute"  # noqa: S105 - a rate, not a secret
    rate_limit_per_address: str = "60000/minute"
    # Failed bearer tokens per client address before it gets 429s.
    bad_token_limit: str = "30/minute"  # noqa: S105 - a rate, not a secret
    ratelimit_storage_uri: str = "memory://"
    trusted_proxy_hops: int = 0  # X-Forwarded-For hops to trust for the client address
    metrics_token: str | None = None  # None: /metrics answers loopback clients only
    log_format: str = "json"
    # Where gunicorn workers share Prometheus counters (prometheus_client reads it too).
    prometheus_multiproc_dir: str | None = None

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
            hash_concurrency=get("HASH_CONCURRENCY", 1, int),
            default_page_size=get("DEFAULT_PAGE_SIZE", 100, int),
            max_page_size=get("MAX_PAGE_SIZE", 1000, int),
            filter_max_length=get("FILTER_MAX_LENGTH", 4096, int),
            filter_max_nodes=get("FILTER_MAX_NODES", 200, int),
            filter_max_depth=get("FILTER_MAX_DEPTH", 20, int),
            log_level=get("LOG_LEVEL", "INFO"),
            token_cache_seconds=get("TOKEN_CACHE_SECONDS", 5.0, float),
            audit_retention_days=get("AUDIT_RETENTION_DAYS", 365, int),
            secret_key=get("SECRET_KEY", None),
            secret_key_file=get("SECRET_KEY_FILE", "var/secret_key"),
            admin_cookie_secure=get("ADMIN_COOKIE_SECURE", None, _bool),
            bulk_max_operations=get("BULK_MAX_OPERATIONS", 1000, int),
            bulk_max_payload_bytes=get("BULK_MAX_PAYLOAD_BYTES", 1024 * 1024, int),
            cursor_timeout_seconds=get("CURSOR_TIMEOUT_SECONDS", 3600, int),
            lms_url=get("LMS_URL", None),
            lms_token=get("LMS_TOKEN", None),
            lms_timeout_ms=get("LMS_TIMEOUT_MS", 10_000, int),
            lms_match_field=get("LMS_MATCH_FIELD", "email").lower(),
            lms_auth=get("LMS_AUTH", "manual"),
            lms_role_ids=get("LMS_ROLE_IDS", "student=5,teacher=3"),
            web_threads=get("WEB_THREADS", 4, int),
            db_pool_size=get("DB_POOL_SIZE", None, int),
            db_pool_timeout=get("DB_POOL_TIMEOUT", 10.0, float),
            db_connect_timeout=get("DB_CONNECT_TIMEOUT", 5, int),
            max_json_depth=get("MAX_JSON_DEPTH", 32, int),
            max_multi_values=get("MAX_MULTI_VALUES", 100, int),
            max_members_per_operation=get("MAX_MEMBERS_PER_OPERATION", 1000, int),
            rate_limit_per_token=get("RATE_LIMIT_PER_TOKEN", "30000/minute"),
            rate_limit_per_address=get("RATE_LIMIT_PER_ADDRESS", "60000/minute"),
            bad_token_limit=get("BAD_TOKEN_LIMIT", "30/minute"),
            ratelimit_storage_uri=get("RATELIMIT_STORAGE_URI", "memory://"),
            trusted_proxy_hops=get("TRUSTED_PROXY_HOPS", 0, int),
            metrics_token=get("METRICS_TOKEN", None),
            log_format=get("LOG_FORMAT", "json"),
            prometheus_multiproc_dir=get("PROMETHEUS_MULTIPROC_DIR", None),
        )
        config = replace(config, **overrides)
        config.validate()
        return config

    def validate(self) -> None:
        if self.hash_concurrency < 1:
            raise ValueError("HASH_CONCURRENCY must be >= 1")
        if self.password_policy not in ("hash", "ignore"):
            raise ValueError("PASSWORD_POLICY must be 'hash' or 'ignore'")
        if self.group_patch_status not in (200, 204):
            raise ValueError("GROUP_PATCH_RESPONSE must be 200 or 204")
        if self.max_page_size < 1 or self.default_page_size < 0:
            raise ValueError("page sizes must be positive")
        if self.token_cache_seconds < 0 or self.audit_retention_days < 1:
            raise ValueError("TOKEN_CACHE_SECONDS must be >= 0 and AUDIT_RETENTION_DAYS >= 1")
        if min(self.filter_max_length, self.filter_max_nodes, self.filter_max_depth) < 1:
            raise ValueError("FILTER_MAX_LENGTH, FILTER_MAX_NODES, FILTER_MAX_DEPTH must be >= 1")
        if self.bulk_max_operations < 1 or self.bulk_max_payload_bytes < 1:
            raise ValueError("BULK_MAX_OPERATIONS and BULK_MAX_PAYLOAD_BYTES must be positive")
        if self.cursor_timeout_seconds < 1:
            raise ValueError("CURSOR_TIMEOUT_SECONDS must be positive")
        if self.log_format not in ("json", "text"):
            raise ValueError("LOG_FORMAT must be 'json' or 'text'")
        if min(self.max_json_depth, self.max_multi_values, self.max_members_per_operation) < 1:
            raise ValueError(
                "MAX_JSON_DEPTH, MAX_MULTI_VALUES and MAX_MEMBERS_PER_OPERATION must be >= 1"
            )
        if self.db_pool_size is not None and self.db_pool_size < 1:
            raise ValueError("DB_POOL_SIZE must be >= 1")

    def pool_size(self) -> int:
        """`DB_POOL_SIZE`, or one connection per gunicorn thread plus two."""
        return self.db_pool_size or self.web_threads + 2

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
