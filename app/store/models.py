"""The LMS user store's tables.

Case-insensitive uniqueness (userName, e-mail) is enforced by unique indexes on normalised
`*_key` columns, never by check-then-insert, which races (RFC 7643 §2.4 `uniqueness: server`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee

from app.store import tenancy
from app.store.db import database

# Longest string accepted in an indexed column: PostgreSQL's btree entries are limited to about
# 2,700 bytes, and 512 characters of UTF-8 stay below that.
MAX_INDEXED_LENGTH = 512


def utcnow() -> dt.datetime:
    """Naive UTC, to the millisecond — the same on SQLite and PostgreSQL."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Tenant(BaseModel):
    """An organisation with its own users, groups, tokens and settings (m0009). `settings` is
    a JSON object of the settings it sets itself; the rest come from the environment."""

    slug = peewee.CharField(max_length=63, unique=True)
    name = peewee.TextField()
    settings = peewee.TextField(null=True)
    disabled_at = peewee.DateTimeField(null=True)
    created = peewee.DateTimeField(default=utcnow)


def same_tenant(column: str, parent: str) -> peewee.SQL:
    """The composite key (tenant_id, column) → parent (tenant_id, id) (m0011): the database
    refuses a row that points at a user or group of another tenant, whatever wrote it."""
    return peewee.SQL(
        f'FOREIGN KEY ("tenant_id", "{column}") REFERENCES "{parent}" ("tenant_id", "id") '
        "ON DELETE CASCADE"
    )


class TenantModel(BaseModel):
    """A table whose rows belong to a tenant. Every SELECT, UPDATE and DELETE made through the
    model is limited to the tenant at hand (`tenancy.current`), so a query that forgets to say
    which tenant still sees only its own; a new row belongs to that tenant. The database's own
    default (1) serves a writer that knows no tenants."""

    tenant_id = peewee.IntegerField(
        default=tenancy.owner, constraints=[peewee.SQL(f"DEFAULT {tenancy.DEFAULT_TENANT}")]
    )

    @classmethod
    def select(cls, *fields: Any) -> peewee.ModelSelect:
        return _scoped(cls, super().select(*fields))

    @classmethod
    def update(cls, __data: Any = None, **update: Any) -> peewee.ModelUpdate:
        return _scoped(cls, super().update(__data, **update))

    @classmethod
    def delete(cls) -> peewee.ModelDelete:
        return _scoped(cls, super().delete())


# (model, tenant id) -> the condition `tenant_id = <id>`: a peewee expression is never changed
# once built (`.where()` and `&` make new ones), so one serves every query of that tenant.
_TENANT_IS: dict[tuple[type[TenantModel], int], peewee.Expression] = {}


def _scoped(model: type[TenantModel], query: Any) -> Any:
    tenant = tenancy.current()
    if tenant is None:
        return query
    condition = _TENANT_IS.get((model, tenant))
    if condition is None:
        condition = _TENANT_IS[(model, tenant)] = model.tenant_id == tenant
    # The query was made just now and has no WHERE yet: set it in place (`.where()` would
    # copy the whole query first).
    query._where = condition
    return query


class User(TenantModel):
    class Meta:
        table_name = "lms_user"
        indexes = (
            (("tenant_id", "user_name_key"), True),
            (("tenant_id", "id"), True),
            (("tenant_id", "external_id"), False),
        )

    id = peewee.CharField(max_length=32, primary_key=True)
    user_name = peewee.TextField()
    user_name_key = peewee.TextField()
    external_id = peewee.TextField(null=True)
    formatted_name = peewee.TextField(null=True)
    family_name = peewee.TextField(null=True)
    given_name = peewee.TextField(null=True)
    middle_name = peewee.TextField(null=True)
    honorific_prefix = peewee.TextField(null=True)
    honorific_suffix = peewee.TextField(null=True)
    display_name = peewee.TextField(null=True)
    nick_name = peewee.TextField(null=True)
    profile_url = peewee.TextField(null=True)
    title = peewee.TextField(null=True)
    user_type = peewee.TextField(null=True)
    preferred_language = peewee.TextField(null=True)
    locale = peewee.TextField(null=True)
    timezone = peewee.TextField(null=True)
    active = peewee.BooleanField(default=True, index=True)
    password_hash = peewee.TextField(null=True)
    employee_number = peewee.TextField(null=True)
    cost_center = peewee.TextField(null=True)
    organization = peewee.TextField(null=True)
    division = peewee.TextField(null=True)
    department = peewee.TextField(null=True)
    manager_id = peewee.TextField(null=True, index=True)
    branch = peewee.TextField(null=True)
    job_role = peewee.TextField(null=True)
    hire_date = peewee.DateTimeField(null=True)
    created = peewee.DateTimeField(default=utcnow, index=True)
    last_modified = peewee.DateTimeField(default=utcnow, index=True)
    version = peewee.IntegerField(default=1)


