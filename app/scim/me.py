"""`/Me` (RFC 7644 §3.11): not implemented.

`/Me` is the resource of "the authenticated subject". lms-scim's bearer tokens belong to
provisioning clients (an IdP connection, a report), not to users, so there is no subject to
alias: every method answers 501 Not Implemented with the SCIM error envelope, as §3.11 says a
service provider that does not support `/Me` SHOULD.
"""

from __future__ import annotations

from app.errors import NotImplementedYet
from app.scim import bp

_DETAIL = (
    "/Me is not supported: lms-scim tokens belong to provisioning clients, not to users "
    "(RFC 7644 §3.11). Use /Users/{id}."
)


@bp.route("/Me", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def me() -> None:
    raise NotImplementedYet(_DETAIL)
