"""Every attribute mapping `docs/idp-setup.md` tells an admin to set, sent in the IdP's own
request shape and read back.

The mapping tables of the guide (between `<!-- mappings:okta -->` and `<!-- mappings:entra -->`
markers) are parsed, and each row's SCIM attribute must be one these tests send: a row added to
the guide without a test here fails `test_the_guide_lists_exactly_the_tested_mappings`.

- Okta (SCIM 2.0 app, "HTTP Header"): the full user in a POST on assignment, a GET then a full PUT
  on a profile change, a path-less PATCH for `active` and `password`.
- Entra ID without `?aadOptscim062020`: one `Add`/`Replace` operation per attribute whose `path`
  is the target attribute as written in the mapping, booleans as `"True"`/`"False"`.
- Entra ID with the flag: one path-less `replace` whose value keys are those same expressions.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from scim_schemas import CORE_USER, ENTERPRISE_USER, LMS_USER
from tests.helpers import Scim, patch_body
from tests.idp.conversation import OKTA_HEADERS

pytestmark = pytest.mark.idp

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "idp-setup.md"
ENT = ENTERPRISE_USER + ":"
LMS = LMS_USER + ":"

# SCIM attribute (as the IdP's mapping names it) → (value on create, value on update).
OKTA: dict[str, tuple[Any, Any]] = {
    "userName": ("ada@school.example", "ada.l@school.example"),
    "externalId": ("00u1a2b3c4", "00u1a2b3c4"),
    "name.givenName": ("Ada", "Augusta"),
    "name.familyName": ("Lovelace", "King"),
    "displayName": ("Ada Lovelace", "Augusta King"),
    'emails[type eq "work"].value': ("ada@school.example", "ada.l@school.example"),
    'phoneNumbers[type eq "work"].value': ("+44 20 7946 0000", "+44 20 7946 0001"),
    "title": ("Tutor", "Senior tutor"),
    "userType": ("learner", "instructor"),
    "preferredLanguage": ("en-GB", "fr-FR"),
    "locale": ("en-GB", "fr-FR"),
    "timezone": ("Europe/London", "Europe/Paris"),
    ENT + "employeeNumber": ("E-1001", "E-1002"),
    ENT + "department": ("Mathematics", "Computing"),
    ENT + "organization": ("North College", "South College"),
    ENT + "division": ("Sciences", "Engineering"),
    ENT + "costCenter": ("CC-10", "CC-20"),
    ENT + "manager.value": ("mgr-okta-1", "mgr-okta-2"),
    LMS + "branch": ("North campus", "South campus"),
    LMS + "jobRole": ("Lab assistant", "Lecturer"),
    LMS + "hireDate": ("2024-09-01T00:00:00Z", "2025-01-06T00:00:00Z"),
}

ENTRA: dict[str, tuple[Any, Any]] = {
    "userName": ("grace@contoso.example", "grace.h@contoso.example"),
    "externalId": ("7d1f5c8e-0b7b-4f0e-9a57-2d0c1e9f3a11", "7d1f5c8e-0b7b-4f0e-9a57-2d0c1e9f3a11"),
    "active": (True, False),
    "displayName": ("Grace Hopper", "Grace B. Hopper"),
    "title": ("Instructor", "Head of department"),
    'emails[type eq "work"].value': ("grace@contoso.example", "grace.h@contoso.example"),
    "preferredLanguage": ("en-US", "de-DE"),
    "name.givenName": ("Grace", "Grace B."),
    "name.familyName": ("Hopper", "Murray"),
    "name.formatted": ("Grace Hopper", "Grace B. Murray"),
    'addresses[type eq "work"].formatted': ("Building 4", "Building 5"),
    'addresses[type eq "work"].streetAddress': ("1 Main St", "2 High St"),
    'addresses[type eq "work"].locality': ("Redmond", "Seattle"),
    'addresses[type eq "work"].region': ("WA", "OR"),
    'addresses[type eq "work"].postalCode': ("98052", "97201"),
    'addresses[type eq "work"].country': ("US", "CA"),
    'phoneNumbers[type eq "work"].value': ("+1 425 555 0100", "+1 425 555 0101"),
    'phoneNumbers[type eq "mobile"].value': ("+1 425 555 0199", "+1 425 555 0198"),
    'phoneNumbers[type eq "fax"].value': ("+1 425 555 0150", "+1 425 555 0151"),
    "userType": ("instructor", "learner"),
    ENT + "employeeNumber": ("100234", "100235"),
    ENT + "department": ("Physics", "Chemistry"),
    ENT + "manager": ("mgr-entra-1", "mgr-entra-2"),
    LMS + "branch": ("Redmond campus", "Seattle campus"),
    LMS + "jobRole": ("Instructor", "Head of department"),
    LMS + "hireDate": ("2023-08-15T00:00:00Z", "2024-02-01T00:00:00Z"),
}

_FILTERED = re.compile(r'^(\w+)\[type eq "(\w+)"\]\.(\w+)$')


def _split(path: str) -> tuple[str | None, str]:
    """(extension URN or None, the path within it)."""
    for urn in (ENTERPRISE_USER, LMS_USER):
        if path.startswith(urn + ":"):
            return urn, path[len(urn) + 1 :]
    return None, path


def put_path(body: dict[str, Any], path: str, value: Any) -> None:
    """Set `path` in a full resource body, as an IdP builds its POST or PUT from its mappings."""
    urn, rest = _split(path)
    target = body.setdefault(urn, {}) if urn else body
    if urn and urn not in body["schemas"]:
        body["schemas"].append(urn)
    filtered = _FILTERED.match(rest)
    if filtered:
        attribute, kind, sub = filtered.groups()
        values = target.setdefault(attribute, [])
        element = next((v for v in values if v.get("type") == kind), None)
        if element is None:
            element = {"type": kind}
            if attribute == "emails":
                element["primary"] = True
            values.append(element)
        element[sub] = value
    elif urn == ENTERPRISE_USER and rest == "manager":
        target["manager"] = {"value": value}  # Entra: a reference → the manager's id
    elif "." in rest:
        parent, sub = rest.split(".", 1)
        target.setdefault(parent, {})[sub] = value
    else:
        target[rest] = value


def read_path(resource: dict[str, Any], path: str) -> Any:
    """The value at `path` in a resource lms-scim returned (None when absent)."""
    urn, rest = _split(path)
    node: Any = resource.get(urn, {}) if urn else resource
    filtered = _FILTERED.match(rest)
    if filtered:
        attribute, kind, sub = filtered.groups()
        matching = [v for v in node.get(attribute, []) if v.get("type") == kind]
        assert len(matching) <= 1, matching
        return matching[0].get(sub) if matching else None
    if urn == ENTERPRISE_USER and rest == "manager":
        return node.get("manager", {}).get("value")
    for part in rest.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def body_of(mappings: dict[str, tuple[Any, Any]], which: int) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [CORE_USER]}
    for path, values in mappings.items():
        put_path(body, path, values[which])
    return body


def _same(path: str, got: Any, sent: Any) -> bool:
    """Equal, or (a dateTime, returned with milliseconds) the same instant."""
    if path.endswith("hireDate") and isinstance(got, str):
        return datetime.fromisoformat(got) == datetime.fromisoformat(sent)
    return bool(got == sent)


def assert_mapped(resource: dict[str, Any], mappings: dict[str, Any], which: int) -> None:
    wrong = {
        path: (read_path(resource, path), values[which])
        for path, values in mappings.items()
        if not _same(path, read_path(resource, path), values[which])
    }
    assert not wrong, wrong


def guide_rows(idp: str) -> set[str]:
    """The SCIM attributes of the guide's mapping table for `idp` (second column)."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split(f"<!-- mappings:{idp} -->")[1].split(f"<!-- /mappings:{idp} -->")[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].startswith("`"):
            rows.add(cells[1].strip("`"))
    return rows


