"""The peewee internals `app.store.prepared` relies on, checked one by one so that a peewee
release that moves them fails here, naming the internal, instead of somewhere in a SCIM answer.

peewee is pinned to one minor version in pyproject.toml; before raising the pin, run this.
"""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import pytest

from app.store import prepared, tenancy
from app.store.models import Group, Membership, User, UserValue
from tests.helpers import bound_database

MODELS = [User, UserValue, Group, Membership]

# The two dialects the service runs on (rendering SQL needs no connection), with their
# parameter placeholders.
SQLITE, POSTGRES = peewee.SqliteDatabase(None), peewee.PostgresqlDatabase(None)
DIALECTS = [pytest.param(SQLITE, "?", id="sqlite"), pytest.param(POSTGRES, "%s", id="postgres")]
DATABASES = [pytest.param(SQLITE, id="sqlite"), pytest.param(POSTGRES, id="postgres")]


@pytest.fixture
def sqlite() -> Iterator[peewee.SqliteDatabase]:
    """An in-memory database with the models' tables, behind the models' proxy meanwhile."""
    db = peewee.SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
    with db.bind_ctx(MODELS), bound_database(db):
        try:
            db.create_tables(MODELS)
            yield db
        finally:
            db.close()


# -- SQL text and parameters (prepared.tuples / prepared.models) ------------------------------


@pytest.mark.parametrize(("db", "placeholder"), DIALECTS)
def test_a_select_renders_to_sql_and_its_values_as_parameters(
    db: peewee.Database, placeholder: str
) -> None:
    probes = ["\x00probe-0\x00", "\x00probe-1\x00"]
    with db.bind_ctx(MODELS), tenancy.everywhere():  # without the tenant's own condition
        rendered = UserValue.select().where(UserValue.user.in_(probes)).sql()
    assert isinstance(rendered, tuple), "SelectBase.sql() no longer returns (sql, params)"
    sql, params = rendered
    assert isinstance(sql, str), "SelectBase.sql()[0] is not the SQL text"
    assert list(params) == probes, (
        "SelectBase.sql()[1]: the values no longer come back as parameters, unchanged and in "
        "order (prepared._template finds each id's place by its probe value)"
    )
    assert sql.count(placeholder) == len(probes), "SelectBase.sql(): not one placeholder per value"


# -- model metadata (prepared._plan, prepared.insert) -----------------------------------------


def test_model_metadata_has_the_shape_prepared_reads() -> None:
    meta = UserValue._meta
    assert isinstance(meta.columns, dict), "Metadata.columns is no longer a dict"
    assert meta.columns.get("user_id") is UserValue.user, (
        "Metadata.columns is no longer keyed by column name (user_id -> the `user` field)"
    )
    assert isinstance(meta.columns["user_id"], peewee.ForeignKeyField)
    assert meta.columns["user_id"].rel_field is User.id, "ForeignKeyField.rel_field changed"
    assert meta.fields.get("user") is UserValue.user, "Metadata.fields is no longer keyed by name"
    assert list(meta.sorted_fields) == [meta.fields[name] for name in meta.sorted_field_names], (
        "Metadata.sorted_fields is no longer the model's fields in order"
    )
    assert User._meta.primary_key is User.id, "Metadata.primary_key is no longer the key field"
    defaults = User._meta.defaults
    assert isinstance(defaults, dict), "Metadata.defaults is no longer a dict"
    assert defaults.get(User.version) == 1, "Metadata.defaults is no longer keyed by Field"
    assert callable(defaults.get(User.created)), "Metadata.defaults lost callable defaults"
    field = User.created
    assert field.python_value("2026-01-02 03:04:05.006000").microsecond == 6000, (
        "Field.python_value no longer converts a stored value"
    )
    assert UserValue.user.db_value("u1") == "u1", "ForeignKeyField.db_value changed"


# -- model instances (prepared.instances) -----------------------------------------------------


def test_a_loaded_row_is___data__dirty_and___rel__only(sqlite: peewee.Database) -> None:
    User.create(id="u1", user_name="Ann", user_name_key="ann")
    UserValue.create(user="u1", attr="emails", position=0, value="a@x", primary=True)
    loaded = UserValue.get()
    assert set(vars(loaded)) == {"__data__", "_dirty", "__rel__"}, (
        f"a peewee Model instance now holds {sorted(vars(loaded))}, not exactly __data__, _dirty "
        "and __rel__ (prepared.instances builds rows with those three only)"
    )
    assert isinstance(loaded.__data__, dict), "Model.__data__ is no longer a dict"
    assert loaded.__data__["user"] == "u1", (
        "Model.__data__ is no longer keyed by field name with the foreign key's raw value"
    )
    assert loaded._dirty == set(), "a freshly loaded row's Model._dirty is not an empty set"
    assert loaded.__rel__ == {}, "a freshly loaded row's Model.__rel__ is not an empty dict"


def test_prepared_rows_are_the_rows_peewee_loads(sqlite: peewee.Database) -> None:
    User.create(id="u1", user_name="Ann", user_name_key="ann")
    sql, params = User.select().where(User.id == "u1").sql()
    (built,) = prepared.instances(User, sql, params)
    loaded = User.get_by_id("u1")
    assert vars(built) == vars(loaded), (
        "prepared.instances builds a different instance than peewee loads: Model.__data__, "
        "_dirty or __rel__ changed meaning"
    )
    assert built.created == loaded.created
    assert built.active is True


