#!/usr/bin/env python3
"""The README's performance chart, from a `bench/run.py` result (default: the latest).

Left: requests/s per phase for each database at its largest size, beside the ceiling (bare
Flask under the same gunicorn settings). Right: `userName eq` lookup latency (p50 and p99)
against the number of users, per database. Writes a PNG (default `bench/results/latest.png`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def chart(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ceiling = (result.get("ceiling") or {}).get("phases", {})
    cases = [c for c in result["cases"] if c.get("scimbench")]
    # A run with `--tenants 1,T` has two cases per size: the chart tells the sizes' story with
    # the single-tenant ones (run.py's table compares the tenants).
    cases = [c for c in cases if c.get("tenants", 1) == 1] or cases
    largest: dict[str, dict[str, Any]] = {}
    for case in cases:
        if case["users"] >= largest.get(case["db"], {}).get("users", 0):
            largest[case["db"]] = case
    phases = [p for p in ceiling if p not in ("groups_create", "groups_fill", "big_group_get")]

    fig, (bars, lines) = plt.subplots(
        1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [2.4, 1]}, layout="constrained"
    )
    series = [("ceiling (bare Flask)", {p: ceiling[p]["rps"] for p in phases})]
    for db, case in largest.items():
        found = case["scimbench"]["phases"]
        series.append(
            (
                f"lms-scim {db}, {case['users']:,} users",
                {p: found.get(p, {}).get("ok_rps", 0) for p in phases},
            )
        )
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(phases))]
        bars.bar(xs, [values[p] for p in phases], width, label=label)
    bars.set_xticks(range(len(phases)), phases, rotation=55, ha="right")
    bars.set_ylabel("requests/s (correct answers)")
    bars.set_yscale("log")
    bars.set_title("Requests/s per phase against the ceiling (2 workers, 2 CPUs)")
    bars.legend(fontsize=8)
    bars.grid(axis="y", alpha=0.3)

    for db in dict.fromkeys(c["db"] for c in cases):
        points = sorted(
            (c["users"], c["scimbench"]["phases"].get("lookup", {})) for c in cases if c["db"] == db
        )
        xs = [n for n, s in points if s]
        lines.plot(xs, [s["p50_ms"] for _, s in points if s], marker="o", label=f"{db} p50")
        lines.plot(
            xs, [s["p99_ms"] for _, s in points if s], marker="x", ls="--", label=f"{db} p99"
        )
    lines.set_xscale("log")
    lines.set_xlabel("users in the store")
    lines.set_ylabel("ms")
    lines.set_title('Lookup (userName eq "…") latency by store size')
    lines.legend(fontsize=8)
    lines.grid(alpha=0.3)
    fig.suptitle(f"lms-scim bench {result['started_at']}", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", nargs="?", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.png")
    args = p.parse_args(argv)
    if not args.result.exists():
        print(f"no result at {args.result}: run bench/run.py first", file=sys.stderr)
        return 1
    chart(load(args.result), args.out)
    print(f"chart: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