@pytest.mark.parametrize(("idp", "mappings"), [("okta", OKTA), ("entra", ENTRA)])
def test_the_guide_lists_exactly_the_tested_mappings(idp: str, mappings: dict[str, Any]) -> None:
    assert guide_rows(idp) == set(mappings)


# -- Okta --------------------------------------------------------------------------------------


def test_okta_create_get_put_carries_every_mapping(scim: Scim) -> None:
    create = {**body_of(OKTA, 0), "password": "Okta-Pushed-1", "groups": [], "active": True}
    response = scim.post("/Users", create, headers=OKTA_HEADERS)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert_mapped(created, OKTA, 0)
    url = f"/Users/{created['id']}"
    fetched = scim.get(url).get_json()  # Okta reads the user before each profile push
    assert_mapped(fetched, OKTA, 0)
    # The PUT is the full object, with the read-only `groups`, `meta` and `id` Okta keeps.
    update = {
        **body_of(OKTA, 1),
        "id": created["id"],
        "active": True,
        "groups": [],
        "meta": fetched["meta"],
    }
    replaced = scim.put(url, update, headers=OKTA_HEADERS)
    assert replaced.status_code == 200, replaced.get_json()
    assert_mapped(replaced.get_json(), OKTA, 1)
    assert_mapped(scim.get(url).get_json(), OKTA, 1)
    found = scim.get("/Users", query_string={"filter": 'userName eq "ADA.L@SCHOOL.EXAMPLE"'})
    assert [r["id"] for r in found.get_json()["Resources"]] == [created["id"]]