def test_fields_read_and_write___data__and_mark__dirty() -> None:
    row = UserValue.__new__(UserValue)
    row.__data__, row._dirty, row.__rel__ = {"user": "u1", "position": 3}, set(), {}
    assert row.position == 3, "a field no longer reads Model.__data__"
    assert row.user_id == "u1", "a foreign key's `_id` accessor no longer reads Model.__data__"
    assert not row.is_dirty(), "Model.is_dirty() no longer reads Model._dirty"
    row.value = "b@x"
    assert row.__data__["value"] == "b@x", "a field no longer writes Model.__data__"
    assert row._dirty == {"value"}, "setting a field no longer adds its name to Model._dirty"
    user = User(id="u1")
    row.user = user
    assert row.__rel__ == {"user": user}, "Model.__rel__ no longer caches the related instance"


# -- SELECT column lists (prepared.rows) ------------------------------------------------------


@pytest.mark.parametrize("db", DATABASES)
def test_a_selects_column_list_is__returning(db: peewee.Database) -> None:
    with db.bind_ctx(MODELS):
        query = User.select().where(User.active == True).order_by(User.id).limit(5)  # noqa: E712
        assert isinstance(query._returning, list | tuple), "ModelSelect._returning is gone"
        assert list(query._returning) == list(User._meta.sorted_fields), (
            "Model.select()._returning is no longer every field in order"
        )
        whole, params = query.sql()
        narrow_query = query.clone()
        narrow_query._returning = (User._meta.primary_key,)
        narrow, narrow_params = narrow_query.sql()
        assert query.sql() == (whole, params), "ModelSelect.clone() shares _returning"
        head, _ = User.select().sql()
        key, _ = User.select(User._meta.primary_key).sql()
    head, key = head.split(" FROM ", 1)[0], key.split(" FROM ", 1)[0]
    assert narrow.startswith(key + " FROM "), (
        "setting ModelSelect._returning no longer renders only those columns"
    )
    assert whole == head + narrow[len(key) :], (
        "a select renders as `SELECT <columns> FROM …`: swapping the column list of one with "
        "_returning no longer gives the other"
    )
    assert narrow_params == params


def _values_count() -> peewee.Node:
    """A correlated subquery such as `users.CHILDREN`'s, small enough for these tables."""
    count = UserValue.select(peewee.fn.COUNT(UserValue.id)).where(UserValue.user == User.id)
    return count.alias("n_values")


N_VALUES = prepared.Column(User, "contract_n_values", _values_count)


@pytest.mark.parametrize("db", DATABASES)
@pytest.mark.parametrize("tenant", [7, None], ids=["tenant", "everywhere"])
def test_a_prepared_column_renders_as_the_subquery_peewee_renders(
    db: peewee.Database, tenant: int | None
) -> None:
    scope = tenancy.use(tenant) if tenant is not None else tenancy.everywhere()
    with db.bind_ctx(MODELS), bound_database(db), scope:
        query = User.select().select_extend(N_VALUES).where(User.id == "u1")
        spliced = query.sql()
        direct = User.select().select_extend(_values_count()).where(User.id == "u1").sql()
        again = query.sql()
    assert spliced == direct, (
        "prepared.Column: Context.literal/Context.value(converter=False) no longer splice the "
        "cached SQL text and its parameters as peewee renders the subquery"
    )
    assert again == spliced
    assert all(a is b for a, b in zip(query._returning, User._meta.sorted_fields, strict=False)), (
        "ModelSelect.select_extend no longer keeps every field first (prepared.rows)"
    )


def test_prepared_rows_with_a_column_are_the_rows_peewee_loads(sqlite: peewee.Database) -> None:
    User.create(id="u1", user_name="Ann", user_name_key="ann")
    UserValue.create(user="u1", attr="emails", position=0, value="a@x")
    query = User.select().select_extend(N_VALUES).where(User.id == "u1")
    (built,) = prepared.rows(query)
    (loaded,) = list(query)
    assert built.n_values == loaded.n_values == 1, (
        "peewee no longer sets an extra column (a ColumnBase, _converter None) as an attribute"
    )
    assert built.__data__ == loaded.__data__


# -- multi-row INSERT (prepared._Inserter) ----------------------------------------------------


@pytest.mark.parametrize(("db", "placeholder"), DIALECTS)
def test_insert_many_renders_one_values_group_without_returning(
    db: peewee.Database, placeholder: str
) -> None:
    # Every field of the row, as `prepared.insert` gives them (peewee would add a field with a
    # default that the list left out, such as `tenant_id`).
    fields = [UserValue.tenant_id, UserValue.user, UserValue.attr, UserValue.position]
    with db.bind_ctx(MODELS):
        sql, _ = UserValue.insert_many([(None,) * 4], fields=fields).returning().sql()
    head, _, group = sql.rpartition(" VALUES ")
    assert head == 'INSERT INTO "user_value" ("tenant_id", "user_id", "attr", "position")', (
        "insert_many(...).sql() no longer starts `INSERT INTO <table> (<columns>) VALUES`"
    )
    assert group == f"({placeholder}, {placeholder}, {placeholder}, {placeholder})", (
        "insert_many(...).returning() no longer ends with one `(?, …)` group and no RETURNING"
    )