class UserValue(TenantModel):
    """One element of a multi-valued attribute with value/type/primary/display sub-attributes.

    `value_key` is the value as filters compare it (lower-cased by `scim_schemas.fold` unless
    the attribute is caseExact); `unique_key` is set only where the value must be unique across
    users (e-mails, by default).
    """

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="values")
    attr = peewee.CharField(max_length=32)
    position = peewee.IntegerField()
    value = peewee.TextField(null=True)
    value_key = peewee.TextField(null=True)
    type = peewee.TextField(null=True)
    primary = peewee.BooleanField(null=True)  # true or NULL: `primary: false` means "not primary"
    display = peewee.TextField(null=True)
    unique_key = peewee.TextField(null=True)

    class Meta:
        indexes = (
            (("tenant_id", "attr", "value_key"), False),
            (("tenant_id", "unique_key"), True),
            (("user", "attr", "position"), True),
        )
        constraints = (same_tenant("user_id", "lms_user"),)


class UserAddress(TenantModel):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="address_rows")
    position = peewee.IntegerField()
    formatted = peewee.TextField(null=True)
    street_address = peewee.TextField(null=True)
    locality = peewee.TextField(null=True)
    region = peewee.TextField(null=True)
    postal_code = peewee.TextField(null=True)
    country = peewee.TextField(null=True)
    type = peewee.TextField(null=True)
    primary = peewee.BooleanField(null=True)  # true or NULL: `primary: false` means "not primary"

    class Meta:
        indexes = ((("user", "position"), True),)
        constraints = (same_tenant("user_id", "lms_user"),)


class Group(TenantModel):
    class Meta:
        table_name = "lms_group"
        indexes = (
            (("tenant_id", "display_name_key"), False),
            (("tenant_id", "unique_name_key"), True),
            (("tenant_id", "external_id"), False),
            (("tenant_id", "id"), True),
        )

    id = peewee.CharField(max_length=32, primary_key=True)
    display_name = peewee.TextField()
    display_name_key = peewee.TextField()
    # The folded displayName when UNIQUE_GROUP_NAMES is on, else NULL: its unique index makes the
    # database refuse a second group of that name in the tenant (RFC 7643 §2.4), and NULLs never
    # clash (m0002).
    unique_name_key = peewee.TextField(null=True)
    external_id = peewee.TextField(null=True)
    created = peewee.DateTimeField(default=utcnow, index=True)
    last_modified = peewee.DateTimeField(default=utcnow, index=True)
    version = peewee.IntegerField(default=1)
    # True while an enrolment rule of this group keeps previous enrolments: read with the locked
    # row, it spares member removals a query when (as usually) no rule keeps anything (m0004).
    keeps_enrolments = peewee.BooleanField(default=False)


class Membership(TenantModel):
    group = peewee.ForeignKeyField(Group, on_delete="CASCADE", backref="memberships")
    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="memberships")

    class Meta:
        primary_key = peewee.CompositeKey("group", "user")
        indexes = ((("user", "group"), False),)
        constraints = (
            same_tenant("group_id", "lms_group"),
            same_tenant("user_id", "lms_user"),
        )


class LmsTarget(TenantModel):
    """An LMS site the relay keeps in step for the tenant (m0014). Every tenant has `default`,
    the row `from_settings`: its site, token, match field, auth plugin and role ids are the
    tenant's `LMS_*` settings, read when the relay delivers (so an install configured by the
    environment changes nothing). Another target stores its own: `token` sealed
    (`app.secretbox`, bound to the tenant and target), and NULL `match_field`, `auth` or
    `role_ids` (a JSON object) fall back to the tenant's settings. `restricted`: only members of
    its audience groups (`LmsTargetAudience`) go there; kept apart from the audience rows so that
    a target whose groups are all deleted receives nobody, never everybody."""

    class Meta:
        table_name = "lms_target"
        indexes = (
            (("tenant_id", "name"), True),
            (("tenant_id", "id"), True),
        )

    name = peewee.CharField(max_length=64)
    url = peewee.TextField(null=True)
    token = peewee.TextField(null=True)
    match_field = peewee.CharField(max_length=16, null=True)
    auth = peewee.TextField(null=True)
    role_ids = peewee.TextField(null=True)
    restricted = peewee.BooleanField(default=False)
    from_settings = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)
    # m0018: off, users no enrolment rule of this target gives are not created there.
    sync_unenrolled = peewee.BooleanField(default=True, constraints=[peewee.SQL("DEFAULT TRUE")])
    # m0022: on, only its chosen groups (`LmsTargetCohort`) become cohorts there — none once
    # they are all deleted; off, every group does.
    chosen_cohorts = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])


