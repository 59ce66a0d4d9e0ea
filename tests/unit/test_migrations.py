"""Migrations: a database left at any earlier step and upgraded ends up with the same schema as a
fresh one, keeps its rows on the way, and has what the live models declare — on SQLite and
PostgreSQL.

A schema is compared as a set of facts read from the database's catalogue: tables; columns
(type, nullability, default, primary-key position); indexes (name, columns, uniqueness);
foreign keys; triggers and (PostgreSQL) functions. PostgreSQL databases are private schemas in
the `test` database, dropped afterwards; skipped when the server is unreachable, unless
REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest

from app import create_app
from app.config import Config
from app.store import migrations
from app.store.db import database, make_database
from app.store.models import ALL_MODELS, SchemaMigration, TenantModel
from tests.helpers import create_schema, drop_schema, postgres_or_skip, schema_url

NAMES = [name for _, name, _ in migrations._migrations()]
NUMBERS = [number for number, _, _ in migrations._migrations()]

NewDatabase = Callable[[], peewee.Database]
_URLS: dict[int, str] = {}  # id(database) → its DATABASE_URL, while the test runs


def url_of(db: peewee.Database) -> str:
    """The DATABASE_URL a database of `new_database` was opened with (for an app on it)."""
    return _URLS[id(db)]


# -- databases -------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """Makes empty databases of one kind, as the CLI opens them (`make_database`)."""
    admin = postgres_or_skip() if request.param == "postgres" else None
    made: list[peewee.Database] = []
    schemas: list[str] = []

    def make() -> peewee.Database:
        if admin is None:
            url = f"sqlite:///{tmp_path / f'step{len(made)}.db'}"
        else:
            schema = create_schema(admin, "lms_scim_migrations")
            schemas.append(schema)
            url = schema_url(schema)
        db = make_database(Config.from_env({}, database_url=url, testing=True))
        made.append(db)
        _URLS[id(db)] = url
        return db

    yield make
    for db in made:
        _URLS.pop(id(db), None)
        db.close_all() if hasattr(db, "close_all") else db.close()
    if admin is not None:
        for schema in schemas:
            drop_schema(admin, schema)
        admin.close()


# -- schemas as sets of facts ----------------------------------------------------------------


def _sqlite_schema(db: peewee.Database) -> set[str]:
    facts = set()
    objects = db.execute_sql(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for kind, name, table, sql in objects:
        if kind == "trigger":
            facts.add(f"trigger {table}.{name}: {' '.join(sql.split())}")
        elif kind == "view":
            facts.add(f"view {name}: {' '.join(sql.split())}")
    for table in sorted(name for kind, name, _, _ in objects if kind == "table"):
        facts.add(f"table {table}")
        for _cid, name, type_, notnull, default, pk in db.execute_sql(
            f'PRAGMA table_info("{table}")'
        ):
            null = "NOT NULL" if notnull else "NULL"
            facts.add(f"column {table}.{name} {type_} {null} default={default} pk={pk}")
        for _seq, name, unique, origin, partial in db.execute_sql(f'PRAGMA index_list("{table}")'):
            columns = [row[2] for row in db.execute_sql(f'PRAGMA index_info("{name}")')]
            facts.add(
                f"index {table}.{name} ({', '.join(columns)}) unique={unique} "
                f"origin={origin} partial={partial}"
            )
        for row in db.execute_sql(f'PRAGMA foreign_key_list("{table}")'):
            _id, seq, target, column, target_column, on_update, on_delete, match = row
            facts.add(
                f"foreign key {table}.{column} -> {target}.{target_column} seq={seq} "
                f"on update {on_update} on delete {on_delete} match {match}"
            )
    return facts


_PG_QUERIES = {
    "table": """
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
    """,
    "sequence": """
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'S'
    """,
    "view": """
        SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('v', 'm')
    """,
    "column": """
        SELECT c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'NULL' END,
               'default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), 'None')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
          AND a.attnum > 0 AND NOT a.attisdropped
    """,
    "constraint": """
        SELECT c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE c.relnamespace = current_schema()::regnamespace
    """,
    "index": """
        SELECT c.relname || '.' || i.relname, pg_get_indexdef(x.indexrelid)
        FROM pg_index x
        JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
        WHERE c.relnamespace = current_schema()::regnamespace
    """,
    "trigger": """
        SELECT c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
    """,
    "function": """
        SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace
    """,
}


def _postgres_schema(db: peewee.Database) -> set[str]:
    (schema,) = db.execute_sql("SELECT current_schema()").fetchone()
    facts = set()
    for kind, query in _PG_QUERIES.items():
        for row in db.execute_sql(query):
            text = " ".join(" ".join(str(value) for value in row).split())
            # Each database is a schema of its own: names qualified with it are the same name.
            for qualifier in (f'"{schema}".', f"{schema}."):
                text = text.replace(qualifier, "")
            facts.add(f"{kind} {text}")
    return facts


def schema_of(db: peewee.Database) -> set[str]:
    with db.connection_context():
        if isinstance(db, peewee.PostgresqlDatabase):
            return _postgres_schema(db)
        return _sqlite_schema(db)


def assert_same(got: set[str], expected: set[str], what: str) -> None:
    missing, extra = sorted(expected - got), sorted(got - expected)
    assert (missing, extra) == ([], []), f"{what}\n  missing: {missing}\n  unexpected: {extra}"


# -- upgrades from every step ----------------------------------------------------------------

NOW = "2026-01-01 00:00:00"


def _sample_rows(not_primary: bool | None) -> list[tuple[str, dict[str, Any]]]:
    """A row for every table there is (or was), with every column any release had: each is
    inserted where its table exists, with the columns that exist at that step."""
    dated = {"created": NOW, "last_modified": NOW, "version": 1}
    return [
        ("lms_user", dict(id="u1", user_name="A", user_name_key="a", active=True, **dated)),
        ("lms_user", dict(id="u2", user_name="B", user_name_key="b", active=False, **dated)),
        ("lms_group", dict(id="g1", display_name="S", display_name_key="s", **dated,
                           keeps_enrolments=False)),
        ("membership", dict(group_id="g1", user_id="u1")),
        ("membership", dict(group_id="g1", user_id="u2")),
        ("user_value", dict(user_id="u1", attr="emails", position=0, value="a@x", primary=True)),
        ("user_value", dict(user_id="u1", attr="emails", position=1, value="b@x",
                            primary=not_primary)),
        ("user_address", dict(user_id="u1", position=0, locality="Oslo", primary=not_primary)),
        ("api_token", dict(name="idp", prefix="lms_x", token_hash="h" * 64, read_only=False,
                           created=NOW)),
        ("audit_event", dict(at=NOW, resource_type="User", resource_id="u1", operation="create")),
        ("operator", dict(name="op", password_hash="x", created=NOW, failed_attempts=0)),
        ("admin_session", dict(id="s" * 64, operator_id=1, created=NOW, last_seen=NOW)),
        ("enrolment_rule", dict(group_id="g1", course_id="c1", role="student",
                                keep_on_leave=False, created=NOW)),
        ("kept_enrolment", dict(user_id="u1", course_id="c0", role="student")),
        ("outbox", dict(kind="user", user_id="u1", created=NOW, state="pending", attempts=0)),
        ("lms_user_link", dict(user_id="u1", lms_id=7, matched=False, synced_at=NOW)),
        ("lms_cohort_link", dict(group_id="g1", lms_id=8, synced_at=NOW)),
        ("lms_enrolment", dict(user_id="u1", course_id="c1", role="student")),
        ("lms_course_map", dict(group_id="g1", shortname="{displayName}", fullname="{id}",
                                casing="none", follow_renames=False, created=NOW)),
        ("lms_category_link", dict(path="School", lms_id=9)),
        ("oauth_client", dict(name="okta", identifier="c" * 32, read_only=False,
                              token_lifetime=3600, created=NOW)),
        ("oauth_client_secret", dict(client_id=1, secret_hash="s" * 64, prefix="lmsoc_x",
                                     created=NOW)),
    ]  # fmt: skip


def _fill(db: peewee.Database, step: int) -> dict[str, int]:
    """Insert the sample rows that fit the database at `step`; return their tables' counts."""
    # Before m0006 `primary` was NOT NULL and "not primary" was stored as false.
    not_primary = False if step < 6 else None
    with db.connection_context(), db.atomic():
        tables = set(db.get_tables())
        filled = set()
        for table, row in _sample_rows(not_primary):
            if table in tables:
                present = {column.name for column in db.get_columns(table)}
                _insert(db, table, **{k: v for k, v in row.items() if k in present})
                filled.add(table)
        return {table: _count(db, table) for table in filled}


