"""A PATCH applied through the API and re-read equals the same PATCH applied to the dict.

Hypothesis draws operation lists; each goes to `PATCH /Users/{id}` and, separately, through
`app.patch.apply_operations` on the resource as it was. The stored result must be what the pure
engine computed — or both must refuse the request with the same scimType (RFC 7644 §3.5.2).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from app import patch
from app.errors import ScimError
from scim_schemas import CORE_USER, ENTERPRISE_USER, PATCH_OP, resource_type
from tests.helpers import Scim, api_examples

USER = resource_type("User")
WORDS = st.sampled_from(["alpha", "Beta", "gamma delta", "Ünïcødé", "x'y", "%_\\", ""])
SIMPLE_PATHS = [
    "displayName",
    "title",
    "nickName",
    "name.givenName",
    "name.familyName",
    f"{ENTERPRISE_USER}:department",
]

simple = st.builds(
    lambda op, path, value: {"op": op, "path": path, "value": value},
    st.sampled_from(["add", "replace", "Replace"]),
    st.sampled_from(SIMPLE_PATHS),
    WORDS,
)
remove_simple = st.builds(
    lambda path: {"op": "remove", "path": path}, st.sampled_from(SIMPLE_PATHS)
)
active = st.builds(
    lambda value: {"op": "replace", "path": "active", "value": value},
    st.sampled_from([True, False, "True", "False"]),
)
pathless = st.builds(
    lambda key, value: {"op": "replace", "value": {key: value}},
    st.sampled_from(["displayName", "title", "name.givenName"]),
    WORDS,
)
add_email = st.builds(
    lambda kind, n: {
        "op": "add",
        "path": "emails",
        "value": [{"type": kind, "value": f"{kind}{n}@example.com"}],
    },
    st.sampled_from(["work", "home"]),
    st.integers(0, 3),
)
remove_email = st.builds(
    lambda kind: {"op": "remove", "path": f'emails[type eq "{kind}"]'},
    st.sampled_from(["work", "home", "other"]),
)
replace_email_value = st.builds(
    lambda kind, n: {
        "op": "replace",
        "path": f'emails[type eq "{kind}"].value',
        "value": f"r{n}@example.com",
    },
    st.sampled_from(["work", "home"]),
    st.integers(0, 3),
)
OPERATIONS = st.lists(
    st.one_of(
        simple, remove_simple, active, pathless, add_email, remove_email, replace_email_value
    ),
    min_size=1,
    max_size=4,
)


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "schemas", "groups")}


def test_api_patch_equals_the_pure_engine(app: Flask, token: str) -> None:
    scim = Scim.of(app, token)
    created = scim.post(
        "/Users",
        {
            "schemas": [CORE_USER],
            "userName": "roundtrip",
            "emails": [{"type": "work", "value": "w@example.com"}],
        },
    )
    assert created.status_code == 201
    url = f"/Users/{created.get_json()['id']}"

    @api_examples(120)
    @given(OPERATIONS)
    def roundtrip(operations: list[dict[str, Any]]) -> None:
        before = scim.get(url).get_json()
        body = {"schemas": [PATCH_OP], "Operations": operations}
        try:
            parsed = patch.parse_patch_request(USER, body)
            expected: dict[str, Any] | ScimError = patch.apply_operations(USER, before, parsed)
        except ScimError as error:
            expected = error
        response = scim.patch(url, body)
        if isinstance(expected, ScimError):
            assert response.status_code == expected.status, response.get_json()
            assert response.get_json().get("scimType") == expected.scim_type
            assert scim.get(url).get_json() == before
            return
        assert response.status_code == 200, (operations, response.get_json())
        after = scim.get(url).get_json()
        assert after == response.get_json()
        want = _comparable(expected)
        want.pop("password", None)
        assert _comparable(after) == {k: v for k, v in want.items() if v not in (None, [], {})}

    roundtrip()
