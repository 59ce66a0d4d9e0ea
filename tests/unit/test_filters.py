"""Filter parsing and evaluation (RFC 7644 §3.4.2.2), table-driven from the RFC's own examples."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.errors import InvalidFilter
from app.filters import (
    And,
    AttrRef,
    Compare,
    Not,
    Or,
    Present,
    ValuePath,
    matches,
    matches_element,
    parse,
    parse_across,
    parse_value_filter,
    render,
)
from app.filters.literals import prepare
from scim_schemas import ENTERPRISE_USER, resource_type
from tests.helpers import SCORES

USER = resource_type("User")
GROUP = resource_type("Group")


def attr(path: str, rtype: Any = USER) -> AttrRef:
    resolved = rtype.resolve(path)
    assert resolved is not None, path
    return AttrRef(resolved.attribute, resolved.sub)


# --- fixtures: three users the RFC examples are evaluated against ----------------------------

BJENSEN: dict[str, Any] = {
    "id": "2819c223-7f76-453a-919d-413861904646",
    "userName": "bjensen",
    "name": {"familyName": "O'Malley", "givenName": "Barbara"},
    "title": "Tour Guide",
    "userType": "Employee",
    "active": True,
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "ims": [{"value": "someaimhandle", "type": "aim"}],
    "meta": {"created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
    ENTERPRISE_USER: {
        "department": "Tour Operations",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"},
    },
}
JSMITH: dict[str, Any] = {
    "id": "c3a7b0b4-0000-4000-8000-000000000002",
    "userName": "JSmith",
    "userType": "Intern",
    "active": False,
    "emails": [{"value": "jsmith@example.org", "type": "home"}],
    "ims": [{"value": "js@foo.com", "type": "xmpp"}],
    "meta": {
        "created": datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC),
        "lastModified": datetime(2012, 1, 1, tzinfo=UTC),
    },
}
NOBODY: dict[str, Any] = {
    "id": "c3a7b0b4-0000-4000-8000-000000000003",
    "userName": "nobody",
    "emails": [{"value": "nobody@mail.test", "type": "other"}],
    "meta": {"created": "2009-01-01T00:00:00Z", "lastModified": "2009-01-01T00:00:00Z"},
}
USERS = {"bjensen": BJENSEN, "jsmith": JSMITH, "nobody": NOBODY}


def matching(text: str, rtype: Any = USER, resources: dict[str, Any] = USERS) -> set[str]:
    expr = parse(text, rtype)
    return {name for name, resource in resources.items() if matches(expr, resource)}


# Every filter example of RFC 7644 §3.4.2.2 (but `schemas eq …`, below), with the users of the
# fixture it selects.
RFC_EXAMPLES = [
    ('userName eq "bjensen"', {"bjensen"}),
    ('name.familyName co "O\'Malley"', {"bjensen"}),
    ('userName sw "J"', {"jsmith"}),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"', {"jsmith"}),
    ("title pr", {"bjensen"}),
    ('meta.lastModified gt "2011-05-13T04:42:34Z"', {"jsmith"}),
    ('meta.lastModified ge "2011-05-13T04:42:34Z"', {"bjensen", "jsmith"}),
    ('meta.lastModified lt "2011-05-13T04:42:34Z"', {"nobody"}),
    ('meta.lastModified le "2011-05-13T04:42:34Z"', {"bjensen", "nobody"}),
    ('title pr and userType eq "Employee"', {"bjensen"}),
    ('title pr or userType eq "Intern"', {"bjensen", "jsmith"}),
    (
        'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
        {"bjensen"},
    ),
    (
        'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
        {"nobody"},
    ),
    ('userType eq "Employee" and (emails.type eq "work")', {"bjensen"}),
    ('userType eq "Employee" and emails[type eq "work" and value co "@example.com"]', {"bjensen"}),
    (
        'emails[type eq "work" and value co "@example.com"] or '
        'ims[type eq "xmpp" and value co "@foo.com"]',
        {"bjensen", "jsmith"},
    ),
]


@pytest.mark.parametrize(("text", "expected"), RFC_EXAMPLES)
def test_rfc_examples_parse_and_evaluate(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


@pytest.mark.parametrize(("text", "expected"), RFC_EXAMPLES)
def test_rfc_examples_render_and_reparse(text: str, expected: set[str]) -> None:
    expr = parse(text, USER)
    assert parse(render(expr), USER) == expr


def test_rfc_schemas_example_is_refused_because_schemas_is_not_a_filterable_attribute() -> None:
    # `schemas` is not an attribute of our schema documents, and unknown attributes are never
    # ignored: the RFC's example gets a 400 invalidFilter here.
    with pytest.raises(InvalidFilter, match="Unknown attribute 'schemas'"):
        parse('schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"', USER)


def test_rfc_examples_build_the_expected_trees() -> None:
    assert parse('userName eq "bjensen"', USER) == Compare(attr("userName"), "eq", "bjensen")
    assert parse("title pr", USER) == Present(attr("title"))
    assert parse('meta.lastModified gt "2011-05-13T04:42:34Z"', USER) == Compare(
        attr("meta.lastModified"), "gt", datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)
    )
    assert parse(
        'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
        USER,
    ) == And(
        Compare(attr("userType"), "ne", "Employee"),
        Not(
            Or(
                Compare(attr("emails.value"), "co", "example.com"),
                Compare(attr("emails.value"), "co", "example.org"),
            )
        ),
    )
    assert parse('emails[type eq "work" and value co "@example.com"]', USER) == ValuePath(
        attr("emails"),
        And(
            Compare(attr("emails.type"), "eq", "work"),
            Compare(attr("emails.value"), "co", "@example.com"),
        ),
    )


# --- value paths ---------------------------------------------------------------------------


def test_value_path_binds_conditions_to_one_element() -> None:
    user = {
        "emails": [
            {"type": "work", "value": "a@other.com"},
            {"type": "home", "value": "b@example.com"},
        ]
    }
    bound = parse('emails[type eq "work" and value co "@example.com"]', USER)
    loose = parse('emails.type eq "work" and emails.value co "@example.com"', USER)
    assert not matches(bound, user)
    assert matches(loose, user)


def test_value_path_with_or_and_not_inside() -> None:
    expr = parse('emails[(type eq "work" or type eq "home") and not (value ew ".org")]', USER)
    assert expr == ValuePath(
        attr("emails"),
        And(
            Or(
                Compare(attr("emails.type"), "eq", "work"),
                Compare(attr("emails.type"), "eq", "home"),
            ),
            Not(Compare(attr("emails.value"), "ew", ".org")),
        ),
    )
    assert matching(render(expr)) == {"bjensen"}


def test_entra_value_path_followed_by_sub_attribute() -> None:
    # Entra ID sends `emails[type eq "work"].value eq "…"`; both conditions bind to one e-mail.
    expr = parse('emails[type eq "work"].value eq "bjensen@example.com"', USER)
    assert expr == ValuePath(
        attr("emails"),
        And(
            Compare(attr("emails.type"), "eq", "work"),
            Compare(attr("emails.value"), "eq", "bjensen@example.com"),
        ),
    )
    assert matching('emails[type eq "work"].value eq "bjensen@example.com"') == {"bjensen"}
    assert matching('emails[type eq "home"].value eq "bjensen@example.com"') == set()
    assert matching('emails[type eq "home"].value pr') == {"bjensen", "jsmith"}


def test_value_path_on_single_valued_complex_and_extension() -> None:
    assert matching('name[givenName eq "barbara"]') == {"bjensen"}
    manager = f"{ENTERPRISE_USER}:manager"
    assert matching(f'{manager}[value eq "26118915-6090-4610-87e4-49d8ca9f808d"]') == {"bjensen"}


# --- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rtype", "path"),
    [
        ('emails eq "a@b"', USER, "emails.value"),
        ('groups eq "g1"', USER, "groups.value"),
        ('members eq "u1"', GROUP, "members.value"),
        (f'{ENTERPRISE_USER}:manager eq "m1"', USER, f"{ENTERPRISE_USER}:manager.value"),
    ],
)
def test_complex_attribute_compared_directly_means_its_value(
    text: str, rtype: Any, path: str
) -> None:
    expr = parse(text, rtype)
    assert isinstance(expr, Compare)
    assert expr.attr == attr(path, rtype)
    assert expr.attr.target.name == "value"


def test_members_and_groups_evaluate() -> None:
    group = {"displayName": "Tour Guides", "members": [{"value": "u1"}, {"value": "u2"}]}
    assert matches(parse('members eq "u2"', GROUP), group)
    assert matches(parse('members[value eq "u1"]', GROUP), group)
    assert not matches(parse('members.value eq "u3"', GROUP), group)
    assert matches(parse('displayName eq "tour guides"', GROUP), group)
    assert matches(parse('groups eq "g1"', USER), {"groups": [{"value": "g1", "display": "x"}]})


def test_eq_and_ne_null_are_presence_tests() -> None:
    assert parse("title eq null", USER) == Not(Present(attr("title")))
    assert parse("title ne null", USER) == Present(attr("title"))
    assert matching("title eq null") == {"jsmith", "nobody"}


# --- case, URNs, literals -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'USERNAME EQ "bjensen"',
        'userName Eq "bjensen"',
        'UserName eQ "BJENSEN"',
        'urn:ietf:params:scim:schemas:core:2.0:user:USERNAME eq "bjensen"',
    ],
)
def test_attribute_names_and_operators_are_case_insensitive(text: str) -> None:
    expr = parse(text, USER)
    assert isinstance(expr, Compare)
    assert expr.attr.attribute.name == "userName"  # the canonical Attribute
    assert expr.op == "eq"
    assert matching(text) == {"bjensen"}


def test_keywords_are_case_insensitive() -> None:
    expr = parse('NOT (TITLE PR) AND userType Eq "Intern" OR EMAILS[TYPE EQ "work"]', USER)
    assert expr == Or(
        And(Not(Present(attr("title"))), Compare(attr("userType"), "eq", "Intern")),
        ValuePath(attr("emails"), Compare(attr("emails.type"), "eq", "work")),
    )


def test_urn_qualified_extension_attributes() -> None:
    department = f"{ENTERPRISE_USER}:department"
    expr = parse(f'{department} eq "tour operations"', USER)
    assert expr == Compare(attr(department), "eq", "tour operations")
    assert expr.attr.attribute.schema == ENTERPRISE_USER
    assert matching(f'{department} eq "tour operations"') == {"bjensen"}
    assert matching(f'{department.upper()} sw "Tour"') == {"bjensen"}
    assert matching(f"{ENTERPRISE_USER}:manager.value pr") == {"bjensen"}
    assert render(expr) == f'{department} eq "tour operations"'


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'userName eq "a\"b"', 'a"b'),
        (r'userName eq "\"quoted\""', '"quoted"'),
        (r'userName eq "back\\slash"', "back\\slash"),
        (r'userName eq "ends with backslash\\"', "ends with backslash\\"),
        ('userName eq "100%_x"', "100%_x"),
        ('userName eq "Zoë 日本 😀"', "Zoë 日本 😀"),
        (r'userName eq "\u00e9\n"', "é\n"),
        ('userName eq "(not) [a] or b and c"', "(not) [a] or b and c"),
        ('userName eq ""', ""),
    ],
)
def test_string_literals(text: str, value: str) -> None:
    expr = parse(text, USER)
    assert expr == Compare(attr("userName"), "eq", value)
    assert matches(expr, {"userName": value})
    assert parse(render(expr), USER) == expr


def test_percent_and_underscore_are_not_wildcards() -> None:
    assert matches(parse('userName co "%"', USER), {"userName": "100%"})
    assert not matches(parse('userName co "%"', USER), {"userName": "abc"})
    assert not matches(parse('userName sw "a_c"', USER), {"userName": "abc"})
    assert matches(parse('userName ew "_c"', USER), {"userName": "a_c"})


def test_bare_word_values_are_strings() -> None:
    # Entra ID's documentation shows unquoted values; accepted when unambiguous.
    assert parse("externalId eq jyoung", USER) == Compare(attr("externalId"), "eq", "jyoung")
    assert parse("emails[type eq work]", USER) == ValuePath(
        attr("emails"), Compare(attr("emails.type"), "eq", "work")
    )
    assert parse("userName eq j.young@example.com and title pr", USER) == And(
        Compare(attr("userName"), "eq", "j.young@example.com"), Present(attr("title"))
    )


def test_boolean_literals_any_case() -> None:
    for text in ("active eq true", "active eq True", "active eq TRUE"):
        assert parse(text, USER) == Compare(attr("active"), "eq", True)
    assert matching("active eq false") == {"jsmith"}
    assert matching("active ne true") == {"jsmith", "nobody"}


# --- numbers: the User schema has none, so a synthetic complex attribute carries them ----------


def score(name: str) -> AttrRef:
    sub = SCORES.sub(name)
    assert sub is not None
    return AttrRef(SCORES, sub)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("count eq 42", Compare(score("count"), "eq", 42)),
        ("count gt 1234567890123", Compare(score("count"), "gt", 1234567890123)),
        ("count ge -7", Compare(score("count"), "ge", -7)),
        ("count eq 0", Compare(score("count"), "eq", 0)),
        ("ratio lt 4.25", Compare(score("ratio"), "lt", 4.25)),
        ("ratio le -1.5e3", Compare(score("ratio"), "le", -1500.0)),
        ("ratio eq 42", Compare(score("ratio"), "eq", 42)),
        (
            "count eq 42 and ratio gt 0.5",
            And(Compare(score("count"), "eq", 42), Compare(score("ratio"), "gt", 0.5)),
        ),
        ("(count eq 10)", Compare(score("count"), "eq", 10)),
    ],
)
def test_numbers_of_many_digits_and_decimals(text: str, expected: Any) -> None:
    expr = parse_value_filter(text, SCORES, USER)
    assert expr == expected
    assert parse_value_filter(render(expr, relative=True), SCORES, USER) == expr


def test_number_comparisons_evaluate_numerically() -> None:
    element = {"count": 42, "ratio": 0.75, "flag": True, "at": "2020-02-02T00:00:00Z", "label": "B"}
    assert matches_element(parse_value_filter("count eq 42", SCORES, USER), element)
    # numerically, not as text ("9" > "42")
    assert matches_element(parse_value_filter("count gt 9", SCORES, USER), element)
    assert matches_element(parse_value_filter("ratio lt 1", SCORES, USER), element)
    assert not matches_element(parse_value_filter("ratio ge 1e0", SCORES, USER), element)
    assert matches_element(parse_value_filter("flag eq true", SCORES, USER), element)
    assert matches_element(
        parse_value_filter('at lt "2020-02-02T01:00:00+00:00"', SCORES, USER), element
    )
    assert matches_element(parse_value_filter('label gt "a"', SCORES, USER), element)


def test_literal_pass_replaces_numbers_and_strings_before_their_lexer() -> None:
    prepared = prepare(r'x eq 42 and y eq "a\"b" and z eq 1.5e3', 20)
    assert prepared.text == 'x eq "#0" and y eq "#1" and z eq "#2"'
    assert [literal.value for literal in prepared.literals] == [42, 'a"b', 1500.0]
    # Numbers that are part of a URN or an attribute name are left alone.
    urn = f"{ENTERPRISE_USER}:department eq x2"
    assert prepare(urn, 20).text == f'{ENTERPRISE_USER}:department eq "#0"'


@pytest.mark.parametrize(
    "text",
    [
        "count eq 4.2",  # a decimal for an integer
        "count eq 99999999999999999999",  # beyond 64 bits
        'count eq "42"',
        "count eq true",
        "count co 4",
        "ratio sw 1",
        "ratio eq 1e999",
        "flag gt false",
        'blob lt "AAAA"',
        'at co "2020"',
        "at eq 5",
        'flag eq "true"',
        "label eq 7",
        "count eq 007",
        "count eq -x",
    ],
)
def test_number_and_type_errors(text: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_value_filter(text, SCORES, USER)


# --- precedence -----------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (
        Present(attr("title")),
        Compare(attr("userType"), "eq", "x"),
        Compare(attr("userName"), "eq", "y"),
    )
    assert parse('title pr or userType eq "x" and userName eq "y"', USER) == Or(a, And(b, c))
    assert parse('title pr and userType eq "x" or userName eq "y"', USER) == Or(And(a, b), c)
    assert parse('(title pr or userType eq "x") and userName eq "y"', USER) == And(Or(a, b), c)
    assert parse('title pr or userType eq "x" or userName eq "y"', USER) == Or(Or(a, b), c)
    assert parse('title pr or (userType eq "x" or userName eq "y")', USER) == Or(a, Or(b, c))
    assert parse('not (title pr) and userType eq "x"', USER) == And(Not(a), b)


def test_precedence_changes_the_result() -> None:
    # bjensen has a title; with `and` first the filter matches her, with `or` first it does not.
    assert matching('title pr or userType eq "x" and userName eq "y"') == {"bjensen"}
    assert matching('(title pr or userType eq "x") and userName eq "y"') == set()


# --- evaluation semantics --------------------------------------------------------------------


def test_ne_on_a_missing_attribute_is_true() -> None:
    assert matches(parse('title ne "x"', USER), {})
    assert not matches(parse('title eq "x"', USER), {})
    assert matches(parse('emails.value ne "a"', USER), {"emails": []})
    assert not matches(parse('emails.value ne "a"', USER), {"emails": [{"value": "A"}]})
    assert matches(parse('emails.value ne "a"', USER), {"emails": [{"value": "a"}, {"value": "b"}]})


@pytest.mark.parametrize(
    ("resource", "present"),
    [
        ({}, False),
        ({"title": None}, False),
        ({"title": ""}, False),
        ({"title": "x"}, True),
    ],
)
def test_pr_on_simple_attribute(resource: dict[str, Any], present: bool) -> None:
    assert matches(parse("title pr", USER), resource) is present


@pytest.mark.parametrize(
    ("resource", "present"),
    [
        ({"emails": []}, False),
        ({"emails": [{}]}, False),
        ({"emails": [{"value": None, "type": ""}]}, False),
        ({"emails": [{"type": "work"}]}, True),
        ({"active": False}, None),
    ],
)
def test_pr_on_complex_attribute(resource: dict[str, Any], present: bool | None) -> None:
    if present is None:
        assert matches(parse("active pr", USER), resource)  # false is a value
        return
    assert matches(parse("emails pr", USER), resource) is present


def test_case_exact_comes_from_the_schema() -> None:
    assert matches(parse('id eq "ABC"', USER), {"id": "ABC"})
    assert not matches(parse('id eq "abc"', USER), {"id": "ABC"})  # id is caseExact
    assert matches(parse('userName eq "abc"', USER), {"userName": "ABC"})
    # Names fold to the identity key (NFKC case-fold); other strings are lower-cased, the same
    # as the database's LOWER().
    assert matches(parse('userName eq "ÉCOLE"', USER), {"userName": "école"})
    assert matches(parse('userName eq "STRASSE"', USER), {"userName": "straße"})
    assert matches(
        parse('emails[value eq "BOB\uff20EXAMPLE.COM"]', USER),
        {"emails": [{"value": "bob@example.com"}]},
    )
    assert matches(parse('title eq "ÉCOLE"', USER), {"title": "école"})
    assert not matches(parse('title eq "STRASSE"', USER), {"title": "straße"})


def test_ordering_of_strings_and_datetimes() -> None:
    assert matches(parse('userName gt "b"', USER), {"userName": "C"})
    assert not matches(parse('userName lt "b"', USER), {"userName": "C"})
    plus_two = parse('meta.lastModified gt "2011-05-13T06:00:00+02:00"', USER)
    assert matches(plus_two, {"meta": {"lastModified": "2011-05-13T04:42:34Z"}})
    assert matches(plus_two, {"meta": {"lastModified": datetime(2011, 5, 13, 4, 1, tzinfo=UTC)}})
    assert not matches(
        plus_two, {"meta": {"lastModified": datetime(2011, 5, 13, 3, 59, tzinfo=UTC)}}
    )


def test_datetime_literals_become_aware_datetimes() -> None:
    expr = parse('meta.created ge "2011-05-13T04:42:34.5+05:30"', USER)
    assert isinstance(expr, Compare)
    assert expr.value == datetime(
        2011, 5, 13, 4, 42, 34, 500000, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    naive = parse('meta.created ge "2011-05-13T04:42:34"', USER)
    assert isinstance(naive, Compare)
    assert naive.value == datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)
    # A date alone is midnight UTC, as in a request body (`app.datetimes.parse`).
    day = parse('meta.lastModified gt "2024-09-01"', USER)
    assert isinstance(day, Compare)
    assert day.value == datetime(2024, 9, 1, tzinfo=UTC)


def test_matches_element_for_patch_paths() -> None:
    emails = USER.attribute("emails")
    assert emails is not None
    expr = parse_value_filter('type eq "work" and primary eq true', emails, USER)
    assert expr == And(
        Compare(attr("emails.type"), "eq", "work"), Compare(attr("emails.primary"), "eq", True)
    )
    assert matches_element(expr, {"type": "Work", "primary": True, "value": "a@b"})
    assert not matches_element(expr, {"type": "work", "value": "a@b"})
    assert matches_element(parse_value_filter('value eq "A@B"', emails, USER), {"value": "a@b"})
    assert render(expr, relative=True) == 'type eq "work" and primary eq true'


@pytest.mark.parametrize(
    "text",
    [
        'emails.type eq "work"',  # a full path inside brackets
        'foo eq "x"',  # unknown sub-attribute
        'type[value eq "x"]',  # nesting
        'type eq "work" and',
    ],
)
def test_value_filter_errors(text: str) -> None:
    emails = USER.attribute("emails")
    assert emails is not None
    with pytest.raises(InvalidFilter):
        parse_value_filter(text, emails, USER)


def test_value_filter_needs_a_complex_attribute() -> None:
    user_name = USER.attribute("userName")
    assert user_name is not None
    with pytest.raises(InvalidFilter, match="no sub-attributes"):
        parse_value_filter('value eq "x"', user_name, USER)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('nickname2 eq "x"', "Unknown attribute 'nickname2'"),
        ('name.middle eq "x"', "Unknown attribute 'name.middle'"),
        ('userName.foo eq "x"', "Unknown attribute"),
        ('urn:example:nope:userName eq "x"', "Unknown attribute"),
        (f'{ENTERPRISE_USER}:nope eq "x"', "Unknown attribute"),
        ('department eq "x"', "Unknown attribute 'department'"),  # extension: URN required
        ('emails[kind eq "x"]', "Unknown attribute 'emails.kind'"),
        ('emails[type eq "x"].kind eq "y"', "Unknown attribute 'emails.kind'"),
        ("nickname2 pr", "Unknown attribute"),
        ("active gt true", "'gt' cannot be used on the boolean attribute 'active'"),
        ("active le false", "cannot be used on the boolean"),
        ('x509Certificates.value gt "AAAA"', "binary"),
        ('active co "t"', "only applies to string attributes"),
        ('meta.created sw "2011"', "only applies to string attributes"),
        ('active eq "true"', "'active' is of type boolean"),
        ("userName eq true", "is of type string"),
        ("userName eq 42", "put string values in double quotes"),
        ('meta.lastModified gt "yesterday"', "not an xsd:dateTime"),
        ("meta.lastModified gt 2011", "is of type dateTime"),
        ("userName gt null", "compare null with 'eq' or 'ne'"),
        ('name eq "x"', "'name' is a complex attribute"),
        ('userName[value eq "x"]', "not a complex attribute"),
        ('emails.value[type eq "x"]', "not a sub-attribute"),
        ('emails[type eq "work"] eq "x"', "name a sub-attribute"),
        ('emails[type[value eq "x"] eq "y"]', "cannot be nested"),
        ('emails[emails.type eq "x"]', "name a sub-attribute of 'emails'"),
        ('password eq "secret"', "'password' cannot be used in a filter"),
        ("password pr", "'password' cannot be used in a filter"),
        ("userName eq", "ends unexpectedly"),
        ('(userName eq "a"', "ends unexpectedly"),
        ('userName xx "a"', "Unexpected 'xx' at position 9"),
        ('userName eq "a")', "Unexpected ')'"),
        ('userName "a"', 'Unexpected value "a" at position 9'),
        ('eq "a"', "Unexpected"),
        ("and", "Unexpected"),
        ('userName eq "a" and', "ends unexpectedly"),
        ('userName eq "a" title pr', "Unexpected 'title'"),
        ('userName eq "a" or or title pr', "Unexpected 'or'"),
        ("not title pr", "Unexpected"),
        ('userName eq "unterminated', "no closing quote"),
        (r'userName eq "bad \x escape"', "invalid escape"),
        (r'userName eq "nul \u0000"', "NUL"),
        (r'userName eq "\ud800"', "not valid Unicode"),
        ("userName eq and", "found the keyword 'and'"),
        ("userName eq pr", "found the keyword 'pr'"),
        ("userName eq 0123", "not a valid number"),
        ("userName eq -x", "not a valid number"),
        ('userName eq "a" @', "Unexpected character '@' at position 16"),
        ('userName\neq "x"', "Unexpected character"),
        ("", "empty"),
        ("   ", "empty"),
        ("title pr ]", "Unexpected ']'"),
        ('"x" eq "y"', "Unexpected"),
        ("userName eq x y", "Unexpected 'y'"),
    ],
)
def test_invalid_filters(text: str, detail: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse(text, USER)
    assert detail in info.value.detail
    assert info.value.status == 400
    assert info.value.scim_type == "invalidFilter"


def test_non_string_filter_is_invalid() -> None:
    with pytest.raises(InvalidFilter):
        parse(None, USER)  # type: ignore[arg-type]


# --- limits ---------------------------------------------------------------------------------


def test_length_limit() -> None:
    text = 'userName eq "' + "a" * 4082 + '"'
    assert len(text) == 4096
    parse(text, USER)
    with pytest.raises(InvalidFilter, match="longer than the limit of 4096 characters"):
        parse(text + " ", USER)
    with pytest.raises(InvalidFilter, match="longer than the limit of 10"):
        parse('userName eq "bjensen"', USER, max_length=10)


def test_node_limit() -> None:
    assert parse("title pr or title pr", USER, max_nodes=3)
    with pytest.raises(InvalidFilter, match="more than the limit of 3 expressions"):
        parse("title pr or title pr or title pr", USER, max_nodes=3)
    with pytest.raises(InvalidFilter, match="more than the limit of 200 expressions"):
        parse(" or ".join(["title pr"] * 101), USER)
    assert parse(" or ".join(["title pr"] * 100), USER)  # 199 nodes


def test_depth_limit() -> None:
    assert parse("(" * 20 + "title pr" + ")" * 20, USER)
    with pytest.raises(InvalidFilter, match="nested deeper than the limit of 20 levels"):
        parse("(" * 21 + "title pr" + ")" * 21, USER)
    with pytest.raises(InvalidFilter, match="nested deeper than the limit of 3 levels"):
        parse("not (not (not (title pr)))", USER, max_depth=3)
    assert parse("not (not (title pr))", USER, max_depth=3)
    # A long chain of one operator is one level, however long.
    assert parse(" and ".join(["title pr"] * 50), USER, max_depth=2)


def test_huge_inputs_fail_cleanly() -> None:
    deep = "(" * 3000 + "title pr" + ")" * 3000
    with pytest.raises(InvalidFilter):
        parse(deep, USER, max_length=10**6, max_depth=10**6)
    chain = " or ".join(["title pr"] * 3000)
    with contextlib.suppress(InvalidFilter):  # parsing it is fine too; crashing is not
        parse(chain, USER, max_length=10**6, max_nodes=10**6, max_depth=10**6)


# --- across resource types (POST /.search at the root, RFC 7644 §3.4.2.1) --------------------

GROUP_NAME = Compare(attr("displayName", GROUP), "eq", "g")


@pytest.mark.parametrize(
    ("text", "for_group"),
    [
        # An attribute Groups lack has no value there: only `ne` and `eq null` hold.
        ('userName eq "u"', False),
        ('userName ne "u"', True),
        ('userName co "u"', False),
        ("userName pr", False),
        ("userName eq null", True),
        ("userName ne null", False),
        ('not (userName eq "u")', True),
        ('emails[type eq "work"]', False),
        ('emails[type eq "work"].value ne "x"', False),  # Entra's form: needs an e-mail
        ('not (emails[type eq "work"])', True),
        # Constants fold away inside and/or; what is left is the Group's own condition.
        ('userName eq "u" or displayName eq "g"', GROUP_NAME),
        ('displayName eq "g" or userName eq "u"', GROUP_NAME),
        ('userName ne "u" and displayName eq "g"', GROUP_NAME),
        ('userName eq "u" and displayName eq "g"', False),
        ('(userName eq "u" or title pr) or displayName eq "g"', GROUP_NAME),
        ('displayName eq "g" and not (name.givenName pr)', GROUP_NAME),
    ],
)
def test_parse_across_treats_attributes_a_type_lacks_as_unassigned(
    text: str, for_group: Any
) -> None:
    parsed = parse_across(text, [USER, GROUP])
    assert parsed["Group"] == for_group
    assert parsed["User"] == parse(text, USER)


def test_parse_across_for_users_lacking_members() -> None:
    parsed = parse_across('members[value eq "x"] or userName eq "u"', [USER, GROUP])
    assert parsed["User"] == Compare(attr("userName"), "eq", "u")
    assert isinstance(parsed["Group"], ValuePath)


@pytest.mark.parametrize(
    "text",
    [
        'shoeSize eq "9"',  # neither type has it
        "userName gt null",  # refused for Users, so for the search
        "userName xx 1",
        'emails[shoeSize eq "x"]',  # Users check inside the brackets
        'password eq "guess"',
        "userName eq",
    ],
)
def test_parse_across_refuses_what_no_type_accepts(text: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_across(text, [USER, GROUP])


def test_parse_across_counts_absent_conditions_against_the_limits() -> None:
    text = 'userName eq "a" or userName eq "b" or displayName pr'
    assert parse_across(text, [USER, GROUP], max_nodes=5)["Group"] == Present(
        attr("displayName", GROUP)
    )
    with pytest.raises(InvalidFilter, match="limit of 4 expressions"):
        parse_across(text, [GROUP, USER], max_nodes=4)
