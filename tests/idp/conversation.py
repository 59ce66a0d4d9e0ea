"""Replaying recorded IdP requests: send the vendor's request, compare what the IdP reads back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"

# What Okta sends with every write (the charset parameter included).
OKTA_HEADERS = {"Content-Type": "application/scim+json; charset=utf-8"}

# The user ids in Okta's recorded group membership PATCH (okta/update_group_membership): the one
# removed and re-added, then the one added (also the user of okta/create_user's response).
RECORDED_MEMBERS = ("89bb1940-b905-4575-9e7f-6f887cfb368e", "23a35c27-23d3-4c03-b4c5-6443c09e7173")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def replay(recorded: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The recorded request with the recorded ids (or any other recorded strings: a login, an
    externalId) replaced by this store's."""
    text = json.dumps(recorded["request"])
    for old, new in ids.items():
        text = text.replace(old, new)
    return json.loads(text)


def with_aad_flag(patch: dict[str, Any]) -> dict[str, Any]:
    """An Entra ID PATCH as Entra sends it to a Tenant URL ending in `?aadOptscim062020`
    (docs/idp-setup.md): the changes of its per-attribute `Replace` operations in one path-less
    `replace`, keyed by the same path expressions, with JSON booleans."""
    operations = patch["Operations"]
    assert all(op["op"].lower() == "replace" and "path" in op for op in operations), operations
    value = {op["path"]: op["value"] for op in operations}
    return {**patch, "Operations": [{"op": "replace", "value": value}]}


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
