"""All configuration, read from the environment in one place; defaults work out of the box."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.secretbox import SealedSecret

DEFAULT_DATABASE_URL = "sqlite:///var/lms-scim.db"


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(text: str) -> bool:
    """`true`/`false` and their usual spellings; anything else is a typo, refused rather than
    read as false."""
    word = text.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError(f"{text!r} is not a boolean (true/false, yes/no, on/off, 1/0)")
    return word in _TRUE


def _lower(text: str) -> str:
    return text.strip().lower()


def _role_ids(text: str) -> tuple[tuple[str, int], ...]:
    """`student=5,teacher=3` → (("student", 5), ("teacher", 3))."""
    try:
        pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
        return tuple((name.strip(), int(number)) for name, number in pairs)
    except ValueError:
        raise ValueError("LMS_ROLE_IDS must look like 'student=5,teacher=3'") from None


def _comma_list(text: str) -> tuple[str, ...]:
    """`a, b,,c` → ("a", "b", "c")."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Entra ID's "custom application" template: the audience of the tokens it signs for a
# non-gallery SCIM app when its "Secret Token" is left blank.
ENTRA_DEFAULT_AUDIENCE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"


def parse_directory_id(text: str) -> str:
    """An Entra directory (tenant) id, lower-cased: it is compared with the one in a token's
    `iss`, which Entra writes in lower case."""
    guid = text.strip().lower()
    if not _GUID.fullmatch(guid):
        raise ValueError(f"{text!r} is not a directory id (a GUID: 8-4-4-4-12 hex digits)")
    return guid


def _https_url(text: str) -> str:
    """A URL fetched by the server: https only (a key set must not be read over plain http)."""
    url = text.strip()
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise ValueError(f"{text!r} is not an https:// URL")
    return url


def env(name: str, default: Any, parse: Callable[[str], Any] = str, *, secret: bool = False) -> Any:
    """A setting read from the environment variable `name` with `parse`; `default` when the
    variable is unset or empty. The one place each variable, its default and parser are named.
    A `secret` one is left out of the Config's repr, so logging a Config never shows it."""
    return field(default=default, repr=not secret, metadata={"env": name, "parse": parse})


