"""Replaying recorded IdP requests: send the vendor's request, compare what the IdP reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def subset(expected: Any, actual: Any, ignore: frozenset[str] = frozenset({"id", "meta"})) -> None:
    """Every attribute the vendor's recorded response shows is in ours, with the same value."""
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
