"""`app.cursors`: RFC 9865 cursors are signed, expiring and bound to their query.

A cursor carries a keyset position (the last row's sort value and id) out and back unchanged; any
other cursor — edited, truncated, signed with another key, issued for another query, or too old —
is refused with the RFC's scimType, never read."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import time
from typing import Any

import pytest

from app import cursors
from app.errors import ScimError
from tests.helpers import tampered_cursors

KEY = cursors.derive_key("a secret key for cursors")
QUERY = cursors.query_digest("User", 'userName sw "a"', "userName", False)
NOW = 1_800_000_000.0


def encode(value: Any, last_id: str = "id-1", **kw: Any) -> str:
    kw.setdefault("now", NOW)
    return cursors.encode((value, last_id), QUERY, KEY, kw.pop("timeout", 60), **kw)


def refused(token: str, query: str = QUERY, key: bytes = KEY, now: float = NOW) -> ScimError:
    with pytest.raises(ScimError) as caught:
        cursors.decode(token, query, key, now=now)
    assert caught.value.status == 400
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed(payload: bytes, key: bytes = KEY) -> str:
    """A cursor with a valid MAC over any payload (what only the key holder can make), in the
    documented format: `<payload>.<HMAC-SHA256 of it>`, both unpadded base64url."""
    text = b64(payload)
    return f"{text}.{b64(hmac.new(key, text.encode('ascii'), hashlib.sha256).digest())}"


# -- round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,  # a row whose sort attribute has no value
        "alice@example.com",
        "",
        'Ünïcødé, "quotes" and a . dot',
        0,
        -42,
        3.25,
        True,
        False,
        dt.datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=dt.UTC).replace(tzinfo=None),  # stored
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
    ],
    ids=repr,
)
def test_a_cursor_carries_its_position_back_unchanged(value: Any) -> None:
    token = encode(value, "2819c223-7f76-453a-919d-413861904646")
    position = cursors.decode(token, QUERY, KEY, now=NOW)
    assert position == (value, "2819c223-7f76-453a-919d-413861904646")
    assert type(position[0]) is type(value)
    if isinstance(value, dt.datetime):
        assert position[0].utcoffset() == value.utcoffset()


def test_a_cursor_uses_only_unreserved_characters() -> None:
    """RFC 9865 §2: a cursor travels in a query string as it is."""
    for value in (None, "a/b+c=d?&", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "é" * 50):
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", encode(value))


def test_the_default_clock_is_the_real_one() -> None:
    token = cursors.encode(("x", "id"), QUERY, KEY, timeout=60)
    assert cursors.decode(token, QUERY, KEY) == ("x", "id")
    old = cursors.encode(("x", "id"), QUERY, KEY, timeout=60, now=time.time() - 120)
    assert refused(old, now=time.time()).scim_type == "expiredCursor"


# -- expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "scim_type"),
    [
        (0, None),
        (59.9, None),
        (60, None),  # the last second still counts
        (60.5, "expiredCursor"),
        (61, "expiredCursor"),
        (86_400, "expiredCursor"),
    ],
)
def test_a_cursor_expires_after_its_timeout(age: float, scim_type: str | None) -> None:
    token = encode("v", timeout=60)
    if scim_type is None:
        assert cursors.decode(token, QUERY, KEY, now=NOW + age) == ("v", "id-1")
    else:
        assert refused(token, now=NOW + age).scim_type == scim_type


def test_an_expired_cursor_of_another_query_is_invalid_not_expired() -> None:
    """The query is checked before the time: a stranger's cursor is never 'expired'."""
    other = cursors.query_digest("Group", "", None, False)
    token = cursors.encode(("v", "id"), other, KEY, 60, now=NOW - 3600)
    assert refused(token).scim_type == "invalidCursor"


# -- refused: not ours, not this query, not readable ----------------------------------------------


@pytest.mark.parametrize("token", ["", *tampered_cursors(encode("alice", "id-1"))])
def test_edited_and_garbage_cursors_are_invalid(token: str) -> None:
    assert refused(token).scim_type == "invalidCursor"


