"""What every `lms-scim` command shares: the app's settings, durations, one-line errors and
tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import click

from app import runtime
from app.config import Config
from app.errors import ScimError
from app.store import enrolments as enrolment_store
from app.store import status

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Duration(click.ParamType):
    """`90d`, `24h`, `30m`, `45s`, `2w` → a timedelta."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(value).lower())
        if not match:
            self.fail(f"{value!r} is not a duration like 90d, 24h, 30m or 45s", param, ctx)
        return dt.timedelta(**{_UNITS[match[2]]: int(match[1])})


DURATION = Duration()


def settings() -> Config:
    """The settings of the app this command runs in."""
    return runtime.current().config


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """A store refusal (not found, already exists, invalid) becomes a one-line CLI error."""
    try:
        yield
    except (ScimError, status.Ambiguous, enrolment_store.AmbiguousGroup, ValueError) as exc:
        raise click.ClickException(exc.detail if isinstance(exc, ScimError) else str(exc)) from None


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """Aligned columns (for small results; streams go out row by row)."""
    rows = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))
