"""ETag matching for If-Match / If-None-Match (RFC 7644 §3.14, RFC 7232 §2.3.2 weak comparison)."""

from __future__ import annotations

import pytest

from app.etags import matches


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('W/"2"', True),
        ('"2"', True),  # the W/ prefix dropped by the client
        ('W/"1", W/"2"', True),  # a list
        ('W/"1",W/"3"', False),
        ("*", True),
        (' W/"1" , * ', True),
        ('W/"20"', False),
        ("", False),
        (None, False),
    ],
)
def test_a_header_matches_the_version_it_names(header: str | None, expected: bool) -> None:
    assert matches(header, 'W/"2"') is expected