class LmsTargetAction(TenantModel):
    """Which relay actions (`create`, `update`, `deactivate`) run on a target for users of one
    userType (m0018); a type without a row gets all three. `user_type_key` is the type's
    identity key (userType is not caseExact, RFC 7643 §4.1.1); `actions` a comma list, empty
    for none."""

    class Meta:
        table_name = "lms_target_action"
        primary_key = peewee.CompositeKey("target_id", "user_type_key")
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)

    target_id = peewee.IntegerField()
    user_type_key = peewee.CharField(max_length=64)
    user_type = peewee.CharField(max_length=64)
    actions = peewee.CharField(max_length=32)


class LmsUserHold(TenantModel):
    """A user the relay did not create on a target, and why (m0018): their userType may not be
    created there, or (sync_unenrolled off) no enrolment rule gives them anything. Cleared when
    an account is linked; then their cohorts and enrolments catch up. No key to the user: the
    relay forgets the row when the user goes."""

    class Meta:
        table_name = "lms_user_hold"
        primary_key = peewee.CompositeKey("tenant_id", "target_id", "user_id")
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)

    target_id = peewee.IntegerField()
    user_id = peewee.CharField(max_length=32)
    reason = peewee.TextField()
    at = peewee.DateTimeField(default=utcnow)


class LmsTargetAudience(TenantModel):
    """A group whose members a restricted target receives (m0014)."""

    class Meta:
        table_name = "lms_target_audience"
        primary_key = peewee.CompositeKey("target_id", "group")
        constraints = (
            same_tenant("target_id", "lms_target"),
            same_tenant("group_id", "lms_group"),
        )
        depends_on = (LmsTarget,)

    target_id = peewee.IntegerField()
    group = peewee.ForeignKeyField(Group, on_delete="CASCADE", backref="lms_audiences")


class LmsTargetCohort(TenantModel):
    """A group a target with `chosen_cohorts` receives as a cohort (m0022)."""

    class Meta:
        table_name = "lms_target_cohort"
        primary_key = peewee.CompositeKey("target_id", "group")
        constraints = (
            same_tenant("target_id", "lms_target"),
            same_tenant("group_id", "lms_group"),
        )
        depends_on = (LmsTarget,)

    target_id = peewee.IntegerField()
    group = peewee.ForeignKeyField(Group, on_delete="CASCADE", backref="lms_cohort_targets")


def target_column() -> peewee.IntegerField:
    """The LMS target a row is for (m0014), with the composite key (tenant_id, target_id) →
    lms_target (tenant_id, id) beside it. The database's default (1, the default tenant's
    `default` target) serves a writer of the release before, during a deploy."""
    return peewee.IntegerField(constraints=[peewee.SQL("DEFAULT 1")])


class ApiToken(TenantModel):
    """A bearer token of one tenant, stored only as the SHA-256 of its secret."""

    class Meta:
        indexes = ((("tenant_id", "name"), False),)

    name = peewee.TextField()
    prefix = peewee.TextField()
    token_hash = peewee.CharField(max_length=64, unique=True)
    read_only = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    # Set when `tokens rotate` replaced this token; it then works until `expires_at` (the grace).
    rotated_at = peewee.DateTimeField(null=True)


class AuditEvent(TenantModel):
    """What happened to whom, written in the same transaction as the change. Never secrets."""

    class Meta:
        indexes = ((("tenant_id", "at"), False),)

    at = peewee.DateTimeField(default=utcnow, index=True)
    token_name = peewee.TextField(null=True)
    request_id = peewee.TextField(null=True)
    resource_type = peewee.CharField(max_length=16)
    resource_id = peewee.CharField(max_length=32, index=True)
    operation = peewee.CharField(max_length=32)
    changes = peewee.TextField(null=True)