# Migrations that rewrite rows and leave the schema as it was.
DATA_ONLY = {7}


@pytest.mark.parametrize("step", NUMBERS[:-1])
def test_a_database_upgraded_from_any_step_has_the_fresh_schema_and_its_rows(
    new_database: NewDatabase, step: int
) -> None:
    fresh = new_database()
    assert migrations.upgrade(fresh) == NAMES
    old = new_database()
    count = NUMBERS.index(step) + 1
    assert migrations.upgrade(old, target=step) == NAMES[:count]
    assert migrations.pending(old) == NAMES[count:]
    if any(number not in DATA_ONLY for number in NUMBERS[count:]):
        assert schema_of(old) != schema_of(fresh), f"m{step:04} left the schema as the latest has"
    before = _fill(old, step)

    assert migrations.upgrade(old) == NAMES[count:]
    assert migrations.pending(old) == []
    assert_same(schema_of(old), schema_of(fresh), f"upgraded from step {step} vs created fresh")

    with old.connection_context():
        after = {table: _count(old, table) for table in before}
        assert after == before, "rows lost on the way (a DROP TABLE cascading into another?)"
        assert _counts(old) == {"lms_user": 2, "lms_group": 1}
        primaries = _rows(old, 'SELECT position, "primary" FROM "user_value" ORDER BY position')
        assert [(p, None if v is None else bool(v)) for p, v in primaries] == [(0, True), (1, None)]
        assert _rows(old, 'SELECT "primary" FROM "user_address"') == [(None,)]
        # What the models write now: "not primary" is NULL.
        _insert(old, "user_value", user_id="u2", attr="emails", position=0, primary=None)
        # The foreign keys still point at the right tables: deleting the group cascades.
        old.execute_sql('DELETE FROM "lms_group"')
        assert _count(old, "membership") == _count(old, "enrolment_rule") == 0
        assert _counts(old) == {"lms_user": 2, "lms_group": 0}
        if isinstance(old, peewee.SqliteDatabase):
            assert _rows(old, "PRAGMA foreign_key_check") == []


