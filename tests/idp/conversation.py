"""Replaying recorded IdP requests: send the vendor's request, compare what the IdP reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"

# What Okta sends with every write (the charset parameter included).
OKTA_HEADERS = {"Content-Type": "application/scim+json; charset=utf-8"}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


TOP_LEVEL_IGNORED = frozenset({"id", "meta", "schemas"})


def subset(expected: Any, actual: Any, ignore: frozenset[str] = TOP_LEVEL_IGNORED) -> None:
    """Every attribute the vendor's recorded response shows is in ours, with the same value.

    Ids and meta are the server's own; `schemas` lists only the extensions a resource uses
    (RFC 7643 §3), so ours may leave out an extension the vendor's sample names without data.
    """
    if ignore is TOP_LEVEL_IGNORED and "schemas" in expected:
        assert expected["schemas"][0] in actual["schemas"]
    if isinstance(expected, dict):
        assert isinstance(actual, dict), actual
        for key, value in expected.items():
            if key in ignore or value is None:
                continue
            assert key in actual, f"{key} missing from {actual}"
            subset(value, actual[key], frozenset())
    elif isinstance(expected, list):
        assert isinstance(actual, list), actual
        assert len(expected) == len(actual), (expected, actual)
        for e, a in zip(expected, actual, strict=True):
            subset(e, a, frozenset())
    else:
        assert expected == actual, (expected, actual)
