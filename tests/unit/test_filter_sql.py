"""The filter compiler (`app.store.filter_sql`): filter ASTs → SQL through the allow-list.

RFC 7644 §3.4.2.2 (filters) and §3.4.2.3 (sortBy). Table-driven: each filter is compiled with
Peewee and its SQL and bound parameters checked (SQLite and PostgreSQL dialects, no server
needed), then run against an in-memory SQLite database, so a wrong column, a lost fold, an
unescaped wildcard or a keyset that skips a row fails here and not only in the API tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import peewee
import pytest

from app.errors import InvalidFilter, InvalidValue
from app.filters import And, AttrRef, Compare, Present, ValuePath, parse
from app.store import tenancy
from app.store.filter_sql import GROUP_COMPILER, USER_COMPILER, Compiler
from app.store.models import Group, Membership, User, UserAddress, UserValue
from app.store.paging import Sort
from scim_schemas import ENTERPRISE_USER, LMS_USER, fold, resource_type
from tests.helpers import bound_database

USER = resource_type("User")
GROUP = resource_type("Group")
MODELS = (User, UserValue, UserAddress, Group, Membership)


@pytest.fixture(autouse=True)
def _every_tenant() -> Iterator[None]:
    """The compiler's own SQL, without the tenant condition every model query carries (rows
    are written for the default tenant)."""
    with tenancy.everywhere():
        yield


@pytest.fixture
def sqlite() -> Iterator[peewee.Database]:
    db = peewee.SqliteDatabase(":memory:")
    # As `app.store.db` registers it: SQLite's lower() folds ASCII only.
    db.register_function(lambda v: fold(v) if isinstance(v, str) else v, "scim_fold", 1)
    with bound_database(db):
        db.create_tables(MODELS)
        yield db
    db.close()


@pytest.fixture
def postgres() -> Iterator[peewee.Database]:
    """The PostgreSQL dialect only: `query.sql()` never connects."""
    with bound_database(peewee.PostgresqlDatabase("never-connected")) as db:
        yield db


def _compiler(rtype: Any) -> tuple[Compiler, type[peewee.Model]]:
    return (USER_COMPILER, User) if rtype is USER else (GROUP_COMPILER, Group)


def query(text: str, rtype: Any = USER) -> peewee.ModelSelect:
    compiler, model = _compiler(rtype)
    return model.select(model.id).where(compiler.compile(parse(text, rtype)))


def ids(text: str, rtype: Any = USER) -> set[str]:
    return {row.id for row in query(text, rtype)}


def add_user(user_id: str, user_name: str, *, emails: tuple[Any, ...] = (), **columns: Any) -> str:
    with tenancy.use(tenancy.DEFAULT_TENANT):
        User.create(id=user_id, user_name=user_name, user_name_key=fold(user_name), **columns)
        for position, (value, kind) in enumerate(emails):
            UserValue.create(
                user=user_id,
                attr="emails",
                position=position,
                value=value,
                value_key=fold(value),
                type=kind,
            )
    return user_id


# --- the SQL a filter compiles to ----------------------------------------------------------

SQLITE_CASES = [
    pytest.param(
        'userName eq "BJensen"',
        ['"t1"."user_name_key" = ?'],
        ["bjensen"],
        ["scim_fold", '"user_name" ='],
        id="userName-uses-its-folded-key-column",
    ),
    pytest.param(
        'externalId eq "AbC"',
        ['"t1"."external_id" = ?'],
        ["AbC"],
        ["scim_fold"],
        id="caseExact-compares-the-raw-column",
    ),
    pytest.param('id eq "ABC"', ['"t1"."id" = ?'], ["ABC"], ["scim_fold"], id="id-is-caseExact"),
    pytest.param(
        'title eq "Lead"',
        ['scim_fold("t1"."title") = ?'],
        ["lead"],
        [],
        id="caseless-without-a-key-column-folds-both-sides",
    ),
    pytest.param(
        'userName co "a%b_c"',
        ['instr("t1"."user_name_key", ?) > ?'],
        ["a%b_c", 0],
        ["LIKE", "GLOB"],
        id="co-is-instr-not-LIKE",
    ),
    pytest.param(
        'userName sw "A_"',
        ['substr("t1"."user_name_key", ?, ?) = ?'],
        [1, 2, "a_"],
        ["LIKE"],
        id="sw-is-substr",
    ),
    pytest.param(
        'userName ew "%Z"',
        ['substr("t1"."user_name_key", ?) = ?'],
        [-2, "%z"],
        ["LIKE"],
        id="ew-is-substr-from-the-end",
    ),
    pytest.param(
        'emails.value eq "X@Y"',
        ['"t1"."id" IN (SELECT "t2"."user_id" FROM "user_value" AS "t2"', '"t2"."attr" = ?'],
        ["emails", "x@y"],
        ["EXISTS"],
        id="multi-valued-is-id-IN-a-child-select",
    ),
    pytest.param(
        'emails.value ne "x@y"',
        [
            '("t2"."value_key" IS NULL) OR ("t2"."value_key" != ?)',
            'OR NOT ("t1"."id" IN (SELECT "t2"."user_id" FROM "user_value" AS "t2" '
            'WHERE ("t2"."attr" = ?)))',
        ],
        ["emails", "x@y", "emails"],
        [],
        id="ne-on-multi-valued-includes-users-without-any",
    ),
    pytest.param(
        'emails[type eq "work" and value sw "a"]',
        ['"t1"."id" IN (SELECT', 'scim_fold("t2"."type") = ?', 'substr("t2"."value_key", ?, ?)'],
        ["emails", "work", 1, 1, "a"],
        [],
        id="a-value-path-is-one-child-select",
    ),
    pytest.param(
        'meta.created gt "2020-01-01T02:00:00+02:00"',
        ['"t1"."created" > ?'],
        [dt.datetime(2020, 1, 1)],  # noqa: DTZ001 - stored as naive UTC
        [],
        id="dateTime-values-become-naive-UTC",
    ),
    pytest.param('meta.resourceType eq "User"', ["WHERE 1 = 1"], [], [], id="resourceType-eq"),
    pytest.param('meta.resourceType eq "Group"', ["WHERE 1 = 0"], [], [], id="resourceType-other"),
    pytest.param('meta.resourceType ne "User"', ["WHERE 1 = 0"], [], [], id="resourceType-ne"),
    pytest.param("meta.resourceType pr", ["WHERE 1 = 1"], [], [], id="resourceType-pr"),
    pytest.param(
        "title pr",
        ['("t1"."title" IS NOT NULL) AND ("t1"."title" != ?)'],
        [""],
        [],
        id="pr-on-text-excludes-empty",
    ),
    pytest.param(
        "active pr", ['"t1"."active" IS NOT NULL'], [], ["!="], id="pr-on-a-boolean-is-not-null"
    ),
    pytest.param(
        'not (title eq "x")', ["NOT (("], ["x"], [], id="not-wraps-the-null-safe-comparison"
    ),
    pytest.param(
        'title gt "b"', ['scim_fold("t1"."title") > ?'], ["b"], ["COLLATE"], id="sqlite-gt"
    ),
]


@pytest.mark.parametrize(("text", "fragments", "params", "absent"), SQLITE_CASES)
def test_sqlite_sql(
    sqlite: peewee.Database, text: str, fragments: list[str], params: list[Any], absent: list[str]
) -> None:
    sql, bound = query(text).sql()
    for fragment in fragments:
        assert fragment in sql, sql
    for fragment in absent:
        assert fragment not in sql, sql
    assert bound == params


POSTGRES_CASES = [
    pytest.param('title co "a%"', ['strpos(LOWER("t1"."title"), %s) > %s'], ["a%", 0], id="co"),
    pytest.param('title ew "B"', ['right(LOWER("t1"."title"), %s) = %s'], [1, "b"], id="ew"),
    pytest.param(
        'title gt "b"', ['LOWER("t1"."title") COLLATE "C" > %s'], ["b"], id="gt-by-code-point"
    ),
    pytest.param(
        'userName eq "X"', ['"t1"."user_name_key" = %s'], ["x"], id="key-column-needs-no-LOWER"
    ),
]


@pytest.mark.parametrize(("text", "fragments", "params"), POSTGRES_CASES)
def test_postgres_sql(
    postgres: peewee.Database, text: str, fragments: list[str], params: list[Any]
) -> None:
    sql, bound = query(text).sql()
    for fragment in fragments:
        assert fragment in sql, sql
    assert "scim_fold" not in sql
    assert bound == params


def test_group_resource_type_and_members(sqlite: peewee.Database) -> None:
    assert query('meta.resourceType eq "Group"', GROUP).sql()[0].endswith("WHERE 1 = 1")
    sql, bound = query('members.value eq "ABC"', GROUP).sql()
    assert '"t1"."id" IN (SELECT "t2"."group_id" FROM "membership" AS "t2"' in sql
    assert bound == ["abc"]  # ids are lower-case hex, so a folded id is the id


# --- what the SQL selects -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName co "%b_"', {"u1"}),  # `%` and `_` are plain characters
        ('userName sw "a%"', {"u1"}),
        ('userName ew "_c@x"', {"u1"}),
        ('userName co "b"', {"u1", "u2"}),
        ('userName eq "A%B_C@X"', {"u1"}),
        ('externalId eq "AbC"', {"u2"}),
        ('externalId eq "abc"', set()),  # caseExact
        ('title eq "LEAD"', {"u1"}),
        ('title ne "lead"', {"u2", "u3"}),  # null is "not identical" to any value
        ('not (title eq "lead")', {"u2", "u3"}),
        ('emails.value ne "d@x"', {"u1", "u3"}),  # u3 has no e-mail: one null value
        ('emails.value ne "a@x"', {"u1", "u2", "u3"}),  # u1's other e-mails are not a@x
        ('emails.value eq "A@X"', {"u1"}),
        ('emails[type eq "work" and value co "@x"]', {"u1"}),
        ('emails[type eq "home" and value co "@y"]', set()),  # one e-mail must match both
        ('emails.type eq "home" and emails.value co "@y"', {"u1"}),  # any e-mail each
        ("emails pr", {"u1", "u2"}),
        ("title pr", {"u1"}),  # u2's title is "", which is not present
        ('title gt "a"', {"u1"}),
        ('meta.resourceType eq "Group"', set()),
    ],
)
def test_selected_users(sqlite: peewee.Database, text: str, expected: set[str]) -> None:
    add_user(
        "u1", "a%b_c@x", title="Lead", emails=(("a@x", "work"), ("b@y", "work"), ("c@z", "home"))
    )
    add_user("u2", "axbyc@x", external_id="AbC", title="", emails=(("d@x", "home"),))
    add_user("u3", "n@x")
    assert ids(text) == expected


def test_group_display_pr_and_member_display(sqlite: peewee.Database) -> None:
    """Scalar-subquery columns (a user's `groups.display`, a group's `members.display`)."""
    add_user("u1", "member@x", display_name="Mem")
    add_user("u2", "loner@x")
    with tenancy.use(tenancy.DEFAULT_TENANT):
        Group.create(id="g1", display_name="Teachers", display_name_key="teachers")
        Membership.create(group="g1", user="u1")
    assert ids("groups.display pr") == {"u1"}
    assert ids('groups.display eq "TEACHERS"') == {"u1"}
    assert ids("members.display pr", GROUP) == {"g1"}
    assert ids('members.display eq "mem"', GROUP) == {"g1"}
    assert ids('members.type eq "User"', GROUP) == {"g1"}


# --- what cannot be filtered -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rtype"),
    [
        ("meta.location pr", USER),
        ('meta.version eq "W/\\"1\\""', USER),
        ('groups.type eq "direct"', USER),
        ("groups.$ref pr", USER),
        (f'{ENTERPRISE_USER}:manager.displayName eq "x"', USER),
        (f'{LMS_USER}:enrolments.courseId eq "x"', USER),
        ('meta.resourceType gt "User"', USER),
        ("members.$ref pr", GROUP),
        ('nosuchAttribute eq "x"', USER),  # refused by the parser already
        ('password eq "x"', USER),
    ],
)
def test_unfilterable_attributes_are_invalid_filter(
    sqlite: peewee.Database, text: str, rtype: Any
) -> None:
    with pytest.raises(InvalidFilter):
        query(text, rtype)


def _ref(path: str) -> AttrRef:
    resolved = USER.resolve(path)
    assert resolved is not None
    return AttrRef(resolved.attribute, resolved.sub)


def test_the_compiler_refuses_what_the_parser_would_not_build(sqlite: peewee.Database) -> None:
    """The allow-list holds even for a hand-made AST."""
    with pytest.raises(InvalidFilter, match="password cannot be filtered"):
        USER_COMPILER.compile(Compare(_ref("password"), "eq", "guess"))
    emails = _ref("emails")
    nested = ValuePath(emails, ValuePath(emails, Present(_ref("emails.value"))))
    with pytest.raises(InvalidFilter, match="Nested value paths"):
        USER_COMPILER.compile(nested)
    group_ref = AttrRef(GROUP.resolve("displayName").attribute)  # type: ignore[union-attr]
    with pytest.raises(InvalidFilter):
        USER_COMPILER.compile(And(Present(_ref("title")), Present(group_ref)))


# --- sortBy ----------------------------------------------------------------------------------


def _attribute(path: str, rtype: Any = USER) -> Any:
    resolved = rtype.resolve(path)
    assert resolved is not None
    return resolved.sub or resolved.attribute


def _order_sql(sort: Sort) -> str:
    return User.select(User.id).order_by(*sort.order_by()).sql()[0]


def test_sort_by_sql_puts_nulls_last_and_ends_in_the_id(sqlite: peewee.Database) -> None:
    up = _order_sql(USER_COMPILER.order(_attribute("userName"), False))
    assert up.endswith(
        'ORDER BY CASE WHEN ("t1"."user_name_key" IS NULL) THEN ? ELSE ? END, '
        '"t1"."user_name_key" ASC, "t1"."id" ASC'
    )
    down = _order_sql(USER_COMPILER.order(_attribute("userName"), True))
    assert down.endswith(
        'ORDER BY CASE WHEN ("t1"."user_name_key" IS NULL) THEN ? ELSE ? END, '
        '"t1"."user_name_key" DESC, "t1"."id" DESC'
    )
    assert 'scim_fold("t1"."title") ASC' in _order_sql(
        USER_COMPILER.order(_attribute("title"), False)
    )
    assert _order_sql(USER_COMPILER.order(None, True)).endswith('ORDER BY "t1"."id" DESC')


def test_sort_by_sql_on_postgres_orders_by_code_point(postgres: peewee.Database) -> None:
    sql = _order_sql(USER_COMPILER.order(_attribute("title"), False))
    assert 'LOWER("t1"."title") COLLATE "C" ASC' in sql


@pytest.mark.parametrize(
    ("path", "rtype"),
    [("meta.location", USER), ("groups", USER), ("password", USER), ("members", GROUP)],
)
def test_cannot_sort_by_unmapped_attributes(sqlite: peewee.Database, path: str, rtype: Any) -> None:
    compiler, _ = _compiler(rtype)
    with pytest.raises(InvalidValue):
        compiler.order(_attribute(path, rtype), False)


TITLES = {"u1": "b", "u2": None, "u3": "A", "u4": "a", "u5": None, "u6": "c", "u7": "B"}


def _expected_order(descending: bool) -> list[str]:
    present = [(fold(title), uid) for uid, title in TITLES.items() if title is not None]
    nulls = sorted((uid for uid, title in TITLES.items() if title is None), reverse=descending)
    return [uid for _, uid in sorted(present, reverse=descending)] + nulls


def _sorted_ids(sort: Sort, condition: Any = None) -> list[str]:
    select = sort.select(User.select(User.id))
    if condition is not None:
        select = select.where(condition)
    return [row.id for row in select.order_by(*sort.order_by())]


@pytest.mark.parametrize("descending", [False, True])
def test_sort_by_orders_nulls_last_with_an_id_tie_break(
    sqlite: peewee.Database, descending: bool
) -> None:
    for uid, title in TITLES.items():
        add_user(uid, f"{uid}@x", title=title)
    sort = USER_COMPILER.order(_attribute("title"), descending)
    assert _sorted_ids(sort) == _expected_order(descending)


def test_sort_by_a_multi_valued_attribute_uses_the_primary_value(sqlite: peewee.Database) -> None:
    add_user("u1", "one@x", emails=(("z@x", "work"), ("a@x", "home")))
    add_user("u2", "two@x", emails=(("m@x", "work"),))
    add_user("u3", "three@x")
    UserValue.update(primary=True).where(UserValue.value == "z@x").execute()
    sort = USER_COMPILER.order(_attribute("emails"), False)
    assert _sorted_ids(sort) == ["u2", "u1", "u3"]


# --- keyset seeks (RFC 9865 cursors) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "descending"), [("title", False), ("title", True), (None, False), (None, True)]
)
def test_after_continues_the_order_from_every_position(
    sqlite: peewee.Database, path: str | None, descending: bool
) -> None:
    for uid, title in TITLES.items():
        add_user(uid, f"{uid}@x", title=title)
    sort = USER_COMPILER.order(_attribute(path) if path else None, descending)
    rows = list(sort.select(User.select(User.id)).order_by(*sort.order_by()))
    everything = [row.id for row in rows]
    for n, row in enumerate(rows):
        assert _sorted_ids(sort, sort.after(sort.position(row))) == everything[n + 1 :], row.id


def test_after_sql(sqlite: peewee.Database) -> None:
    sort = Sort(User.id, User.title)
    sql, params = User.select(User.id).where(sort.after(("b", "u1"))).sql()
    assert '("t1"."title" IS NULL) OR ("t1"."title" > ?)' in sql
    assert '("t1"."title" = ?) AND ("t1"."id" > ?)' in sql
    assert params == ["b", "b", "u1"]
    sql, params = User.select(User.id).where(sort.after((None, "u5"))).sql()
    assert sql.endswith('WHERE (("t1"."title" IS NULL) AND ("t1"."id" > ?))')
    assert params == ["u5"]
    backwards = Sort(User.id, None, descending=True)
    assert User.select(User.id).where(backwards.after((None, "u5"))).sql() == (
        'SELECT "t1"."id" FROM "lms_user" AS "t1" WHERE ("t1"."id" < ?)',
        ["u5"],
    )