def _insert(db: peewee.Database, table: str, **row: Any) -> None:
    columns = ", ".join(f'"{column}"' for column in row)
    params = ", ".join([db.param] * len(row))
    insert = f'INSERT INTO "{table}" ({columns}) VALUES ({params})'  # noqa: S608 (test names)
    db.execute_sql(insert, list(row.values()))


def _count(db: peewee.Database, table: str) -> int:
    return int(_rows(db, f'SELECT count(*) FROM "{table}"')[0][0])  # noqa: S608 (test names)


def _rows(db: peewee.Database, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in db.execute_sql(sql).fetchall()]


def _counts(db: peewee.Database) -> dict[str, int]:
    rows = _rows(db, "SELECT name, sum(n) FROM row_count GROUP BY name")
    return {name: int(total) for name, total in rows}


# -- the models ------------------------------------------------------------------------------

# Where a migrated column may differ from what peewee would create for the model: SQLite adds a
# NOT NULL column only with a default (m0004), which the model keeps in Python instead.
_MIGRATION_ONLY = {
    "column lms_group.keeps_enrolments INTEGER NOT NULL default=0 pk=0": (
        "column lms_group.keeps_enrolments INTEGER NOT NULL default=None pk=0"
    ),
}


def test_the_migrated_schema_is_what_the_models_declare(new_database: NewDatabase) -> None:
    migrated = new_database()
    migrations.upgrade(migrated)
    declared = new_database()
    models = [SchemaMigration, *ALL_MODELS]
    with declared.bind_ctx(models), declared.connection_context():
        declared.create_tables(models)

    got = {
        _MIGRATION_ONLY.get(fact, fact)
        for fact in schema_of(migrated)
        # The models declare no triggers or functions: those only the migrations know.
        if not fact.startswith(("trigger ", "function "))
    }
    expected = schema_of(declared)
    assert {fact for fact in expected if fact.startswith("table ")} >= {
        f"table {model._meta.table_name}" for model in models
    }
    why = "a model changed without a migration, or a migration without its model?"
    assert_same(got, expected, f"migrated vs created from app.store.models ({why})")


def test_m0007_rekeys_names_and_keeps_colliding_rows_apart(new_database: NewDatabase) -> None:
    db = new_database()
    migrations.upgrade(db, target=6)
    dated = {"created": NOW, "last_modified": NOW, "version": 1, "active": True}
    legacy_users = {  # id: userName, keyed as release m0006 keyed it (lower-cased)
        "u1": "alice",
        "u2": "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth: collides with u1
        "u3": "STRASSE",
        "u4": "stra\u00dfe",  # collides with u3
        "u5": "jose\u0301",  # NFD: no one else, keyed NFC
    }
    emails = [  # user, position, value: u2's collides with u1's, u3's second with its first
        ("u1", 0, "bob@example.com"),
        ("u2", 0, "BOB\uff20example.com"),
        ("u3", 0, "carol@example.com"),
        ("u3", 1, "\uff43arol@example.com"),
    ]
    with db.connection_context(), db.atomic():
        for user_id, name in legacy_users.items():
            _insert(db, "lms_user", id=user_id, user_name=name, user_name_key=name.lower(), **dated)
        for user_id, position, value in emails:
            key = value.lower()
            _insert(db, "user_value", user_id=user_id, attr="emails", position=position,
                    value=value, value_key=key, unique_key=key)  # fmt: skip
        for group_id, name in (("g1", "Staff"), ("g2", "\uff33\uff34\uff21\uff26\uff26")):
            _insert(db, "lms_group", id=group_id, display_name=name, keeps_enrolments=False,
                    display_name_key=name.lower(), unique_name_key=name.lower(), created=NOW,
                    last_modified=NOW, version=1)  # fmt: skip

    migrations.upgrade(db)

    mark = "\x1f"
    with db.connection_context():
        assert dict(_rows(db, 'SELECT id, user_name_key FROM "lms_user"')) == {
            "u1": "alice",
            "u2": f"alice{mark}u2",
            "u3": "strasse",
            "u4": f"strasse{mark}u4",
            "u5": "jos\u00e9",
        }
        # Stored names stay as the IdP sent them.
        assert dict(_rows(db, 'SELECT id, user_name FROM "lms_user"')) == legacy_users
        values = _rows(db, 'SELECT user_id, position, value_key, unique_key FROM "user_value"')
        assert sorted(values) == [
            ("u1", 0, "bob@example.com", "bob@example.com"),
            ("u2", 0, "bob@example.com", f"bob@example.com{mark}u2"),
            ("u3", 0, "carol@example.com", "carol@example.com"),
            ("u3", 1, "carol@example.com", None),  # the same person's address twice
        ]
        groups = _rows(db, 'SELECT id, display_name_key, unique_name_key FROM "lms_group"')
        assert sorted(groups) == [("g1", "staff", "staff"), ("g2", "staff", f"staff{mark}g2")]
        events = _rows(
            db,
            "SELECT resource_type, resource_id, operation FROM audit_event ORDER BY resource_id",
        )
        assert sorted(events) == [
            ("Group", "g2", "identity_collision"),
            ("User", "u2", "identity_collision"),
            ("User", "u2", "identity_collision"),
            ("User", "u4", "identity_collision"),
        ]


# -- from the release before tenants (m0009) -------------------------------------------------

BEFORE_TENANTS = NUMBERS[NUMBERS.index(9) - 1]  # the last migration of the release before
# Tables that hold rows of the release before tenants and belong to a tenant afterwards.
UPGRADED = ("lms_user", "lms_group", "membership", "api_token", "audit_event")


