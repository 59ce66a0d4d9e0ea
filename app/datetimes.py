"""Date-times in and out: SCIM's xsd:dateTime text (RFC 7643 §2.3.5) and the naive UTC values
the database keeps. One parser serves request bodies, filters and stored values alike."""

from __future__ import annotations

import datetime as dt


def parse(text: str) -> dt.datetime | None:
    """An xsd:dateTime (RFC 7643 §2.3.5) as an aware datetime, or None if `text` is none.

    No offset means UTC. Read leniently, as ISO 8601 (`datetime.fromisoformat`): IdPs map
    date-only fields (`2024-09-01`, midnight UTC) and drop the seconds; a `Z` or `T` may be in
    lower case. What leaves is always strict (`canonical`, `scim`).
    """
    try:
        parsed = dt.datetime.fromisoformat(text.upper())
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def stored(moment: dt.datetime) -> dt.datetime:
    """The naive UTC value a timestamp column keeps."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def as_datetime(value: object) -> dt.datetime | None:
    """An aggregate of a timestamp column (MIN, MAX): SQLite hands it back as text."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def canonical(moment: dt.datetime) -> str:
    """The xsd:dateTime a request value is kept as: UTC with `Z`, and microseconds when the
    value had a fraction."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def scim(moment: dt.datetime | None) -> str | None:
    """A stored (naive UTC) timestamp as SCIM returns it: milliseconds and `Z` (`meta`)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def minute(moment: dt.datetime | None, missing: str = "-") -> str:
    """`2026-12-03 21:15` for tables (CLI, /admin); `missing` when there is none."""
    return f"{moment:%Y-%m-%d %H:%M}" if moment else missing
