"""The names operators give things (API tokens, operator accounts) follow the same rule as the
names IdPs send: no blank, edge white space or invisible control (`scim_schemas.identity`)."""

from __future__ import annotations

from app.errors import InvalidValue
from scim_schemas.identity import name_problem


def require_name(what: str, name: str) -> None:
    """400 invalidValue saying why `name` cannot name a `what`."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidValue(f"{what} {problem}: {name!r}.")