def test_an_upgrade_from_the_release_before_tenants_gives_everything_to_the_default_tenant(
    new_database: NewDatabase,
) -> None:
    """Issue 16's migration: a database as the release before tenants left it (every table it
    had, a row in each, and a token it issued) upgrades to one `default` tenant that owns every
    row, and the IdP's token keeps working, unchanged, against the new code."""
    old = new_database()
    migrations.upgrade(old, target=BEFORE_TENANTS)
    before = _fill(old, BEFORE_TENANTS)
    # A token as that release issued it: the `lmsscim_` secret is the IdP's; the row keeps its
    # SHA-256 only (app/auth.py of f30e85a, the last commit before tenants).
    secret = "lmsscim_" + secrets.token_urlsafe(32)
    with old.connection_context(), old.atomic():
        _insert(old, "api_token", name="okta", prefix=secret[:14], read_only=False, created=NOW,
                token_hash=hashlib.sha256(secret.encode()).hexdigest())  # fmt: skip
    assert set(UPGRADED) <= set(before)

    migrations.upgrade(old)
    with old.connection_context():
        assert _rows(old, "SELECT id, slug FROM tenant") == [(1, "default")]
        owners = {
            table: sorted(_rows(old, f'SELECT DISTINCT tenant_id FROM "{table}"'))  # noqa: S608
            for table in before
            if table in _tables_with_a_tenant(old) - BINDS_A_TENANT
        }
        assert set(UPGRADED) <= set(owners)
        assert owners == {table: [(1,)] for table in owners}
        assert _rows(old, "SELECT tenant_id FROM operator") == [(None,)]  # sees every tenant
        counts = _rows(old, "SELECT tenant_id, name, sum(n) FROM row_count GROUP BY 1, 2")
        assert sorted((t, n, int(c)) for t, n, c in counts) == [
            (1, "lms_group", 1),
            (1, "lms_user", 2),
        ]

    url = url_of(old)
    app = create_app(Config.from_env({}, database_url=url, testing=True))
    try:
        idp = app.test_client()
        bearer = {"Authorization": f"Bearer {secret}"}
        listed = idp.get("/scim/v2/Users", headers=bearer)
        assert listed.status_code == 200, listed.get_data(as_text=True)
        assert listed.get_json()["totalResults"] == 2
        assert {user["id"] for user in listed.get_json()["Resources"]} == {"u1", "u2"}
        group = idp.get("/scim/v2/Groups/g1", headers=bearer).get_json()
        assert sorted(member["value"] for member in group["members"]) == ["u1", "u2"]
        made = idp.post("/scim/v2/Users", json={"userName": "carol"}, headers=bearer)
        assert made.status_code == 201, made.get_data(as_text=True)
        assert idp.get("/scim/v2/Users", headers={"Authorization": "Bearer x"}).status_code == 401
    finally:
        database.obj.close_all() if hasattr(database.obj, "close_all") else database.obj.close()
    with old.connection_context():
        created = _rows(old, "SELECT tenant_id FROM lms_user WHERE user_name = 'carol'")
        assert created == [(1,)]


# -- m0011: rows point only at their own tenant's users and groups ----------------------------

_CHILDREN = {  # a row of each table that points at tenant 2's user u2 or group g2
    "membership": dict(group_id="g2", user_id="u2"),
    "user_value": dict(user_id="u2", attr="emails", position=0, value="b@x"),
    "user_address": dict(user_id="u2", position=0, locality="Oslo"),
    "kept_enrolment": dict(user_id="u2", course_id="c1", role="student"),
    "enrolment_rule": dict(group_id="g2", course_id="c1", role="student", keep_on_leave=False,
                           created=NOW),
    "lms_target_cohort": dict(group_id="g2"),
}  # fmt: skip
_MIXED = [dict(group_id="g1", user_id="u2"), dict(group_id="g2", user_id="u1")]
FROM_M0011 = NAMES[NUMBERS.index(11) :]


def _two_tenants(db: peewee.Database) -> None:
    """Tenant 1 has user u1 and group g1; tenant 2 has user u2 and group g2 (and, from m0014,
    its `default` LMS target 2)."""
    dated = {"created": NOW, "last_modified": NOW, "version": 1}
    _insert(db, "tenant", id=2, slug="acme", name="Acme", created=NOW)
    if "lms_target" in db.get_tables():
        _insert(db, "lms_target", id=2, tenant_id=2, name="default", restricted=False,
                from_settings=True, created=NOW)  # fmt: skip
    for tenant, n in ((1, "1"), (2, "2")):
        _insert(db, "lms_user", id=f"u{n}", user_name=n, user_name_key=n, active=True,
                tenant_id=tenant, **dated)  # fmt: skip
        _insert(db, "lms_group", id=f"g{n}", display_name=n, display_name_key=n,
                keeps_enrolments=False, tenant_id=tenant, **dated)  # fmt: skip


# m0014: a rule names its LMS target; m0022: so does a target's chosen cohort.
_WITH_TARGET = {"enrolment_rule", "kept_enrolment", "lms_target_cohort"}


def _in_tenant(table: str, tenant: int, row: dict[str, Any]) -> dict[str, Any]:
    """`row` of `tenant`, with the tenant's `default` target where the table names one."""
    return {"tenant_id": tenant, **row, **({"target_id": tenant} if table in _WITH_TARGET else {})}


def _refused(db: peewee.Database, table: str, **row: Any) -> None:
    with pytest.raises(peewee.IntegrityError), db.atomic():
        _insert(db, table, **row)


