"""The identity key and the name rules, as plain functions."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scim_schemas.identity import identity_key, name_problem


@given(st.text())
def test_the_key_is_stable(text: str) -> None:
    key = identity_key(text)
    assert identity_key(key) == key
    assert unicodedata.is_normalized("NFKC", key)


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_an_ascii_key_is_the_lower_case(text: str) -> None:
    assert identity_key(text) == text.lower()


@given(st.text())
def test_case_width_and_normal_form_never_change_the_key(text: str) -> None:
    key = identity_key(text)
    assert identity_key(unicodedata.normalize("NFD", text)) == key
    assert identity_key(unicodedata.normalize("NFKC", text)) == key
    assert identity_key(text.casefold()) == key


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("\u3000", "empty"),  # ideographic space
        ("\u00a0bob", "white space"),  # no-break space
        ("bob\n", "white space"),
        ("b\x7fob", "control character (U+007F)"),
        ("b\u200fob", "bidirectional"),  # right-to-left mark
        ("b\u061cob", "bidirectional"),  # Arabic letter mark
    ],
)
def test_names_that_hide_what_they_are(name: str, problem: str) -> None:
    assert problem in (name_problem(name) or "")


@pytest.mark.parametrize("name", ["alice", "José Núñez", "李小龍", "o'brien@example.com", "a b"])
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None
