"""The operator documentation (`docs/*.md` of the checkout) served at `/docs/NAME.md`, so that
`ServiceProviderConfig.documentationUri` (RFC 7643 §5: "human-consumable help documentation")
points at a page this deployment really has, whatever host name it answers on.

The files are read from the source tree next to the `app` package (a clone, or `pip install -e`,
which is how `make run` and the Procfile run it). An installation without that folder serves no
docs and advertises `documentationUri: null`, never a link that 404s.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask, Response, abort

from app import runtime

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDE = "idp-setup.md"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.md")  # no dots, slashes or case tricks


def documentation_uri() -> str | None:
    """The setup guide's URL on this deployment's origin (that of `SCIM_BASE_URL` when set, else
    of the request), or None when this installation has no docs folder."""
    if not (DOCS / GUIDE).is_file():
        return None
    return f"{runtime.current().access_tokens.issuer()}/docs/{GUIDE}"


def _serve(name: str) -> Response:
    path = DOCS / name
    if not _NAME.fullmatch(name) or not path.is_file():
        abort(404)
    return Response(path.read_bytes(), content_type="text/markdown; charset=utf-8")


def register(app: Flask) -> None:
    """`GET /docs/NAME.md`: public, like the repository they come from (no token)."""
    app.add_url_rule("/docs/<name>", "docs", _serve)