@pytest.mark.parametrize("child", sorted(_CHILDREN))
def test_the_database_refuses_a_row_that_points_into_another_tenant(
    new_database: NewDatabase, child: str
) -> None:
    """A raw INSERT, past every code path: the composite key (tenant_id, user_id/group_id) →
    (tenant_id, id) refuses it; the same row in the right tenant is stored."""
    db = new_database()
    migrations.upgrade(db)
    with db.connection_context():
        with db.atomic():
            _two_tenants(db)
        _refused(db, child, **_in_tenant(child, 1, _CHILDREN[child]))
        if child == "membership":  # a group of one tenant, a user of the other: either way
            for tenant in (1, 2):
                for row in _MIXED:
                    _refused(db, child, tenant_id=tenant, **row)
        with db.atomic():
            _insert(db, child, **_in_tenant(child, 2, _CHILDREN[child]))
        assert _count(db, child) == 1
        # Deleting the parents still cascades.
        db.execute_sql('DELETE FROM "lms_user"')
        db.execute_sql('DELETE FROM "lms_group"')
        assert _count(db, child) == 0


def test_m0011_refuses_to_upgrade_rows_that_already_join_two_tenants(
    new_database: NewDatabase,
) -> None:
    db = new_database()
    migrations.upgrade(db, target=10)
    with db.connection_context():
        with db.atomic():
            _two_tenants(db)
            _insert(db, "membership", tenant_id=1, group_id="g1", user_id="u2")
        with pytest.raises(RuntimeError, match=r"1 membership row\(s\) point at a lms_user row"):
            migrations.upgrade(db)
        assert migrations.pending(db) == FROM_M0011
        assert _count(db, "membership") == 1
        db.execute_sql('DELETE FROM "membership"')
        assert migrations.upgrade(db) == FROM_M0011


# -- m0014: LMS targets ----------------------------------------------------------------------

_RELAY_ROWS = {  # a row of each table that gains target_id, for tenant n
    "outbox": lambda n: dict(kind="user", user_id=f"u{n}", created=NOW, state="pending",
                             attempts=0),
    "lms_user_link": lambda n: dict(user_id=f"u{n}", lms_id=7, matched=False, synced_at=NOW),
    "lms_cohort_link": lambda n: dict(group_id=f"g{n}", lms_id=8, synced_at=NOW),
    "lms_enrolment": lambda n: dict(user_id=f"u{n}", course_id="c1", role="student"),
    "enrolment_rule": lambda n: dict(group_id=f"g{n}", course_id="c1", role="student",
                                     keep_on_leave=False, created=NOW),
    "kept_enrolment": lambda n: dict(user_id=f"u{n}", course_id="c0", role="student"),
}  # fmt: skip


def _targets_of(db: peewee.Database, table: str) -> list[tuple[int, int]]:
    return sorted(_rows(db, f'SELECT tenant_id, target_id FROM "{table}"'))  # noqa: S608


def test_m0014_files_every_relay_row_under_its_tenants_default_target(
    new_database: NewDatabase,
) -> None:
    db = new_database()
    migrations.upgrade(db, target=12)
    with db.connection_context():
        with db.atomic():
            _two_tenants(db)
            for tenant in (1, 2):
                for table, make in _RELAY_ROWS.items():
                    _insert(db, table, tenant_id=tenant, **make(tenant))
        migrations.upgrade(db)

        targets = _rows(db, 'SELECT tenant_id, id, name, from_settings FROM "lms_target"')
        assert sorted((t, i, n, bool(f)) for t, i, n, f in targets) == [
            (1, 1, "default", True),
            (2, 2, "default", True),
        ]
        for table in _RELAY_ROWS:
            assert _targets_of(db, table) == [(1, 1), (2, 2)], table
        # A target made afterwards gets an id of its own.
        _insert(db, "lms_target", tenant_id=2, name="b", restricted=False, from_settings=False,
                created=NOW)  # fmt: skip
        assert _rows(db, "SELECT id FROM \"lms_target\" WHERE name = 'b'") == [(3,)]
        # A row can name only a target of its own tenant.
        _refused(db, "outbox", tenant_id=1, target_id=3, **_RELAY_ROWS["outbox"](1))
        _refused(db, "lms_target", tenant_id=2, name="b", restricted=False, from_settings=False,
                 created=NOW)  # fmt: skip
        # A removed target takes its rows and links along; the others stay.
        db.execute_sql('DELETE FROM "lms_target" WHERE "id" = 2')
        for table in _RELAY_ROWS:
            assert _targets_of(db, table) == [(1, 1)], table


# -- the tenant in a key of every tenant-owned table (issue 16) --------------------------------

# Tenant-owned tables where no primary key, unique index or composite foreign key carries
# `tenant_id`, and why. A table leaves this list the day it gains such a key: the test fails
# while a listed table has one, as it fails for an unlisted table without one.
WITHOUT_TENANT_KEY = {
    # Append-only logs: no row anywhere points at one of theirs, so there is nothing a query
    # could join across tenants through them; they are read by tenant through indexes that
    # lead with it, `(tenant_id, at)` and `(tenant_id, credential, id)`.
    "audit_event": "append-only log, nothing references it",
    "request_error": "append-only log of failed requests, nothing references it",
    # A credential found before any tenant is known, by the hash of a 256-bit secret unique
    # across the deployment: the row found says which tenant it is. Nothing references a token.
    # (An OAuth client is found the same way, by its public client_id, but its secrets point
    # at it, so it has a unique (tenant_id, id) for their composite key, m0023.)
    "api_token": "found by a deployment-wide unique hash; the row names its tenant",
}
# Has `tenant_id` without being tenant-owned: the one tenant an /admin operator may see (NULL:
# every tenant).
BINDS_A_TENANT = {"operator"}

