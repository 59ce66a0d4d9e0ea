"""SCIM JSON written while it is read from the database: `JsonArray` items arrive in chunks, so
a 100k-member group leaves in bounded memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, stream_with_context

from app.errors import SCIM_MEDIA_TYPE, dumps


class JsonArray:
    """A JSON array whose items arrive as chunks (lists) from an iterator while it is written.

    Put one in a response body and send it with `streaming_response`: no more than one chunk
    of items is in memory at a time (a group's members, read `CHUNK` rows per query).
    """

    def __init__(self, chunks: Iterable[list[Any]]) -> None:
        self.chunks = chunks


def _json_parts(value: Any) -> Iterator[str]:
    if isinstance(value, JsonArray):
        yield "["
        first = True
        for chunk in value.chunks:
            if chunk:  # one encoder call per chunk: `[a,b]` less its brackets is `a,b`
                yield ("" if first else ",") + dumps(chunk)[1:-1]
                first = False
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + dumps(key) + ":"
            yield from _json_parts(item)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _json_parts(item)
        yield "]"
    else:
        yield dumps(value)


def _buffered(parts: Iterable[str], size: int = 64 * 1024) -> Iterator[bytes]:
    pending: list[str] = []
    length = 0
    for part in parts:
        pending.append(part)
        length += len(part)
        if length >= size:
            yield "".join(pending).encode("utf-8")
            pending, length = [], 0
    if pending:
        yield "".join(pending).encode("utf-8")


def streaming_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A SCIM JSON response written while it is read from the database (see `JsonArray`).

    The status and headers leave before the body, so a failure half-way cuts the connection
    instead of turning into an error envelope.
    """
    chunks = stream_with_context(_buffered(_json_parts(body)))
    response = Response(chunks, status=status, mimetype=SCIM_MEDIA_TYPE)
    if headers:
        response.headers.update(headers)
    return response
