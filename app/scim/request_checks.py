"""Checks on what a SCIM request sends, before any endpoint looks at it: the media type, JSON
that parses and nests within bounds, text a database can store, integer parameters."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from app import runtime
from app.errors import InvalidSyntax, InvalidValue, NotFound, UnsupportedMediaType

_JSON_TYPES = ("application/scim+json", "application/json")


def read_json() -> Any:
    """The request body as JSON; 415 for other media types, 400 invalidSyntax if malformed."""
    mimetype = request.mimetype
    if mimetype and mimetype not in _JSON_TYPES:
        raise UnsupportedMediaType()
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidSyntax("The request body is empty.")
    limit = runtime.current().config.max_json_depth
    if nesting_exceeds(raw, limit):
        raise InvalidSyntax(f"The request body nests arrays and objects deeper than {limit}.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidSyntax(f"The request body is not valid JSON: {exc}") from None
    # JSON can spell what no text column stores: `\u0000`, and a lone `\ud800` (valid pairs
    # are joined by the parser). Only bodies that contain such an escape are walked.
    if (b"\\u0000" in raw or re.search(rb"\\u[dD][89a-fA-F]", raw)) and _unstorable(body):
        raise InvalidValue("Text may not contain NUL characters or unpaired surrogates.")
    return body


def _unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value or (not value.isascii() and _has_lone_surrogate(value))
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(item) for item in value)
    return False


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def refuse_nul_in_path() -> None:
    """before_request: no id contains NUL (and PostgreSQL refuses to compare with one)."""
    if "\x00" in request.path:
        raise NotFound("No such resource or endpoint.")


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, checked before parsing.

    Python's json has no depth limit (it recurses until RecursionError), and everything after
    it walks bodies recursively. Strings are cut out with one regex and the brackets left are
    counted with an early exit, so a 1 MiB body costs a few milliseconds.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


def integer_param(source: Any, name: str, default: int) -> int:
    raw = source.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise InvalidValue(f"{name} must be an integer.")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidValue(f"{name} must be an integer.") from None


def if_match() -> str | None:
    return request.headers.get("If-Match")