_FOREIGN_KEY = re.compile(r'FOREIGN KEY \(([^)]*)\) REFERENCES "(\w+)" \(([^)]*)\)')


def _listed(columns: str) -> list[str]:
    """`"tenant_id", "user_id"` → [tenant_id, user_id]."""
    return [column.strip().strip('"') for column in columns.split(",")]


def _pk(columns: list[str]) -> str:
    return f"primary key ({', '.join(columns)})"


def _unique(columns: list[str]) -> str:
    return f"unique ({', '.join(columns)})"


def _fk(columns: list[str], parent: str, parent_columns: list[str]) -> str:
    return f"foreign key ({', '.join(columns)}) -> {parent} ({', '.join(parent_columns)})"


ForeignKey = tuple[list[str], str, list[str]]  # columns, parent table, parent columns
Keys = tuple[list[str], list[list[str]], list[ForeignKey]]  # primary, unique indexes, foreign


def _carrying_the_tenant(keys: Keys) -> set[str]:
    """The keys of a table that carry `tenant_id`: its primary key or a unique index with the
    column, or a foreign key that pairs it with the parent's `tenant_id`."""
    primary, uniques, foreign = keys
    found = {_pk(primary)} if "tenant_id" in primary else set()
    found |= {_unique(columns) for columns in uniques if "tenant_id" in columns}
    found |= {
        _fk(columns, parent, parent_columns)
        for columns, parent, parent_columns in foreign
        if ("tenant_id", "tenant_id") in zip(columns, parent_columns, strict=True)
    }
    return found


def _without_a_twin(table: str, keys: Keys, owned: set[str]) -> set[str]:
    """`table.column -> parent` for each single-column foreign key to a tenant-owned table that
    no composite key (tenant_id, column) -> parent (tenant_id, …) doubles: through it a row
    could point at another tenant's."""
    _, _, foreign = keys
    twinned = {(columns[1], parent) for columns, parent, _ in foreign if columns[0] == "tenant_id"}
    return {
        f"{table}.{columns[0]} -> {parent}"
        for columns, parent, _ in foreign
        if len(columns) == 1 and parent in owned and (columns[0], parent) not in twinned
    }


def _declared(model: type[TenantModel]) -> Keys:
    """What the model declares: its primary key, unique fields and indexes, its foreign key
    fields, and the composite keys of `same_tenant` among its constraints."""
    meta = model._meta

    def column(name: str) -> str:
        return meta.fields[name].column_name if name in meta.fields else name

    key = meta.primary_key
    names = key.field_names if isinstance(key, peewee.CompositeKey) else [key.name]
    uniques = [[column(name) for name in fields] for fields, unique in meta.indexes if unique]
    uniques += [[field.column_name] for field in meta.sorted_fields if field.unique]
    foreign = [
        ([field.column_name], field.rel_model._meta.table_name, [field.rel_field.column_name])
        for field in meta.sorted_fields
        if isinstance(field, peewee.ForeignKeyField)
    ]
    for constraint in meta.constraints or ():
        found = _FOREIGN_KEY.search(constraint.sql)
        if found:
            columns, parent, parent_columns = found.groups()
            foreign.append((_listed(columns), parent, _listed(parent_columns)))
    return [column(name) for name in names], uniques, foreign


def _sqlite_keys(db: peewee.Database, table: str) -> Keys:
    info = db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()
    primary = [row[1] for row in sorted((row for row in info if row[5]), key=lambda r: r[5])]
    uniques = [
        [row[2] for row in db.execute_sql(f'PRAGMA index_info("{name}")')]
        for _seq, name, unique, origin, _partial in db.execute_sql(f'PRAGMA index_list("{table}")')
        if unique and origin != "pk"
    ]
    grouped: dict[int, list[tuple[Any, ...]]] = {}
    for row in db.execute_sql(f'PRAGMA foreign_key_list("{table}")'):
        grouped.setdefault(row[0], []).append(row)
    foreign = [
        ([r[3] for r in rows], rows[0][2], [r[4] for r in rows])
        for rows in (sorted(rows, key=lambda r: r[1]) for rows in grouped.values())
    ]
    return primary, uniques, foreign


# The column names of an index or a foreign key, in key order (unnest … WITH ORDINALITY).
_PG_INDEXES = """
    SELECT x.indisprimary, x.indisunique,
        array(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS u(n, i)
              JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = u.n ORDER BY u.i)
    FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = %s
"""
_PG_FOREIGN_KEYS = """
    SELECT
        array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS u(n, i)
              JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
        p.relname::text,
        array(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS u(n, i)
              JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i)
    FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid
    WHERE k.contype = 'f' AND c.relnamespace = current_schema()::regnamespace
      AND c.relname = %s
"""


def _postgres_keys(db: peewee.Database, table: str) -> Keys:
    indexes = db.execute_sql(_PG_INDEXES, (table,)).fetchall()
    foreign = [
        (columns, parent, to) for columns, parent, to in db.execute_sql(_PG_FOREIGN_KEYS, (table,))
    ]
    (primary,) = [columns for is_primary, _, columns in indexes if is_primary] or [[]]
    uniques = [columns for is_primary, unique, columns in indexes if unique and not is_primary]
    return primary, uniques, foreign