class Operator(BaseModel):
    """A person who may sign in to `/admin` (never an IdP: SCIM tokens cannot sign in there)."""

    name = peewee.TextField(unique=True)
    password_hash = peewee.TextField()
    created = peewee.DateTimeField(default=utcnow)
    last_sign_in_at = peewee.DateTimeField(null=True)
    # Unused since m0008: the back-off moved to the rate limiter, which treats every name alike
    # (a name no operator has backs off the same way). Kept so that the release before keeps
    # working during a deploy; a later migration drops them.
    failed_attempts = peewee.IntegerField(default=0)
    locked_until = peewee.DateTimeField(null=True)
    # Set by `operators disable`: no sign-in, no session (m0008).
    disabled_at = peewee.DateTimeField(null=True)
    # The one tenant this operator sees; NULL: every tenant (m0009).
    tenant_id = peewee.IntegerField(null=True)


class AdminSession(BaseModel):
    """A signed-in `/admin` session (m0008). The cookie carries a random secret; `id` is its
    SHA-256, so this table cannot be replayed as cookies. A session is live until `ended`
    (sign-out, a password change, `operators disable`) or until the lifetimes in the `Config`
    run out, counted from `created` and from `last_seen`."""

    id = peewee.CharField(max_length=64, primary_key=True)
    operator = peewee.ForeignKeyField(Operator, on_delete="CASCADE", backref="sessions")
    created = peewee.DateTimeField(default=utcnow)
    last_seen = peewee.DateTimeField(default=utcnow)
    ended = peewee.DateTimeField(null=True)


class EnrolmentRule(TenantModel):
    """An operator's rule: members of `group` are enrolled in the LMS course `course_id` as `role`.

    `keep_on_leave`: leaving the group (or removing the rule) keeps the enrolment (`KeptEnrolment`).
    """

    group = peewee.ForeignKeyField(Group, on_delete="CASCADE", backref="enrolment_rules")
    target_id = target_column()
    course_id = peewee.CharField(max_length=64)
    role = peewee.CharField(max_length=16)
    keep_on_leave = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)
    # m0018: the enrolment's start and end (Moodle's timestart/timeend; NULL: none), and the
    # roles (a comma list) whose enrolments get no end date.
    time_start = peewee.DateTimeField(null=True)
    time_end = peewee.DateTimeField(null=True)
    no_end_roles = peewee.TextField(null=True)

    class Meta:
        indexes = ((("group", "target_id", "course_id"), True),)
        constraints = (
            same_tenant("group_id", "lms_group"),
            same_tenant("target_id", "lms_target"),
        )
        depends_on = (LmsTarget,)


