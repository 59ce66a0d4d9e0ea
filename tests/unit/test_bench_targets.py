"""bench/run.py's target column: issue 20's share of the ceiling per database, the OAuth
look-up against the static one in the same case, and the p99/p50 tail of single-resource
phases."""

from __future__ import annotations

from types import ModuleType
from typing import Any


def _phase(rps: float, p50: float = 2.0, p99: float = 6.0) -> dict[str, Any]:
    return {"ok_rps": rps, "p50_ms": p50, "p99_ms": p99}


def _case(db: str, **phases: dict[str, Any]) -> dict[str, Any]:
    return {"db": db, "scimbench": {"phases": phases}}


def test_a_phase_is_held_to_its_database_target(bench_run: ModuleType) -> None:
    put = _phase(900)
    cell = bench_run.target_cell
    assert cell("put", 0.30, put, _case("sqlite"), {}).startswith("≥0.35 MISSED")
    assert cell("put", 0.30, put, _case("postgres"), {}).startswith("≥0.28 met")
    assert cell("list_start", 0.09, _phase(250), _case("postgres"), {}) == "≥0.08 met"


def test_the_oauth_look_up_is_held_to_the_static_one_of_the_same_case(
    bench_run: ModuleType,
) -> None:
    case = _case("sqlite", lookup=_phase(1000))
    assert bench_run.target_cell("lookup_jwt", 0.3, _phase(1010), case, {}).startswith(
        "≥ lookup: 1.01x met"
    )
    assert "0.95x MISSED" in bench_run.target_cell("lookup_jwt", 0.3, _phase(950), case, {})


def test_a_single_resource_phase_shows_its_tail(bench_run: ModuleType) -> None:
    slow_tail = _phase(1000, p50=2.0, p99=9.0)
    assert bench_run.target_cell("lookup_miss", 0.4, slow_tail, _case("sqlite"), {}) == (
        "p99 4.5x p50 MISSED"
    )
    assert bench_run.target_cell("big_group_get", 0.01, slow_tail, _case("sqlite"), {}) == "-"