def _tables_with_a_tenant(db: peewee.Database) -> set[str]:
    return {
        table
        for table in db.get_tables()
        if "tenant_id" in {column.name for column in db.get_columns(table)}
    }


def _subclasses(model: type[peewee.Model]) -> set[type[peewee.Model]]:
    return {sub for child in model.__subclasses__() for sub in {child, *_subclasses(child)}}


def test_every_tenant_owned_table_carries_the_tenant_in_a_key(new_database: NewDatabase) -> None:
    """Issue 16: the database itself keeps tenants apart, not only the code paths. Read from the
    models and from the catalogue of a migrated database (SQLite, PostgreSQL): every
    tenant-owned table has `tenant_id` in its primary key, in a unique index, or in a
    composite foreign key to its parent's (tenant_id, id) — but for WITHOUT_TENANT_KEY — and
    every key to a tenant-owned table is doubled by a composite one that includes the tenant."""
    owned = [model for model in ALL_MODELS if issubclass(model, TenantModel)]
    assert _subclasses(TenantModel) == set(owned), "a tenant-owned model missing from ALL_MODELS"
    tables = {model._meta.table_name for model in owned}
    declared = {model._meta.table_name: _declared(model) for model in owned}

    db = new_database()
    migrations.upgrade(db)
    read = _postgres_keys if isinstance(db, peewee.PostgresqlDatabase) else _sqlite_keys
    with db.connection_context():
        assert _tables_with_a_tenant(db) == tables | BINDS_A_TENANT
        stored = {table: read(db, table) for table in tables}

    carrying = {table: _carrying_the_tenant(keys) for table, keys in stored.items()}
    expected = {table: _carrying_the_tenant(keys) for table, keys in declared.items()}
    assert carrying == expected, "the migrated keys differ from what the models declare"
    without = sorted(table for table, keys in carrying.items() if not keys)
    assert without == sorted(WITHOUT_TENANT_KEY), (
        "a tenant-owned table without tenant_id in a key (give it one, or list it with why)"
    )
    single = set().union(*(_without_a_twin(table, keys, tables) for table, keys in stored.items()))
    assert single == set(), "a key to a tenant-owned table without its composite twin"
    # What the README's "How isolation is enforced" names, spot-checked.
    assert _unique(["tenant_id", "user_name_key"]) in carrying["lms_user"]
    membership = carrying["membership"]
    assert _fk(["tenant_id", "user_id"], "lms_user", ["tenant_id", "id"]) in membership
    assert _fk(["tenant_id", "group_id"], "lms_group", ["tenant_id", "id"]) in membership
    assert _pk(["tenant_id", "target_id", "user_id"]) in carrying["lms_user_link"]
    secret = _fk(["tenant_id", "client_id"], "oauth_client", ["tenant_id", "id"])
    assert secret in carrying["oauth_client_secret"]
    assert _unique(["tenant_id", "id"]) in carrying["oauth_client"]


# -- m0022: the groups a target receives as cohorts -------------------------------------------


def test_m0022_leaves_every_target_receiving_every_group_and_cascades(
    new_database: NewDatabase,
) -> None:
    """Existing targets keep today's behaviour (`chosen_cohorts` false: every group becomes a
    cohort); a chosen group's row goes with the group or the target."""
    db = new_database()
    migrations.upgrade(db, target=21)
    with db.connection_context():
        with db.atomic():
            _two_tenants(db)
            _insert(db, "lms_target", id=3, tenant_id=1, name="b", url="https://b.example",
                    restricted=False, from_settings=False, created=NOW)  # fmt: skip
        migrations.upgrade(db)
        chosen = _rows(db, 'SELECT id, chosen_cohorts FROM "lms_target" ORDER BY id')
        assert [(i, bool(c)) for i, c in chosen] == [(1, False), (2, False), (3, False)]
        # A target made by a release that knows no cohorts gets the database's default.
        _insert(db, "lms_target", id=4, tenant_id=1, name="c", restricted=False,
                from_settings=False, created=NOW)  # fmt: skip
        (made,) = _rows(db, "SELECT chosen_cohorts FROM lms_target WHERE name = 'c'")
        assert made[0] in (False, 0)
        for target in (1, 3):
            _insert(db, "lms_target_cohort", tenant_id=1, target_id=target, group_id="g1")
        db.execute_sql('DELETE FROM "lms_target" WHERE "id" = 3')
        assert _rows(db, 'SELECT target_id, group_id FROM "lms_target_cohort"') == [(1, "g1")]
        db.execute_sql('DELETE FROM "lms_group" WHERE "id" = \'g1\'')
        assert _count(db, "lms_target_cohort") == 0


# -- m0023: an OAuth client's secrets stay in its tenant -------------------------------------

BEFORE_M0023 = NUMBERS[NUMBERS.index(23) - 1]
FROM_M0023 = NAMES[NUMBERS.index(23) :]


def _client(db: peewee.Database, tenant: int, n: int) -> None:
    _insert(db, "oauth_client", id=n, tenant_id=tenant, name=f"idp{n}", identifier=f"c{n}",
            read_only=False, token_lifetime=3600, created=NOW)  # fmt: skip


def _secret(tenant: int, client: int, n: int) -> dict[str, Any]:
    return dict(tenant_id=tenant, client_id=client, secret_hash=f"{n:064}", prefix=f"lmsoc_{n}",
                created=NOW)  # fmt: skip