class KeptEnrolment(TenantModel):
    """An enrolment a user kept after leaving a group whose rule says keep previous enrolments."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="kept_enrolments")
    target_id = target_column()
    course_id = peewee.CharField(max_length=64)
    role = peewee.CharField(max_length=16)

    class Meta:
        primary_key = peewee.CompositeKey("user", "target_id", "course_id", "role")
        constraints = (
            same_tenant("user_id", "lms_user"),
            same_tenant("target_id", "lms_target"),
        )
        depends_on = (LmsTarget,)


class Outbox(TenantModel):
    """A change the LMS must hear about, written in the same transaction as the change.

    Small by design (kind + ids): the relay reads the current state when it delivers, so a row
    delivered twice does no harm. `kind` is `user` (user_id), `group` (group_id) or `member`
    (both: a membership, or the enrolments it brings, changed). Delivered rows are deleted;
    rows that failed for good stay with `state = 'dead'` and the reason in `last_error`.
    """

    id = peewee.BigAutoField()
    target_id = target_column()
    kind = peewee.CharField(max_length=8)
    user_id = peewee.CharField(max_length=32, null=True)
    group_id = peewee.CharField(max_length=32, null=True)
    created = peewee.DateTimeField(default=utcnow)
    state = peewee.CharField(max_length=8, default="pending")
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(null=True)  # NULL: at once
    lease_until = peewee.DateTimeField(null=True)  # a relay is delivering it until then
    last_error = peewee.TextField(null=True)

    class Meta:
        indexes = (
            (("state", "id"), False),
            (("tenant_id", "target_id", "state", "id"), False),
            (("user_id", "id"), False),
            (("group_id", "id"), False),
        )
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)


class LmsUserLink(TenantModel):
    """Our user ↔ the LMS account (Moodle's user id), kept after the user is deleted here until
    the LMS account is deleted too (so no foreign key)."""

    target_id = target_column()
    user_id = peewee.CharField(max_length=32)
    lms_id = peewee.BigIntegerField()
    matched = peewee.BooleanField(default=False)  # an existing LMS account, not one we created
    synced_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        primary_key = peewee.CompositeKey("tenant_id", "target_id", "user_id")
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)


class LmsCohortLink(TenantModel):
    """Our group ↔ the LMS cohort (audience)."""

    target_id = target_column()
    group_id = peewee.CharField(max_length=32)
    lms_id = peewee.BigIntegerField()
    synced_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        primary_key = peewee.CompositeKey("tenant_id", "target_id", "group_id")
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)


class LmsEnrolment(TenantModel):
    """An enrolment the relay made on the LMS (what the LMS has, as far as we know)."""

    target_id = target_column()
    user_id = peewee.CharField(max_length=32)
    course_id = peewee.CharField(max_length=64)
    role = peewee.CharField(max_length=16)
    # m0018: the dates the course enrolment was last sent with (NULL: none).
    time_start = peewee.DateTimeField(null=True)
    time_end = peewee.DateTimeField(null=True)

    class Meta:
        primary_key = peewee.CompositeKey("tenant_id", "target_id", "user_id", "course_id", "role")
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)


class CourseMap(TenantModel):
    """A group's course on an LMS target (m0017): the templates its shortname, fullname and
    category path are made from (`app.store.course_maps`), and, once the relay found or made it,
    the course's LMS id (`lms_id`) with the values it was given then (`applied_*`: a rename of
    the group changes the LMS only with `follow_renames`). No foreign key to the group: the
    course outlives it (enrolments kept from it still name it) until the map is removed."""

    target_id = target_column()
    group_id = peewee.CharField(max_length=32)
    shortname = peewee.TextField()
    fullname = peewee.TextField()
    category = peewee.TextField(null=True)
    template_course = peewee.BigIntegerField(null=True)
    casing = peewee.CharField(max_length=8)
    follow_renames = peewee.BooleanField(default=False)
    lms_id = peewee.BigIntegerField(null=True)
    applied_shortname = peewee.TextField(null=True)
    applied_fullname = peewee.TextField(null=True)
    applied_category = peewee.TextField(null=True)
    created = peewee.DateTimeField(default=utcnow)
    synced_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "lms_course_map"
        primary_key = peewee.CompositeKey("tenant_id", "target_id", "group_id")
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)


class CategoryLink(TenantModel):
    """A category path ("School/7B") ↔ the LMS category of its last level, per target (m0017)."""

    target_id = target_column()
    path = peewee.CharField(max_length=MAX_INDEXED_LENGTH)
    lms_id = peewee.BigIntegerField()

    class Meta:
        table_name = "lms_category_link"
        primary_key = peewee.CompositeKey("tenant_id", "target_id", "path")
        constraints = (same_tenant("target_id", "lms_target"),)
        depends_on = (LmsTarget,)


class SchemaMigration(BaseModel):
    number = peewee.IntegerField(primary_key=True)
    name = peewee.TextField()
    applied_at = peewee.DateTimeField(default=utcnow)


class RowCount(TenantModel):
    """How many rows a table has per tenant, kept by database triggers (m0005, m0010) in a few
    shards, so that an unfiltered list's `totalResults` is a sum of a few rows, not a COUNT
    over a million.

    PostgreSQL adds each statement's rows to the shard of its transaction id (concurrent writers
    rarely share a row lock); SQLite, one writer at a time, keeps one shard."""

    class Meta:
        table_name = "row_count"
        primary_key = peewee.CompositeKey("name", "tenant_id", "shard")

    name = peewee.TextField()
    shard = peewee.IntegerField()
    n = peewee.BigIntegerField()


# The tables whose rows RowCount counts (their triggers come with m0005).
COUNTED_MODELS = (User, Group)


# RowCount first: the test suite's cleaner deletes in reverse order, and the triggers that
# keep it update it while the other tables are emptied.
class OAuthClient(TenantModel):
    """A SCIM client that gets short-lived access tokens with the OAuth 2.0 client credentials
    grant (m0015). `identifier` is its public `client_id`; its secrets are `OAuthClientSecret`
    rows (two during a rotation's grace)."""

    class Meta:
        table_name = "oauth_client"
        indexes = (
            (("tenant_id", "name"), False),
            (("tenant_id", "id"), True),  # what its secrets' composite key points at (m0023)
        )

    name = peewee.TextField()
    identifier = peewee.CharField(max_length=64, unique=True)
    read_only = peewee.BooleanField(default=False)
    token_lifetime = peewee.IntegerField()  # seconds
    created = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)