@dataclass(frozen=True)
class Config:
    """Service settings; `from_env()` is the only reader of environment variables.

    `create_app` keeps one frozen Config per app (`app.runtime`); nothing below it reads
    settings from anywhere else.
    """

    database_url: str = env("DATABASE_URL", DEFAULT_DATABASE_URL)
    host: str = env("HOST", "127.0.0.1")
    port: int = env("PORT", 8000, int)
    web_concurrency: int = env("WEB_CONCURRENCY", 2, int)
    scim_base_url: str | None = env("SCIM_BASE_URL", None)
    max_body_bytes: int = env("MAX_BODY_BYTES", 1024 * 1024, int)
    default_user_type: str = env("DEFAULT_USER_TYPE", "learner")
    default_timezone: str = env("DEFAULT_TIMEZONE", "UTC")
    unique_emails: bool = env("UNIQUE_EMAILS", True, _bool)
    # RFC 7643 §4.2 leaves displayName non-unique; some LMSs need one audience per name.
    unique_group_names: bool = env("UNIQUE_GROUP_NAMES", False, _bool)
    # RFC 7644 §3.5.2: 200 with the group or 204. 204 by default: Entra prefers it, Okta accepts
    # both, and a 200 would serialise the whole member list after every one-member change.
    group_patch_status: int = env("GROUP_PATCH_RESPONSE", 204, int)
    password_policy: str = env("PASSWORD_POLICY", "hash")
    # argon2id hashes running at once per process (each 19 MiB and a core for ~20 ms).
    hash_concurrency: int = env("HASH_CONCURRENCY", 1, int)
    default_page_size: int = env("DEFAULT_PAGE_SIZE", 100, int)
    max_page_size: int = env("MAX_PAGE_SIZE", 1000, int)
    filter_max_length: int = env("FILTER_MAX_LENGTH", 4096, int)
    # A filter's size in AST nodes and its nesting depth (parentheses, value paths, `not`).
    filter_max_nodes: int = env("FILTER_MAX_NODES", 200, int)
    filter_max_depth: int = env("FILTER_MAX_DEPTH", 20, int)
    log_level: str = env("LOG_LEVEL", "INFO")
    testing: bool = False
    # Seconds a verified token is trusted without a query; a revocation reaches other processes
    # within this time (0: check the database on every request).
    token_cache_seconds: float = env("TOKEN_CACHE_SECONDS", 5.0, float)
    audit_retention_days: int = env("AUDIT_RETENTION_DAYS", 365, int)
    # Signs `/admin` session cookies and SCIM cursors; when unset, a key generated once is kept
    # in SECRET_KEY_FILE (`runtime.resolve_secret_key`). Secrets kept in the database are
    # encrypted under a key derived from it (`app.secretbox`).
    secret_key: str | None = env("SECRET_KEY", None, secret=True)
    # Earlier SECRET_KEYs, comma-separated: secrets sealed under them still open, and are
    # resealed under SECRET_KEY where they are read (`SecretBox.open`); cookies and cursors are
    # checked with SECRET_KEY only.
    secret_key_previous: tuple[str, ...] = env("SECRET_KEY_PREVIOUS", (), _comma_list, secret=True)
    secret_key_file: str = env("SECRET_KEY_FILE", "var/secret_key")
    # None: Secure cookies unless HOST is a loopback address (local http); a request that came
    # over HTTPS (directly, or as a trusted proxy says) always gets a Secure cookie.
    admin_cookie_secure: bool | None = env("ADMIN_COOKIE_SECURE", None, _bool)
    # An `/admin` session ends this long after its sign-in however active, and after this long
    # without a request (and at sign-out, a password change, `operators disable`).
    admin_session_hours: int = env("ADMIN_SESSION_HOURS", 8, int)
    admin_idle_minutes: int = env("ADMIN_IDLE_MINUTES", 30, int)
    # `/admin` sign-in attempts per client address, and failed ones per typed name (whether an
    # operator has it or not): over either, 429 before any password is checked.
    admin_signin_per_address: str = env("ADMIN_SIGNIN_PER_ADDRESS", "20/minute")
    admin_signin_failures_per_name: str = env("ADMIN_SIGNIN_FAILURES_PER_NAME", "5/15 minutes")
    # RFC 7644 §3.7.4: the most operations and bytes one POST /Bulk may carry.
    bulk_max_operations: int = env("BULK_MAX_OPERATIONS", 1000, int)
    bulk_max_payload_bytes: int = env("BULK_MAX_PAYLOAD_BYTES", 1024 * 1024, int)
    # RFC 9865 §4 `cursorTimeout`: seconds a `nextCursor` stays valid.
    cursor_timeout_seconds: int = env("CURSOR_TIMEOUT_SECONDS", 3600, int)
    # The LMS relay (`lms-scim relay run`): a Moodle-compatible REST web service and its token.
    lms_url: str | None = env("LMS_URL", None)
    lms_token: str | None = env("LMS_TOKEN", None, secret=True)
    lms_timeout_ms: int = env("LMS_TIMEOUT_MS", 10_000, int)
    # How an LMS account is matched on first sight: `email` or `username`.
    lms_match_field: str = env("LMS_MATCH_FIELD", "email", _lower)
    # Moodle `auth` plugin of accounts the relay creates (e.g. `saml2`, `oauth2` with SSO).
    lms_auth: str = env("LMS_AUTH", "manual")
    # LMS role ids of the enrolment roles (Moodle's defaults: student 5, editing teacher 3).
    lms_role_ids: tuple[tuple[str, int], ...] = env(
        "LMS_ROLE_IDS", (("student", 5), ("teacher", 3)), _role_ids
    )
    # Tokens that Entra ID signs itself (its "Secret Token" left blank; `app.oauth.entra`): the
    # directory whose tokens are accepted, their audience, and where its keys are published
    # (None: Microsoft's key set for that directory).
    entra_tenant_id: str | None = env("ENTRA_TENANT_ID", None, parse_directory_id)
    entra_audience: str = env("ENTRA_AUDIENCE", ENTRA_DEFAULT_AUDIENCE, str.strip)
    entra_jwks_url: str | None = env("ENTRA_JWKS_URL", None, _https_url)
    # Production (README "Deploying and scaling"): pool, input bounds, rate limits, observability.
    web_threads: int = env("WEB_THREADS", 4, int)
    # Connections per process; None: one per gunicorn thread plus two (CLI, stragglers).
    db_pool_size: int | None = env("DB_POOL_SIZE", None, int)
    # Seconds a request waits for a free connection, then 503.
    db_pool_timeout: float = env("DB_POOL_TIMEOUT", 10.0, float)
    db_connect_timeout: int = env("DB_CONNECT_TIMEOUT", 5, int)
    # PostgreSQL: statements the service sends again and again are prepared on the server once
    # per connection (`app.store.db.CheckedPool`). Off behind a pooler that hands one session's
    # statements to another (PgBouncer in transaction mode before 1.21).
    db_server_prepared: bool = env("DB_SERVER_PREPARED", True, _bool)
    max_json_depth: int = env("MAX_JSON_DEPTH", 32, int)
    # Values of one multi-valued attribute (emails, phoneNumbers…) in one request.
    max_multi_values: int = env("MAX_MULTI_VALUES", 100, int)
    # Members a POST/PUT or one PATCH operation may name.
    max_members_per_operation: int = env("MAX_MEMBERS_PER_OPERATION", 1000, int)
    rate_limit_per_token: str = env("RATE_LIMIT_PER_TOKEN", "30000/minute")
    rate_limit_per_address: str = env("RATE_LIMIT_PER_ADDRESS", "60000/minute")
    # Failed bearer tokens per client address before it gets 429s.
    bad_token_limit: str = env("BAD_TOKEN_LIMIT", "30/minute")
    ratelimit_storage_uri: str = env("RATELIMIT_STORAGE_URI", "memory://")
    # X-Forwarded-For hops to trust for the client address.
    trusted_proxy_hops: int = env("TRUSTED_PROXY_HOPS", 0, int)
    # None: /metrics answers loopback clients only.
    metrics_token: str | None = env("METRICS_TOKEN", None, secret=True)
    log_format: str = env("LOG_FORMAT", "json")
    # A `tenant` label on the request and provisioning counters: one series per tenant and
    # route, so only where the tenants are few (off: the counters are as before).
    metrics_tenant_label: bool = env("METRICS_TENANT_LABEL", False, _bool)
    # Where gunicorn workers share Prometheus counters (prometheus_client reads it too).
    prometheus_multiproc_dir: str | None = env("PROMETHEUS_MULTIPROC_DIR", None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """The settings from `environ` (default: the process environment), then `overrides`."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = setting.metadata.get("env")
            raw = source.get(name) if name else None
            if raw not in (None, ""):
                values[setting.name] = setting.metadata["parse"](raw)
        config = cls(**{**values, **overrides})
        config.validate()
        return config

    @classmethod
    def variables(cls) -> dict[str, Any]:
        """Each environment variable and its default (for docs and `lms-scim config`)."""
        return {f.metadata["env"]: f.default for f in fields(cls) if "env" in f.metadata}

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
        if self.lms_match_field not in ("email", "username"):
            raise ValueError("LMS_MATCH_FIELD must be 'email' or 'username'")
        if not self.entra_audience:
            raise ValueError("ENTRA_AUDIENCE must not be empty")
        if min(self.admin_session_hours, self.admin_idle_minutes) < 1:
            raise ValueError("ADMIN_SESSION_HOURS and ADMIN_IDLE_MINUTES must be >= 1")

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
        TLS). A request that arrived over HTTPS gets a Secure cookie whatever this says
        (`app.admin.sessions`)."""
        if self.admin_cookie_secure is not None:
            return self.admin_cookie_secure
        return self.host not in ("127.0.0.1", "::1", "localhost")


# The settings that belong to an organisation: a tenant may set them itself (`tenants set`);
# the environment's values are the defaults of every tenant and the settings of the default one.
TENANT_VARIABLES = (
    "DEFAULT_USER_TYPE",
    "DEFAULT_TIMEZONE",
    "UNIQUE_EMAILS",
    "UNIQUE_GROUP_NAMES",
    "GROUP_PATCH_RESPONSE",
    "PASSWORD_POLICY",
    "LMS_URL",
    "LMS_TOKEN",
    "LMS_MATCH_FIELD",
    "LMS_AUTH",
    "LMS_ROLE_IDS",
    "ENTRA_TENANT_ID",
    "ENTRA_AUDIENCE",
    "ENTRA_JWKS_URL",
)
_BY_VARIABLE = {f.metadata["env"]: f for f in fields(Config) if "env" in f.metadata}

# Where a tenant's users go is its own: a tenant other than the default one never inherits the
# environment's LMS site and token (that would push its users into another organisation's LMS);
# without its own, it has no relay. Nor the Entra directory whose tokens it accepts (that would
# let the default tenant's directory provision into it) and where that directory's keys are.
OWN_ONLY_VARIABLES = ("LMS_URL", "LMS_TOKEN", "ENTRA_TENANT_ID", "ENTRA_JWKS_URL")


def names_an_lms(config: Config, stored: Mapping[str, str], *, default_tenant: bool) -> bool:
    """Whether a tenant's settings name an LMS site (`LMS_URL`), as `TenantSettings.overlay`
    would have it, without building them: its own value, else (the default tenant only) the
    environment's."""
    own = stored.get("LMS_URL")
    return bool(own) or (default_tenant and bool(config.lms_url))


def tenant_field(variable: str) -> str:
    """The Config field of a per-tenant environment variable; ValueError for any other name."""
    if variable not in TENANT_VARIABLES:
        raise ValueError(
            f"{variable!r} is not a per-tenant setting; these are: {', '.join(TENANT_VARIABLES)}"
        )
    return _BY_VARIABLE[variable].name


@dataclass(frozen=True)
class TenantSettings:
    """What one tenant's requests run under: the app's `Config` overlaid with the settings the
    tenant stored itself. Built by `overlay` only, so every value went through the same parser
    and checks as the environment's (one home per rule)."""

    default_user_type: str
    default_timezone: str
    unique_emails: bool
    unique_group_names: bool
    group_patch_status: int
    password_policy: str
    lms_url: str | None
    # The environment's token as given; a tenant's own stays sealed until used (`Runtime`).
    lms_token: str | SealedSecret | None = field(repr=False)
    lms_match_field: str
    lms_auth: str
    lms_role_ids: tuple[tuple[str, int], ...]
    entra_tenant_id: str | None
    entra_audience: str
    entra_jwks_url: str | None
    # The variables the tenant set itself (the others come from the environment).
    own: frozenset[str] = frozenset()

    @classmethod
    def overlay(
        cls, config: Config, stored: Mapping[str, str], *, default_tenant: bool = True
    ) -> TenantSettings:
        """`config` with each `stored` variable (env name → text, as in the environment)
        parsed by its Config parser; an empty text means the default. ValueError, naming the
        variable, for an unknown name or a bad value. Only the default tenant inherits the
        `OWN_ONLY_VARIABLES`."""
        values: dict[str, Any] = (
            {} if default_tenant else {_BY_VARIABLE[v].name: None for v in OWN_ONLY_VARIABLES}
        )
        for variable, raw in stored.items():
            name = tenant_field(variable)
            if raw in (None, ""):
                continue
            try:
                values[name] = _BY_VARIABLE[variable].metadata["parse"](raw)
            except ValueError as exc:
                raise ValueError(f"{variable}: {exc}") from None
        merged = replace(config, **values)
        merged.validate()
        own = frozenset(v for v, raw in stored.items() if raw not in (None, ""))
        return cls(
            **{f.name: getattr(merged, f.name) for f in fields(cls) if f.name != "own"}, own=own
        )

    def value(self, variable: str) -> Any:
        """The value of a per-tenant variable, by its environment name."""
        return getattr(self, tenant_field(variable))
