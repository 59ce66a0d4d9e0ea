"""Provisioning activity as a stacked bar chart, laid out here and drawn as inline SVG by the
template: no JavaScript, no chart library, readable with CSS off (each bar has a <title>)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, BOTTOM, TOP = 40, 24, 24, 8
# Stable colours per operation, so "deactivate" is always the same orange.
COLOURS = {
    "create": "#2f9e44",
    "replace": "#1c7ed6",
    "patch": "#4dabf7",
    "update": "#4dabf7",
    "activate": "#0ca678",
    "deactivate": "#f08c00",
    "delete": "#e03131",
}
OTHER_COLOURS = ("#7048e8", "#ae3ec9", "#868e96", "#495057", "#f783ac")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[tuple[float, str]]  # x, day label
    legend: list[tuple[str, str, int]]  # operation, colour, total
    total: int


def colour(operation: str, others: list[str]) -> str:
    if operation in COLOURS:
        return COLOURS[operation]
    if operation not in others:
        others.append(operation)
    return OTHER_COLOURS[others.index(operation) % len(OTHER_COLOURS)]


def _nice_ceiling(value: int) -> int:
    """1, 2, 5, 10, 20, 50… at or above `value`, so the axis reads in round numbers."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def stacked(days: list[dt.date], by_operation: dict[str, list[int]]) -> Chart:
    """Bars per day, one segment per operation, scaled to a round maximum."""
    totals = [sum(counts[n] for counts in by_operation.values()) for n in range(len(days))]
    top = _nice_ceiling(max(totals, default=0) or 1)
    plot_h = HEIGHT - BOTTOM - TOP
    baseline = HEIGHT - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    bar_w = max(slot * 0.7, 1.0)
    others: list[str] = []
    bars = []
    for n, day in enumerate(days):
        y = baseline
        for operation, counts in by_operation.items():
            if not counts[n]:
                continue
            h = counts[n] / top * plot_h
            y -= h
            bars.append(
                Bar(
                    x=round(LEFT + n * slot + (slot - bar_w) / 2, 1),
                    y=round(y, 1),
                    width=round(bar_w, 1),
                    height=round(h, 1),
                    colour=colour(operation, others),
                    title=f"{day:%b %d}: {counts[n]} {operation}",
                )
            )
    ticks = [Tick(round(baseline - f * plot_h, 1), str(round(top * f))) for f in (0, 0.5, 1)]
    every = max(1, len(days) // 8)
    labels = [
        (round(LEFT + n * slot + slot / 2, 1), f"{day:%b %d}")
        for n, day in enumerate(days)
        if (len(days) - 1 - n) % every == 0
    ]
    legend = [(op, colour(op, others), sum(counts)) for op, counts in by_operation.items()]
    return Chart(WIDTH, HEIGHT, LEFT, baseline, bars, ticks, labels, legend, sum(totals))
