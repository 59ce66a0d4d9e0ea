"""`app.auth._expiry`: when a verified JWT leaves the token cache, for every `exp` pyjwt accepts."""

from __future__ import annotations

import datetime as dt

import pytest

from app.auth import _expiry
from app.oauth.access_tokens import LEEWAY_SECONDS

EXP = 1_700_000_000
EXPIRES = dt.datetime.fromtimestamp(EXP + LEEWAY_SECONDS, dt.UTC).replace(tzinfo=None)


@pytest.mark.parametrize("exp", [EXP, EXP + 0.999, float(EXP), str(EXP)])
def test_exp_is_read_as_pyjwt_reads_it(exp: object) -> None:
    assert _expiry({"exp": exp}) == EXPIRES
