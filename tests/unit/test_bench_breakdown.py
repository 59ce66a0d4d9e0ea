"""bench/breakdown.py: how a call tree is summed into the parts of a request. A feature takes
everything under its outermost frame (its own queries too); other time goes to the innermost
layer a frame names, and a frame no rule names counts for its caller's layer."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

BREAKDOWN = Path(__file__).resolve().parents[2] / "bench" / "breakdown.py"


@pytest.fixture(scope="module")
def breakdown() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_breakdown", BREAKDOWN)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Frame:
    file_path: str
    function: str
    total_self_time: float
    children: list[Frame] = field(default_factory=list)


PEEWEE = "/venv/lib/python3.11/site-packages/peewee.py"


def test_a_features_queries_are_the_features(breakdown: ModuleType) -> None:
    execute = Frame(PEEWEE, "execute_sql", 3.0)
    audit = Frame("/repo/app/store/audit.py", "record", 1.0, [execute])
    root = Frame("/flask/app.py", "dispatch", 0.5, [audit])
    parts = breakdown.attribute(root)
    assert parts == {"audit": 4.0, "framework": 0.5}


def test_time_goes_to_the_innermost_layer_and_unnamed_frames_to_their_callers(
    breakdown: ModuleType,
) -> None:
    stdlib = Frame("/usr/lib/python3.11/uuid.py", "uuid4", 0.25)
    fetch = Frame(PEEWEE, "iterate", 2.0)
    execute = Frame(PEEWEE, "execute_sql", 4.0)
    store = Frame("/repo/app/store/users.py", "get", 1.0, [execute, fetch, stdlib])
    dumps = Frame("/usr/lib/python3.11/json/encoder.py", "encode", 0.5)
    marshal = Frame("/repo/app/marshal/fields.py", "dump", 1.5, [dumps])
    endpoint = Frame("/repo/app/scim/users.py", "get_user", 0.25, [store, marshal])
    parts = breakdown.attribute(Frame("/werkzeug/test.py", "run", 0.0, [endpoint]))
    assert parts["driver calls"] == 4.0
    assert parts["peewee & rows"] == 2.0
    assert parts["store logic"] == 1.25  # users.get and the uuid4 it called
    assert parts["serialisation"] == 2.0
    assert parts["endpoint"] == 0.25


def test_the_log_line_is_not_swallowed_by_the_request_accounting(breakdown: ModuleType) -> None:
    log = Frame("/usr/lib/python3.11/logging/__init__.py", "log", 0.75)
    count = Frame("/repo/app/observability.py", "_count", 0.25)
    finished = Frame("/repo/app/observability.py", "_finished", 0.125, [count, log])
    parts = breakdown.attribute(finished)
    assert parts["log line"] == 0.75
    assert parts["metrics"] == 0.25


def test_round_trips_count_statements_and_transactions(breakdown: ModuleType) -> None:
    class Database:
        def execute_sql(self, sql: str) -> str:
            return sql

        def begin(self) -> None: ...

        def commit(self) -> None: ...

        def rollback(self) -> None: ...

    db = Database()
    counter = breakdown.RoundTrips()
    with counter.counting(db):
        db.begin()
        assert db.execute_sql("SELECT 1") == "SELECT 1"
        db.execute_sql("UPDATE x")
        db.commit()
        db.execute_sql("SELECT 2")
    db.execute_sql("not counted: the class is restored")
    assert counter.per_request(1) == {"statements": 3, "transactions": 1, "round trips": 5}
    table = breakdown.table(
        [("get", 2.0, breakdown.attribute(Frame(PEEWEE, "commit", 1.0)), counter.per_request(1))]
    )
    assert "| get | 2.000 | 2.000 | 3.0 | 5.0 |" in table

    class Deferring(Database):
        BEGIN_WITH_FIRST_STATEMENT = True  # as app.store.db.CheckedPool

    deferring = breakdown.RoundTrips()
    counted_db = Deferring()
    with deferring.counting(counted_db):
        counted_db.begin()
        counted_db.execute_sql("UPDATE x")
        counted_db.commit()
    assert deferring.per_request(1) == {"statements": 1, "transactions": 1, "round trips": 2}
