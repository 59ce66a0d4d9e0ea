"""`app.datetimes`: xsd:dateTime text in (RFC 7643 §2.3.5), naive UTC values stored, and the
forms they go out in (SCIM's `meta`, request values kept as sent, tables for people)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from app import datetimes

UTC = dt.UTC
PLUS_2 = dt.timezone(dt.timedelta(hours=2))
MINUS_5_30 = dt.timezone(-dt.timedelta(hours=5, minutes=30))


def naive(*fields: int) -> dt.datetime:
    """A naive UTC datetime, as the database keeps timestamps."""
    return dt.datetime(*fields, tzinfo=UTC).replace(tzinfo=None)


# -- parse: the xsd:dateTime grammar -----------------------------------------------------------

PARSED = [
    ("2011-05-13T04:42:34Z", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
    ("2011-05-13t04:42:34z", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
    ("2011-05-13T04:42:34z", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
    # No offset: UTC, never the server's local time.
    ("2011-05-13T04:42:34", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
    ("2011-05-13T04:42:34+02:00", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=PLUS_2)),
    ("2011-05-13T04:42:34-05:30", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=MINUS_5_30)),
    ("2011-05-13T04:42:34+00:00", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
    ("2011-05-13T04:42:34.5Z", dt.datetime(2011, 5, 13, 4, 42, 34, 500_000, tzinfo=UTC)),
    ("2011-05-13T04:42:34.120Z", dt.datetime(2011, 5, 13, 4, 42, 34, 120_000, tzinfo=UTC)),
    ("2011-05-13T04:42:34.123456Z", dt.datetime(2011, 5, 13, 4, 42, 34, 123_456, tzinfo=UTC)),
    ("1999-12-31T23:59:59.999-05:30", dt.datetime(1999, 12, 31, 23, 59, 59, 999_000, MINUS_5_30)),
    ("2024-02-29T00:00:00Z", dt.datetime(2024, 2, 29, tzinfo=UTC)),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse_reads_xsd_datetimes_as_aware_datetimes(text: str, expected: dt.datetime) -> None:
    parsed = datetimes.parse(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()  # the offset as sent, not only the instant


# ISO 8601 forms that are not xsd:dateTime, read leniently: IdPs map date-only fields and
# drop seconds (what leaves is always strict: `canonical`, `scim`).
LENIENT = [
    ("2011-05-13", dt.datetime(2011, 5, 13, tzinfo=UTC)),
    ("2011-05-13T04:42Z", dt.datetime(2011, 5, 13, 4, 42, tzinfo=UTC)),
    ("2011-05-13 04:42:34Z", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
    ("2011-05-13T04:42:34+0200", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=PLUS_2)),
    ("2011-05-13T04:42:34+02", dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=PLUS_2)),
]


@pytest.mark.parametrize(("text", "expected"), LENIENT)
def test_parse_reads_other_iso_8601_forms_leniently(text: str, expected: dt.datetime) -> None:
    parsed = datetimes.parse(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()


NOT_DATETIMES = [
    "",
    "04:42:34Z",  # a time only
    "2011-05-13T04:42:34ZZ",
    " 2011-05-13T04:42:34Z",  # surrounding white space is not trimmed
    "2011-05-13T04:42:34Z\n",
    "11-05-13T04:42:34Z",  # two-digit year
    "2011-5-13T04:42:34Z",
    "2011-13-13T04:42:34Z",  # month 13: the grammar's shape, not a date
    "2011-02-30T04:42:34Z",
    "2011-05-13T25:00:00Z",
    "2011-05-13T04:42:34+25:00",
    "\uff12\uff10\uff11\uff11-05-13T04:42:34Z",  # fullwidth digits
    "1305-13T04:42:34Z",
    "now",
    "2011-05-13T04:42:34Z; DROP TABLE",
]


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set well away from UTC for one test."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_no_offset_is_utc_whatever_the_local_time_zone() -> None:
    parsed = datetimes.parse("2011-05-13T04:42:34")
    assert parsed == dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)
    assert parsed is not None
    assert datetimes.canonical(parsed) == "2011-05-13T04:42:34Z"
    assert datetimes.stored(parsed) == naive(2011, 5, 13, 4, 42, 34)


@pytest.mark.parametrize("text", NOT_DATETIMES)
def test_parse_refuses_what_is_not_a_date_or_datetime(text: str) -> None:
    assert datetimes.parse(text) is None


# -- stored: the naive UTC value a column keeps --------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (dt.datetime(2011, 5, 13, 4, 42, 34, tzinfo=PLUS_2), naive(2011, 5, 13, 2, 42, 34)),
        (dt.datetime(2011, 5, 13, 23, 0, tzinfo=MINUS_5_30), naive(2011, 5, 14, 4, 30)),
        (
            dt.datetime(2011, 5, 13, 4, 42, 34, 7, tzinfo=UTC),
            naive(2011, 5, 13, 4, 42, 34, 7),
        ),
        # Already naive: taken as UTC and kept as it is.
        (naive(2011, 5, 13, 4, 42, 34), naive(2011, 5, 13, 4, 42, 34)),
    ],
)
def test_stored_is_naive_utc(moment: dt.datetime, expected: dt.datetime) -> None:
    stored = datetimes.stored(moment)
    assert stored == expected
    assert stored.tzinfo is None


# -- canonical: how a request's value is kept ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2011-05-13T04:42:34Z", "2011-05-13T04:42:34Z"),
        ("2011-05-13t04:42:34z", "2011-05-13T04:42:34Z"),
        ("2011-05-13T04:42:34", "2011-05-13T04:42:34Z"),
        ("2011-05-13T04:42:34+02:00", "2011-05-13T02:42:34Z"),
        ("2011-05-13T23:00:00-05:30", "2011-05-14T04:30:00Z"),
        ("2011-05-13T04:42:34.123456+00:00", "2011-05-13T04:42:34.123456Z"),
        # A fraction is kept in microseconds; a zero fraction is dropped.
        ("2011-05-13T04:42:34.5Z", "2011-05-13T04:42:34.500000Z"),
        ("2011-05-13T04:42:34.000Z", "2011-05-13T04:42:34Z"),
    ],
)
def test_canonical_is_utc_with_z(text: str, expected: str) -> None:
    parsed = datetimes.parse(text)
    assert parsed is not None
    assert datetimes.canonical(parsed) == expected
    assert datetimes.parse(expected) == parsed  # the same instant, read back


# -- scim: a stored timestamp as `meta` shows it ------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (naive(2011, 5, 13, 4, 42, 34), "2011-05-13T04:42:34.000Z"),
        (
            naive(2011, 5, 13, 4, 42, 34, 123_999),
            "2011-05-13T04:42:34.123Z",
        ),  # cut, not rounded
        (naive(2011, 5, 13, 4, 42, 34, 500), "2011-05-13T04:42:34.000Z"),
        (None, None),
    ],
)
def test_scim_is_milliseconds_and_z(moment: dt.datetime | None, expected: str | None) -> None:
    assert datetimes.scim(moment) == expected


def test_scim_output_parses_back_to_the_stored_value_at_millisecond_precision() -> None:
    stored = naive(2026, 12, 3, 21, 15, 7, 250_000)
    text = datetimes.scim(stored)
    assert text is not None
    parsed = datetimes.parse(text)
    assert parsed is not None
    assert datetimes.stored(parsed) == stored


# -- minute: tables for people ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "missing", "expected"),
    [
        (naive(2026, 12, 3, 21, 15, 59, 999_999), "-", "2026-12-03 21:15"),
        (naive(2026, 1, 2, 3, 4), "-", "2026-01-02 03:04"),
        (None, "-", "-"),
        (None, "never", "never"),
    ],
)
def test_minute(moment: dt.datetime | None, missing: str, expected: str) -> None:
    assert datetimes.minute(moment, missing) == expected


def test_minute_defaults_to_a_dash() -> None:
    assert datetimes.minute(None) == "-"
