"""ETag comparison for `If-Match` and `If-None-Match` (RFC 7644 §3.14, RFC 7232 §2.3.2).

Versions are weak ETags (`W/"3"`). A header may list several tags or `*`; a tag matches when
its opaque part equals the version's, with or without the `W/` prefix (weak comparison: SCIM
clients echo `meta.version` as they got it, and some drop the prefix).
"""

from __future__ import annotations

from app.errors import PreconditionFailed


def weak(version: int) -> str:
    """The weak ETag of a resource version (`meta.version`, the `ETag` header)."""
    return f'W/"{version}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag[:2] in ("W/", "w/") else tag


def matches(header: str | None, version: str) -> bool:
    """Whether an `If-Match`/`If-None-Match` value names `version` (or is `*`)."""
    if header is None:
        return False
    wanted = _opaque(version)
    return any(tag.strip() == "*" or _opaque(tag) == wanted for tag in header.split(","))


def require(if_match: str | None, version: str) -> None:
    """A write's `If-Match` precondition (RFC 7644 §3.14): none given, or it names `version`."""
    if if_match is not None and not matches(if_match, version):
        raise PreconditionFailed("The resource has changed (If-Match does not match).")
