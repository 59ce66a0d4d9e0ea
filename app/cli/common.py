"""What every `lms-scim` command shares: the app's settings, durations, one-line errors and
tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import click

from app import runtime
from app.config import Config
from app.errors import InvalidValue, ScimError
from app.secretbox import SecretUnreadable
from app.store import enrolments as enrolment_store
from app.store import status, tenancy
from app.store import tenants as tenant_store
from app.store.models import Tenant

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Duration(click.ParamType):
    """`90d`, `24h`, `30m`, `45s`, `2w` → a timedelta."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(value).lower())
        if not match:
            self.fail(f"{value!r} is not a duration like 90d, 24h, 30m or 45s", param, ctx)
        return dt.timedelta(**{_UNITS[match[2]]: int(match[1])})


DURATION = Duration()

# `tokens rotate` and `clients rotate`: how long the old secret keeps working.
GRACE_OPTION = click.option(
    "--grace",
    type=DURATION,
    default="24h",
    show_default=True,
    help="How long the old secret keeps working, so the IdP can be switched without downtime.",
)


def _tenant_named(slug: str | None) -> Tenant:
    if slug is not None:
        return tenant_store.by_slug(slug)
    found = tenant_store.all_tenants()
    if len(found) == 1:
        return found[0]
    slugs = ", ".join(t.slug for t in found)
    raise InvalidValue(f"This deployment serves several tenants; name one with --tenant ({slugs}).")


def for_tenant(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--tenant SLUG`: the command reads and changes that tenant's data only. Without it, the
    command works for the only tenant there is, and refuses (listing them) when there are more."""

    @click.option("--tenant", "tenant_slug", metavar="SLUG", help="The tenant to work for.")
    @functools.wraps(command)
    def run(*args: Any, tenant_slug: str | None = None, **kwargs: Any) -> Any:
        context = click.get_current_context(silent=True)
        if context is not None and context.invoked_subcommand:  # a group's own subcommand
            return command(*args, **kwargs)
        with reported():
            tenant = _tenant_named(tenant_slug)
        with tenancy.use(tenant.id):
            return command(*args, **kwargs)

    return run


def every_tenant_or_one(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--tenant SLUG` on a command that serves every tenant without it (the relay): the
    command receives `tenants`, the named one or all of them, in the order they were made."""

    @click.option("--tenant", "tenant_slug", metavar="SLUG", help="Only this tenant.")
    @functools.wraps(command)
    def run(*args: Any, tenant_slug: str | None = None, **kwargs: Any) -> Any:
        with reported():
            chosen = (
                [tenant_store.by_slug(tenant_slug)] if tenant_slug else tenant_store.all_tenants()
            )
        return command(*args, tenants=chosen, named=tenant_slug is not None, **kwargs)

    return run


def settings() -> Config:
    """The settings of the app this command runs in."""
    return runtime.current().config


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """A store refusal (not found, already exists, invalid) becomes a one-line CLI error."""
    try:
        yield
    except (
        ScimError,
        status.Ambiguous,
        enrolment_store.AmbiguousGroup,
        ValueError,
        SecretUnreadable,
    ) as exc:
        raise click.ClickException(exc.detail if isinstance(exc, ScimError) else str(exc)) from None


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """Aligned columns (for small results; streams go out row by row)."""
    rows = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))