def test_a_cursor_signed_with_another_key_is_invalid() -> None:
    token = cursors.encode(("v", "id"), QUERY, cursors.derive_key("another secret"), 60, now=NOW)
    assert refused(token).scim_type == "invalidCursor"
    assert cursors.decode(token, QUERY, cursors.derive_key("another secret"), now=NOW)


@pytest.mark.parametrize(
    "other",
    [
        cursors.query_digest("User", 'userName sw "a"', "userName", True),  # the other order
        cursors.query_digest("User", 'userName sw "a"', None, False),  # another sort
        cursors.query_digest("User", 'userName sw "b"', "userName", False),  # another filter
        cursors.query_digest("Group", 'userName sw "a"', "userName", False),  # another type
        "",
    ],
)
def test_a_cursor_only_continues_its_own_query(other: str) -> None:
    assert other != QUERY
    assert refused(encode("v"), query=other).scim_type == "invalidCursor"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"5",
        b"[1, 2]",  # too few fields
        b'[1, 9999999999, "q", null, "id", "extra"]',
        b'[1, 9999999999, "q", {"not": "a datetime"}, "id"]',
        b'[1, 9999999999, "q", {"$dt": "not a datetime"}, "id"]',
        b"\xff\xfe",
    ],
    ids=repr,
)
def test_a_signed_but_unreadable_payload_is_invalid(payload: bytes) -> None:
    assert refused(signed(payload)).scim_type == "invalidCursor"


@pytest.mark.parametrize(
    "fields",
    [
        [2, 9_999_999_999, "QUERY", None, "id"],  # a version this service does not write
        [1, 9_999_999_999, "QUERY", None, 5],  # the id is not a string
        [1, 9_999_999_999, "QUERY", None, None],
    ],
)
def test_a_signed_payload_of_the_wrong_shape_is_invalid(fields: list[Any]) -> None:
    body = json.dumps([QUERY if f == "QUERY" else f for f in fields]).encode()
    assert refused(signed(body)).scim_type == "invalidCursor"


def test_a_signed_payload_of_the_right_shape_is_read() -> None:
    """The format the tests above break, made by hand: the check is on content, not origin."""
    body = json.dumps([1, 9_999_999_999, QUERY, {"$dt": "2026-01-01T00:00:00"}, "id"]).encode()
    assert cursors.decode(signed(body), QUERY, KEY, now=NOW) == (dt.datetime(2026, 1, 1), "id")  # noqa: DTZ001 - a stored value


# -- keys and digests -----------------------------------------------------------------------------


def test_derive_key_is_stable_and_accepts_text_or_bytes() -> None:
    assert cursors.derive_key("secret") == cursors.derive_key(b"secret")
    assert len(cursors.derive_key("secret")) == 32
    assert cursors.derive_key("secret") != cursors.derive_key("secret2")
    assert cursors.derive_key("secret") != b"secret"  # a key of its own, not the secret itself


def test_query_digest_is_stable() -> None:
    digest = cursors.query_digest("User", "", None, False)
    # Pinned: a changed digest would turn every cursor in flight across a deploy into 400s.
    assert digest == "5acde9676c2ea44f"
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert cursors.query_digest({"b": 1, "a": 2}) == cursors.query_digest({"a": 2, "b": 1})


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("User", "", None, False), ("User", "", None, True)),
        (("User", "", None, False), ("Group", "", None, False)),
        (("User", 'a eq "b"', None, False), ("User", 'a eq "B"', None, False)),
        (("User", "", "userName", False), ("User", "", "username", False)),
        (("User", "", None, False), ("User", "", "", False)),
        (("User", "a", "b", False), ("User", "b", "a", False)),
        (("a", "b"), ("a,b",)),
    ],
)
def test_query_digest_tells_queries_apart(one: tuple[Any, ...], other: tuple[Any, ...]) -> None:
    assert cursors.query_digest(*one) != cursors.query_digest(*other)