def _two_clients(db: peewee.Database) -> None:
    """Client 1 of the default tenant, client 2 of tenant 2 (`acme`)."""
    _insert(db, "tenant", id=2, slug="acme", name="Acme", created=NOW)
    _client(db, 1, 1)
    _client(db, 2, 2)


def test_the_database_refuses_a_secret_of_another_tenant_than_its_clients(
    new_database: NewDatabase,
) -> None:
    """A raw INSERT, past every code path: the composite key (tenant_id, client_id) →
    oauth_client (tenant_id, id) refuses a secret whose tenant is not its client's, either
    way round; the same secret in the client's tenant is stored, and goes with its client."""
    db = new_database()
    migrations.upgrade(db)
    with db.connection_context():
        with db.atomic():
            _two_clients(db)
        _refused(db, "oauth_client_secret", **_secret(tenant=1, client=2, n=1))
        _refused(db, "oauth_client_secret", **_secret(tenant=2, client=1, n=2))
        # Nor can an existing secret be moved to the other tenant.
        with db.atomic():
            _insert(db, "oauth_client_secret", **_secret(tenant=2, client=2, n=3))
        with pytest.raises(peewee.IntegrityError), db.atomic():
            db.execute_sql('UPDATE "oauth_client_secret" SET "tenant_id" = 1')
        assert _rows(db, 'SELECT tenant_id, client_id FROM "oauth_client_secret"') == [(2, 2)]
        db.execute_sql('DELETE FROM "oauth_client" WHERE "id" = 2')
        assert _count(db, "oauth_client_secret") == 0


def _kept_by_the_rebuild(db: peewee.Database) -> set[str]:
    """The indexes and triggers of both OAuth tables, as the catalogue states them."""
    tables = ("oauth_client.", "oauth_client_secret.")
    return {
        fact
        for fact in schema_of(db)
        if fact.startswith(
            tuple(f"{kind} {table}" for kind in ("index", "trigger") for table in tables)
        )
    }


def _generation(db: peewee.Database) -> int:
    return int(_rows(db, 'SELECT "value" FROM "cache_generation"')[0][0])


def test_m0023_keeps_the_secrets_rows_indexes_and_cache_generation_triggers(
    new_database: NewDatabase,
) -> None:
    """SQLite drops a table's indexes and triggers with it: the rebuild must make them again.
    m0016's triggers on both tables still move the cache generation afterwards (a rotated or
    expired secret reaches every process's cache), and the secrets are the same rows."""
    db = new_database()
    migrations.upgrade(db, target=BEFORE_M0023)
    with db.connection_context(), db.atomic():
        _two_clients(db)
        for n, (tenant, client) in enumerate(((1, 1), (1, 1), (2, 2)), start=1):
            _insert(db, "oauth_client_secret", **_secret(tenant, client, n))
    kept = _kept_by_the_rebuild(db)
    with db.connection_context():
        secrets_before = _rows(db, 'SELECT * FROM "oauth_client_secret" ORDER BY "id"')
    assert {fact.split()[0] for fact in kept} == {"index", "trigger"}
    assert any(fact.startswith("trigger oauth_client_secret.") for fact in kept)

    assert migrations.upgrade(db) == FROM_M0023
    after = _kept_by_the_rebuild(db)
    assert kept <= after
    added = after - kept
    assert len(added) == 1, added  # the index m0023 adds, and nothing else
    assert "oauth_client_tenant_id_id" in next(iter(added))
    expired = "2026-02-01 00:00:00"
    with db.connection_context():
        assert _rows(db, 'SELECT * FROM "oauth_client_secret" ORDER BY "id"') == secrets_before
        changes: list[tuple[str, Callable[[], Any]]] = [
            ("new secret", lambda: _insert(db, "oauth_client_secret", **_secret(2, 2, 4))),
            ("secret expires", lambda: db.execute_sql(
                'UPDATE "oauth_client_secret" SET "expires_at" = ? WHERE "id" = 4'
                .replace("?", db.param), [expired])),
            ("secret deleted", lambda: db.execute_sql(
                'DELETE FROM "oauth_client_secret" WHERE "id" = 4')),
            ("client revoked", lambda: db.execute_sql(
                'UPDATE "oauth_client" SET "revoked_at" = ? WHERE "id" = 2'
                .replace("?", db.param), [expired])),
        ]  # fmt: skip
        for what, change in changes:
            before = _generation(db)
            change()
            assert _generation(db) == before + 1, what
        if isinstance(db, peewee.SqliteDatabase):
            assert _rows(db, "PRAGMA foreign_key_check") == []


def test_m0023_refuses_to_upgrade_a_secret_of_another_tenant_than_its_clients(
    new_database: NewDatabase,
) -> None:
    db = new_database()
    migrations.upgrade(db, target=BEFORE_M0023)
    with db.connection_context():
        with db.atomic():
            _two_clients(db)
            _insert(db, "oauth_client_secret", **_secret(tenant=1, client=2, n=1))
        with pytest.raises(RuntimeError, match=r"m0023: 1 oauth_client_secret row\(s\) belong"):
            migrations.upgrade(db)
        assert migrations.pending(db) == FROM_M0023
        assert _count(db, "oauth_client_secret") == 1
        db.execute_sql('UPDATE "oauth_client_secret" SET "tenant_id" = 2')
    assert migrations.upgrade(db) == FROM_M0023
