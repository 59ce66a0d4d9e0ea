"""Checks on what a SCIM request sends, before any endpoint looks at it: the body's size, the
media type, JSON that parses and nests within bounds, text a database can store, integer
parameters.

Body size (`MAX_BODY_BYTES`) is enforced here and nowhere else (Flask's MAX_CONTENT_LENGTH is
not set: werkzeug cuts a chunked body at that many bytes and passes the rest on silently):

- a `Content-Length` over the limit is a 413 before anything reads the body
  (`refuse_oversized_body`); a body sent with `Transfer-Encoding: chunked` is a 413 as soon as
  reading it passes the limit (`BodyLimit`'s input stream);
- whatever the answer, `BodyLimit` then reads and discards what is left of the body, up to
  `DISCARD_BYTES`, before the answer goes out. Most clients (Python's `http.client` and
  `urllib`, Java's, .NET's) send the whole body before they read: closing on them mid-body
  shows a broken pipe instead of the 413. gunicorn answers `Expect: 100-continue` itself
  before the app sees the request, so the body comes anyway. Past `DISCARD_BYTES` gunicorn
  closes the connection, so an endless body costs a bounded read.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterable
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from app import runtime
from app.errors import InvalidSyntax, InvalidValue, NotFound, UnsupportedMediaType

# The most of an unread or oversized body read and thrown away so the client sees the answer.
DISCARD_BYTES = 16 * 1024 * 1024
_PIECE = 64 * 1024


class _BoundedInput(io.RawIOBase):
    """`wsgi.input` that never reads past `Content-Length` (when there is one), raises 413 once
    more than `limit` bytes were read, and can discard the rest of the body."""

    def __init__(self, stream: Any, limit: int, length: int | None) -> None:
        super().__init__()
        self._stream = stream
        self._limit = limit
        self._left = length  # None: the server ends the body (chunked)
        self._read = 0

    def readable(self) -> bool:
        return True

    def _next(self, size: int) -> bytes:
        if self._left is not None:
            size = min(size, self._left)
        data = self._stream.read(size) if size > 0 else b""
        self._read += len(data)
        if self._left is not None:
            self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self._next(len(buffer))
        buffer[: len(data)] = data
        if self._read > self._limit:
            raise RequestEntityTooLarge()
        return len(data)

    def discard(self, most: int) -> None:
        """Read and drop up to `most` more bytes of the body (until it ends)."""
        with contextlib.suppress(Exception):  # a client gone or a broken chunk: nothing to save
            while most > 0 and (data := self._next(min(_PIECE, most))):
                most -= len(data)


class BodyLimit:
    """WSGI middleware: bodies bounded by `limit` however they are framed, and read to their
    end (within `DISCARD_BYTES`) before the answer, so the client can read it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            length: int | None = max(0, int(environ.get("CONTENT_LENGTH") or ""))
        except ValueError:
            length = None
        if length is None and "wsgi.input_terminated" not in environ:
            return self.app(environ, start_response)  # no framing: werkzeug reads no body
        body = _BoundedInput(environ["wsgi.input"], self.limit, length)
        environ["wsgi.input"] = body
        try:
            return self.app(environ, start_response)
        finally:
            body.discard(DISCARD_BYTES)


def refuse_oversized_body() -> None:
    """before_request: a `Content-Length` over `MAX_BODY_BYTES` is a 413 before anything runs
    (werkzeug's, so pages outside /scim/ get theirs and /scim/ the SCIM envelope)."""
    length = request.content_length
    if length is not None and length > runtime.current().config.max_body_bytes:
        raise RequestEntityTooLarge()


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
