"""Where each User attribute lives in the database, and the conversions both ways.

This map is also the allow-list that filters and `sortBy` compile through: an attribute that is
not here cannot reach SQL.
"""

from __future__ import annotations

from typing import Any

from app import datetimes
from app.store.mapping import Scalar, check_indexable, meta
from app.store.models import MAX_INDEXED_LENGTH, User, UserAddress, UserValue
from scim_schemas import CORE_USER, ENTERPRISE_USER, LMS_USER, resource_type

C, E, L = CORE_USER, ENTERPRISE_USER, LMS_USER
USER = resource_type("User")


SCALARS: tuple[Scalar, ...] = (
    Scalar(C, "id", User.id),
    Scalar(C, "externalId", User.external_id),
    Scalar(C, "userName", User.user_name, User.user_name_key),
    Scalar(C, "name.formatted", User.formatted_name),
    Scalar(C, "name.familyName", User.family_name),
    Scalar(C, "name.givenName", User.given_name),
    Scalar(C, "name.middleName", User.middle_name),
    Scalar(C, "name.honorificPrefix", User.honorific_prefix),
    Scalar(C, "name.honorificSuffix", User.honorific_suffix),
    Scalar(C, "displayName", User.display_name),
    Scalar(C, "nickName", User.nick_name),
    Scalar(C, "profileUrl", User.profile_url),
    Scalar(C, "title", User.title),
    Scalar(C, "userType", User.user_type),
    Scalar(C, "preferredLanguage", User.preferred_language),
    Scalar(C, "locale", User.locale),
    Scalar(C, "timezone", User.timezone),
    Scalar(C, "active", User.active),
    Scalar(C, "meta.created", User.created),
    Scalar(C, "meta.lastModified", User.last_modified),
    Scalar(E, "employeeNumber", User.employee_number),
    Scalar(E, "costCenter", User.cost_center),
    Scalar(E, "organization", User.organization),
    Scalar(E, "division", User.division),
    Scalar(E, "department", User.department),
    Scalar(E, "manager.value", User.manager_id),
    Scalar(L, "branch", User.branch),
    Scalar(L, "jobRole", User.job_role),
    Scalar(L, "hireDate", User.hire_date),
)
SCALAR_BY_PATH = {(s.schema, s.path): s for s in SCALARS}

# Multi-valued attributes whose elements are {value, type, primary, display}, in UserValue.
VALUE_ATTRIBUTES = (
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "entitlements",
    "roles",
    "x509Certificates",
)
VALUE_COLUMNS = {
    "value": UserValue.value_key,
    "type": UserValue.type,
    "primary": UserValue.primary,
    "display": UserValue.display,
}
ADDRESS_COLUMNS = {
    "formatted": UserAddress.formatted,
    "streetAddress": UserAddress.street_address,
    "locality": UserAddress.locality,
    "region": UserAddress.region,
    "postalCode": UserAddress.postal_code,
    "country": UserAddress.country,
    "type": UserAddress.type,
    "primary": UserAddress.primary,
}
# Values too long to index (certificates, photo URLs): kept, but never a key.
_UNINDEXED_VALUES = frozenset({"x509Certificates", "photos"})
# Whether each value attribute's `value` compares case-exactly (RFC 7643 §2.2), from the schema.
_CASE_EXACT_VALUES = frozenset(
    attr for attr in VALUE_ATTRIBUTES if USER.resolve(f"{attr}.value").sub.case_exact
)
# How each value attribute's `value`, and each keyed scalar, is folded into its key column: the
# identity key for names and e-mail addresses, lower-casing otherwise (`Attribute.key`).
_VALUE_KEYS = {attr: USER.resolve(f"{attr}.value").target.key for attr in VALUE_ATTRIBUTES}
_KEYS = {s.path: s.attribute(USER).key for s in SCALARS if s.key_field is not None}
# The scalar columns that hold a dateTime (RFC 7643 §2.3.5), from the schema.
_DATETIMES = frozenset(s.path for s in SCALARS if s.attribute(USER).type == "dateTime")


def _get(resource: dict[str, Any], schema: str, path: str) -> Any:
    container = resource if schema == C else resource.get(schema) or {}
    head, _, tail = path.partition(".")
    value = container.get(head)
    if tail:
        value = value.get(tail) if isinstance(value, dict) else None
    return value


