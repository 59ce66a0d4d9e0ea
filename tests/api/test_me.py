"""/Me (RFC 7644 §3.11): tokens belong to provisioning clients, not users, so 501."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_error


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_me_is_501_with_the_scim_envelope(scim: Any, method: str) -> None:
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "me"}
    response = scim.request(method, "/Me", body if method in ("POST", "PUT", "PATCH") else None)
    detail = assert_error(response, 501)["detail"]
    assert "/Me" in detail


def test_me_still_needs_a_token(client: Any) -> None:
    assert_error(client.get("/scim/v2/Me"), 401)