class OAuthClientSecret(TenantModel):
    """A client secret, stored only as its SHA-256 (a 256-bit random value cannot be guessed,
    and the token endpoint must stay as cheap as a look-up). `expires_at`: the end of the grace
    after a rotation; NULL while it is the current secret. The composite key (m0023) keeps it
    in its client's tenant."""

    class Meta:
        table_name = "oauth_client_secret"
        constraints = (same_tenant("client_id", "oauth_client"),)

    client = peewee.ForeignKeyField(OAuthClient, on_delete="CASCADE", backref="secrets")
    secret_hash = peewee.CharField(max_length=64, unique=True)
    prefix = peewee.TextField()
    created = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(null=True)


class SigningKey(BaseModel):
    """A key that signs access tokens (one issuer for the deployment; m0015). The newest key
    not retired signs; a retired key still verifies until `verify_until`, when every token it
    signed has expired. The private half is sealed under SECRET_KEY (`app.secretbox`)."""

    kid = peewee.CharField(max_length=64, primary_key=True)
    algorithm = peewee.CharField(max_length=16)
    public_jwk = peewee.TextField()
    private_key = peewee.TextField()
    created = peewee.DateTimeField(default=utcnow)
    retired_at = peewee.DateTimeField(null=True)
    verify_until = peewee.DateTimeField(null=True)


class CacheGeneration(BaseModel):
    """One counter that triggers move on every change to what per-process caches hold (m0016,
    `app.freshness`): tokens, tenants, OAuth clients."""

    class Meta:
        table_name = "cache_generation"

    id = peewee.IntegerField(primary_key=True)
    value = peewee.BigIntegerField()


class RequestTally(TenantModel):
    """How many SCIM requests one credential (a token's name, `oauth:` and a client's name) made
    in one UTC hour with one status, and when the last came (m0020). Written in batches by each
    process (`app.connections`), one upsert per batch; rows older than a week are pruned."""

    class Meta:
        table_name = "request_tally"
        primary_key = peewee.CompositeKey("tenant_id", "credential", "hour", "status")

    credential = peewee.TextField()
    hour = peewee.DateTimeField()
    status = peewee.IntegerField()
    n = peewee.BigIntegerField()
    last_at = peewee.DateTimeField()


class RequestError(TenantModel):
    """A SCIM request of one credential that failed (status 400 and up), with the SCIM error's
    `scimType` and `detail` (m0020): the newest few per credential are kept, older ones pruned,
    so an operator sees why an IdP's sync fails without reading logs."""

    class Meta:
        table_name = "request_error"
        indexes = ((("tenant_id", "credential", "id"), False),)

    id = peewee.BigAutoField()
    credential = peewee.TextField()
    at = peewee.DateTimeField()
    method = peewee.CharField(max_length=8)
    path = peewee.TextField()
    status = peewee.IntegerField()
    scim_type = peewee.TextField(null=True)
    detail = peewee.TextField(null=True)
    request_id = peewee.TextField(null=True)


ALL_MODELS = (
    RowCount,
    Tenant,
    User,
    UserValue,
    UserAddress,
    Group,
    Membership,
    LmsTarget,
    LmsTargetAudience,
    LmsTargetCohort,
    LmsTargetAction,
    LmsUserHold,
    ApiToken,
    AuditEvent,
    Operator,
    AdminSession,
    EnrolmentRule,
    KeptEnrolment,
    Outbox,
    LmsUserLink,
    LmsCohortLink,
    LmsEnrolment,
    CourseMap,
    CategoryLink,
    OAuthClient,
    OAuthClientSecret,
    SigningKey,
    CacheGeneration,
    RequestTally,
    RequestError,
)
# The LMS relay's tables (m0004, m0014, m0017, m0018, m0022).
LMS_MODELS = (
    LmsTarget,
    LmsTargetAudience,
    LmsTargetCohort,
    LmsTargetAction,
    LmsUserHold,
    EnrolmentRule,
    KeptEnrolment,
    Outbox,
    LmsUserLink,
    LmsCohortLink,
    LmsEnrolment,
    CourseMap,
    CategoryLink,
)