def row_values(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for the User row (every mapped column, None where absent)."""
    values: dict[str, Any] = {}
    for scalar in SCALARS:
        if scalar.path in ("id", "meta.created", "meta.lastModified"):
            continue
        value = _get(resource, scalar.schema, scalar.path)
        if scalar.path in _DATETIMES and isinstance(value, str):
            parsed = datetimes.parse(value)  # already checked by `marshal`
            value = datetimes.stored(parsed) if parsed is not None else None
        if isinstance(value, str) and scalar.field.name in ("user_name", "external_id"):
            check_indexable(scalar.path, value)
        values[scalar.field.name] = value
        if scalar.key_field is not None:
            values[scalar.key_field.name] = _KEYS[scalar.path](value) if value is not None else None
    if values.get("active") is None:
        values["active"] = True
    return values


def value_key(attr: str, value: Any) -> str | None:
    if not isinstance(value, str) or attr in _UNINDEXED_VALUES:
        return None
    key = value if attr in _CASE_EXACT_VALUES else _VALUE_KEYS[attr](value)
    return key[:MAX_INDEXED_LENGTH]


def _primary(value: Any) -> bool | None:
    """`primary` as stored: true, false, or NULL when the client did not send it (m0006 made
    the columns nullable). A sent `false` is kept, so the client reads back what it wrote
    (RFC 7643 §2.4 limits only `true` to one element; issue 15)."""
    return value if isinstance(value, bool) else None


def child_rows(
    user_id: str, resource: dict[str, Any], unique_emails: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for UserValue and UserAddress, in the order the client sent the elements."""
    values: list[dict[str, Any]] = []
    for attr in VALUE_ATTRIBUTES:
        seen: set[str] = set()
        for position, element in enumerate(resource.get(attr) or ()):
            value = element.get("value")
            key = value_key(attr, value)
            unique_key = None
            if attr == "emails" and unique_emails and key is not None and key not in seen:
                check_indexable("emails.value", value)
                unique_key = key
                seen.add(key)
            values.append(
                {
                    "user": user_id,
                    "attr": attr,
                    "position": position,
                    "value": value,
                    "value_key": key,
                    "type": element.get("type"),
                    "primary": _primary(element.get("primary")),
                    "display": element.get("display"),
                    "unique_key": unique_key,
                }
            )
    addresses = []
    for position, element in enumerate(resource.get("addresses") or ()):
        row = {column.name: element.get(name) for name, column in ADDRESS_COLUMNS.items()}
        row["primary"] = _primary(row["primary"])
        addresses.append({"user": user_id, "position": position, **row})
    return values, addresses


# Per scalar column, worked out once: (field, schema, attribute, sub-attribute, is a dateTime).
# A page of a hundred users reads some three thousand columns through this.
_READ_PLAN = [
    (scalar.field.name, scalar.schema, *scalar.path.partition(".")[::2], scalar.path in _DATETIMES)
    for scalar in SCALARS
    if not scalar.path.startswith("meta.")
]


def to_resource(
    user: User,
    values: list[UserValue],
    addresses: list[UserAddress],
    groups: list[dict[str, Any]],
    enrolments: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The canonical resource dict for one stored user (no password, no location).

    `enrolments` (`[{courseId, role}]`, from `app.store.enrolments`) go in the LMS extension."""
    resource: dict[str, Any] = {"schemas": [C]}
    data = user.__data__  # what each field's descriptor would read, without the call per column
    for name, schema, head, tail, is_date in _READ_PLAN:
        value = data.get(name)
        if value is None:
            continue
        if is_date:
            value = datetimes.scim(value)
        container = resource if schema == C else resource.setdefault(schema, {})
        if tail:
            container.setdefault(head, {})[tail] = value
        else:
            container[head] = value
    for row in sorted(values, key=lambda r: (r.attr, r.position)):
        element = {
            "value": row.value,
            "type": row.type,
            "primary": row.primary,
            "display": row.display,
        }
        resource.setdefault(row.attr, []).append(
            {k: v for k, v in element.items() if v is not None}
        )
    for row in sorted(addresses, key=lambda r: r.position):
        element = {name: getattr(row, column.name) for name, column in ADDRESS_COLUMNS.items()}
        resource.setdefault("addresses", []).append(
            {k: v for k, v in element.items() if v is not None}
        )
    if groups:
        resource["groups"] = groups
    if enrolments:
        resource.setdefault(L, {})["enrolments"] = enrolments
    resource["schemas"] += [urn for urn in (E, L) if urn in resource]
    resource["meta"] = meta("User", user)
    return resource
