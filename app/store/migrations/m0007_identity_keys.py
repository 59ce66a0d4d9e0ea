"""Identity keys become the NFKC case-fold of the name, invisible characters removed.

`lms_user.user_name_key`, the e-mail rows' `value_key` and `unique_key` and the groups'
`display_name_key` and `unique_name_key` held `str.lower()` of the name; they now hold
`scim_schemas.identity.identity_key`. Only rows whose key changes are written (an ASCII name's
key does not), in pages, inside the migration's one transaction, so a failure leaves the old
keys whole.

Where two rows now share a unique key, nothing is merged and nothing fails: the row that
already held the key (or, among rows whose key changed, the first by id) keeps it; every other
one stores it marked (`app.store.collisions`), which keeps the plain key taken, and an
`identity_collision` audit event names both. `lms-scim users duplicates` lists the pairs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

import peewee
from playhouse.migrate import SchemaMigrator

from app.store.collisions import marked
from scim_schemas.identity import identity_key

# The length the key columns index (`app.store.models.MAX_INDEXED_LENGTH` at this release).
_INDEXED = 512
_PAGE = 5000


@dataclass(frozen=True)
class _Key:
    """One key column: its table, the name it folds, who owns a row, and which rows have one."""

    table: str
    column: str
    source: str
    owner: str
    resource_type: str
    where: str = "1 = 1"
    unique: bool = False


_KEYS = (
    _Key("lms_user", "user_name_key", "user_name", "id", "User", unique=True),
    _Key("user_value", "value_key", "value", "user_id", "User", "attr = 'emails'"),
    _Key(
        "user_value",
        "unique_key",
        "value",
        "user_id",
        "User",
        "attr = 'emails' AND unique_key IS NOT NULL",
        unique=True,
    ),
    _Key("lms_group", "display_name_key", "display_name", "id", "Group"),
    _Key(
        "lms_group",
        "unique_name_key",
        "display_name",
        "id",
        "Group",
        "unique_name_key IS NOT NULL",
        unique=True,
    ),
)


def _rows(db: peewee.Database, key: _Key) -> Iterator[tuple[object, str, str | None, str]]:
    """(id, owner, stored key, new key) of every row, a page at a time by id."""
    p = db.param
    last: object = None
    while True:
        after = f"AND id > {p}" if last is not None else ""
        sql = (
            f'SELECT id, "{key.owner}", "{key.column}", "{key.source}" FROM "{key.table}" '  # noqa: S608
            f'WHERE {key.where} AND "{key.source}" IS NOT NULL {after} ORDER BY id LIMIT {_PAGE}'
        )
        page = db.execute_sql(sql, (last,) if last is not None else ()).fetchall()
        for row_id, owner, stored, source in page:
            yield row_id, owner, stored, identity_key(source)[:_INDEXED]
        if len(page) < _PAGE:
            return
        last = page[-1][0]


def _holder(db: peewee.Database, key: _Key, value: str, changing: set[object]) -> str | None:
    """The owner of an unchanged row that already holds `value`, if any."""
    sql = f'SELECT id, "{key.owner}" FROM "{key.table}" WHERE "{key.column}" = {db.param}'  # noqa: S608
    for row_id, owner in db.execute_sql(sql, (value,)).fetchall():
        if row_id not in changing:
            return owner
    return None


def _record(db: peewee.Database, key: _Key, owner: str, value: str, kept_by: str) -> None:
    p = db.param
    changes = json.dumps({"attribute": key.column, "key": value, "kept_by": kept_by})
    columns = "at, token_name, resource_type, resource_id, operation, changes"
    db.execute_sql(
        f'INSERT INTO "audit_event" ({columns}) VALUES ({p}, {p}, {p}, {p}, {p}, {p})',  # noqa: S608
        (
            dt.datetime.now(dt.UTC).replace(tzinfo=None),
            "m0007",
            key.resource_type,
            owner,
            "identity_collision",
            changes,
        ),
    )


def _final_keys(
    db: peewee.Database, key: _Key, changed: list[tuple[object, str, str]]
) -> dict[object, str | None]:
    """Each changed row's new key: plain, marked where another owner holds it, or NULL where
    the same owner already has it (a user's two addresses that became one)."""
    if not key.unique:
        return {row_id: new for row_id, _owner, new in changed}
    changing = {row_id for row_id, _owner, _new in changed}
    claimed: dict[str, str] = {}
    final: dict[object, str | None] = {}
    for row_id, owner, new in changed:
        holder = claimed.get(new) or _holder(db, key, new, changing)
        if holder is None:
            claimed[new] = owner
            final[row_id] = new
        elif holder == owner:
            final[row_id] = None
        else:
            final[row_id] = marked(new, owner)
            _record(db, key, owner, new, holder)
    return final


def _rekey(db: peewee.Database, key: _Key) -> None:
    changed = [(i, owner, new) for i, owner, stored, new in _rows(db, key) if stored != new]
    final = _final_keys(db, key, changed)
    update = f'UPDATE "{key.table}" SET "{key.column}" = {db.param} WHERE id = {db.param}'  # noqa: S608
    if key.unique:
        # Out of the way first, so no row meets another's old key on its way to the new one.
        for row_id in final:
            db.execute_sql(update, (f"\x1e{row_id}", row_id))
    for row_id, value in final.items():
        db.execute_sql(update, (value, row_id))


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    for key in _KEYS:
        _rekey(db, key)