def test_okta_deactivate_and_reactivate(scim: Scim) -> None:
    created = scim.post("/Users", body_of(OKTA, 0), headers=OKTA_HEADERS).get_json()
    url = f"/Users/{created['id']}"
    off = patch_body({"op": "replace", "value": {"active": False}})
    assert scim.patch(url, off, headers=OKTA_HEADERS).get_json()["active"] is False
    on = patch_body({"op": "replace", "value": {"active": True}})
    assert scim.patch(url, on, headers=OKTA_HEADERS).get_json()["active"] is True


# -- Entra ID ----------------------------------------------------------------------------------


def _entra_create(scim: Scim) -> dict[str, Any]:
    body = {**body_of(ENTRA, 0), "roles": [], "meta": {"resourceType": "User"}}
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert_mapped(created, ENTRA, 0)
    return created


def _entra_value(value: Any) -> Any:
    """Without the flag, Entra sends booleans as the strings "True" and "False"."""
    return str(value) if isinstance(value, bool) else value


def test_entra_create_carries_every_mapping(scim: Scim) -> None:
    created = _entra_create(scim)
    assert_mapped(scim.get(f"/Users/{created['id']}").get_json(), ENTRA, 0)
    work_email = ENTRA['emails[type eq "work"].value'][0]
    for text in (
        f'externalId eq "{ENTRA["externalId"][0]}"',
        f'emails[type eq "work"].value eq "{work_email}"',
    ):
        found = scim.get("/Users", query_string={"filter": text}).get_json()
        assert [r["id"] for r in found["Resources"]] == [created["id"]], text


def test_entra_updates_without_the_flag_one_operation_per_mapping(scim: Scim) -> None:
    created = _entra_create(scim)
    url = f"/Users/{created['id']}"
    for path, (_, value) in ENTRA.items():
        body = patch_body({"op": "Replace", "path": path, "value": _entra_value(value)})
        response = scim.patch(url, body)
        assert response.status_code == 200, (path, response.get_json())
    assert_mapped(scim.get(url).get_json(), ENTRA, 1)


def test_entra_adds_to_an_empty_user_without_the_flag(scim: Scim) -> None:
    """A mapping added after users were provisioned reaches them as `Add` operations."""
    created = scim.post("/Users", {"schemas": [CORE_USER], "userName": "late@contoso.example"})
    url = f"/Users/{created.get_json()['id']}"
    for path, (_, value) in ENTRA.items():
        if path == "userName":
            continue
        body = patch_body({"op": "Add", "path": path, "value": _entra_value(value)})
        response = scim.patch(url, body)
        assert response.status_code == 200, (path, response.get_json())
    got = scim.get(url).get_json()
    assert_mapped(got, {k: v for k, v in ENTRA.items() if k != "userName"}, 1)


def test_entra_updates_with_the_flag_in_one_pathless_replace(scim: Scim) -> None:
    created = _entra_create(scim)
    url = f"/Users/{created['id']}"
    value = {path: update for path, (_, update) in ENTRA.items()}
    response = scim.patch(url, patch_body({"op": "replace", "value": value}))
    assert response.status_code == 200, response.get_json()
    assert_mapped(response.get_json(), ENTRA, 1)
    assert_mapped(scim.get(url).get_json(), ENTRA, 1)


def test_the_tenant_url_flag_is_ignored_if_it_reaches_a_request(scim: Scim) -> None:
    created = scim.post("/Users", body_of(ENTRA, 0)).get_json()
    text = f'userName eq "{ENTRA["userName"][0]}"'
    found = scim.get("/Users", query_string={"aadOptscim062020": "", "filter": text})
    assert found.status_code == 200, found.get_json()
    assert [r["id"] for r in found.get_json()["Resources"]] == [created["id"]]


@pytest.mark.parametrize(
    ("body", "scim_type", "named"),
    [
        ({"op": "Replace", "path": LMS + "brunch", "value": "x"}, "invalidPath", "brunch"),
        ({"op": "replace", "value": {LMS + "brunch": "x"}}, "invalidValue", "brunch"),
    ],
)
def test_a_misspelt_mapping_target_is_refused_naming_it(
    scim: Scim, body: dict[str, Any], scim_type: str, named: str
) -> None:
    """The guide's troubleshooting table: a typo in a target is an error Entra shows, never a
    value silently dropped."""
    created = scim.post("/Users", body_of(ENTRA, 0)).get_json()
    response = scim.patch(f"/Users/{created['id']}", patch_body(body))
    assert response.status_code == 400
    assert response.get_json()["scimType"] == scim_type
    assert named in response.get_json()["detail"]
