"""The column maps agree with the schema documents, which decide (DESIGN: the schemas are the
single source of truth): every mapped attribute exists there, `uniqueness: server` is a unique
index, `caseExact: false` text is compared through a folded key column, and `dateTime`
attributes are stored as timestamps."""

from __future__ import annotations

import peewee
import pytest

from app.store import group_mapping, user_mapping
from app.store.mapping import Scalar
from scim_schemas import resource_type

USER = resource_type("User")
GROUP = resource_type("Group")
MAPS = [
    pytest.param(USER, user_mapping.SCALARS, id="User"),
    pytest.param(GROUP, group_mapping.SCALARS, id="Group"),
]


def _unique(field: peewee.Field) -> bool:
    """Unique on its own, or within a tenant: `uniqueness: server` is per SCIM service provider
    (RFC 7643 §2.2), and each tenant is one (a unique index on `(tenant_id, field)`)."""
    per_tenant = any(
        unique and tuple(columns) == ("tenant_id", field.name)
        for columns, unique in field.model._meta.indexes
    )
    return bool(field.unique or field.primary_key or per_tenant)


@pytest.mark.parametrize(("rtype", "scalars"), MAPS)
def test_every_mapped_attribute_is_in_the_schema(rtype, scalars: tuple[Scalar, ...]) -> None:
    for scalar in scalars:
        assert scalar.attribute(rtype).path == scalar.path


@pytest.mark.parametrize(("rtype", "scalars"), MAPS)
def test_server_uniqueness_is_a_unique_index(rtype, scalars: tuple[Scalar, ...]) -> None:
    for scalar in scalars:
        attribute = scalar.attribute(rtype)
        column = scalar.key_field or scalar.field
        unique = attribute.uniqueness in ("server", "global")
        assert _unique(column) is unique, (scalar.path, attribute.uniqueness)


@pytest.mark.parametrize(("rtype", "scalars"), MAPS)
def test_caseless_text_is_compared_through_a_key_column(rtype, scalars: tuple[Scalar, ...]) -> None:
    for scalar in scalars:
        attribute = scalar.attribute(rtype)
        if scalar.key_field is not None:
            assert not attribute.case_exact, scalar.path
        if attribute.uniqueness != "none" and attribute.type == "string":
            # A unique caseless value needs its folded key, or `Alice` and `alice` would differ.
            assert attribute.case_exact or scalar.key_field is not None, scalar.path


@pytest.mark.parametrize(("rtype", "scalars"), MAPS)
def test_datetime_attributes_are_timestamp_columns(rtype, scalars: tuple[Scalar, ...]) -> None:
    for scalar in scalars:
        is_datetime = scalar.attribute(rtype).type == "dateTime"
        assert isinstance(scalar.field, peewee.DateTimeField) is is_datetime, scalar.path


def test_value_keys_follow_case_exact_from_the_schema() -> None:
    # Certificates are never a key (too long to index); e-mail keys are folded.
    assert user_mapping.value_key("x509Certificates", "AbC") is None
    assert user_mapping.value_key("emails", "Ann@Example.COM") == "ann@example.com"
    for attr in user_mapping.VALUE_ATTRIBUTES:
        exact = USER.resolve(f"{attr}.value").sub.case_exact  # type: ignore[union-attr]
        assert (attr in user_mapping._CASE_EXACT_VALUES) is exact
