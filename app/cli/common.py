"""What every `lms-scim` command shares: the app's settings, durations, one-line errors, the
resolvers that turn a reference into a user, group, token or operator (or a one-line error), the
one formatter of listings (`--format table|json|csv`) and the progress bar."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import click

from app import observability, runtime
from app.config import Config
from app.datetimes import minute
from app.errors import InvalidValue, NotFound, ScimError
from app.secretbox import SecretUnreadable
from app.store import enrolments as enrolment_store
from app.store import operators as operator_store
from app.store import status, tenancy
from app.store import tenants as tenant_store
from app.store import tokens as token_store
from app.store.models import ApiToken, Group, Operator, Tenant, User

T = TypeVar("T")

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
        with tenancy.use(tenant.id), observability.tenant_logged(tenant.slug):
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


def reaches_servers() -> str:
    """When servers already running learn of a revocation made here: their caches re-check
    once per TOKEN_CACHE_SECONDS, so a request in that window may still be served (issue 19:
    a token revoked a moment ago and still answered looked like a revocation that failed)."""
    seconds = settings().token_cache_seconds
    if seconds <= 0:
        return "Servers already running refuse it at once (TOKEN_CACHE_SECONDS=0)."
    return f"Servers already running refuse it within TOKEN_CACHE_SECONDS ({seconds:g} s)."


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """Aligned columns under a header row (for small results; streams go out row by row)."""
    rows = [[cell(v, "table") for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2, ensure_ascii=False))


# -- references: one resolver per kind, used by every command --------------------------------
#
# An unknown or ambiguous reference is a one-line error and exit 1, never an empty result or a
# silent pick of one of several.


def user(ref: str) -> User:
    """The user whose id, userName, externalId or e-mail is `ref` (`status.find_user`)."""
    with reported():
        return status.find_user(ref)


def user_or_gone(ref: str) -> str:
    """A user's id; an unknown reference is accepted as the id of a deleted user only when the
    audit trail knows that id (so a typo is an error, not an empty history)."""
    with reported():
        try:
            return status.find_user(ref).id
        except NotFound:
            if status.audited_user(ref):
                return ref
            raise


def group(ref: str) -> Group:
    """The group whose id or displayName (case-insensitive) is `ref`; two groups with that
    name are an error that asks for the id (as `enrolments add` does)."""
    with reported():
        return enrolment_store.find_group(ref)


def tokens_named(name: str) -> list[ApiToken]:
    """Every token of the tenant called `name` (revoked ones too: a name may be reused)."""
    found = token_store.named(name)
    if not found:
        raise click.ClickException(f"No token named {name!r}.")
    return found


def operator(name: str) -> Operator:
    """The operator called `name`."""
    found = operator_store.find(name)
    if found is None:
        raise click.ClickException(f"No operator named {name!r}.")
    return found


def known_operator(_ctx: Any, _param: Any, name: str) -> str:
    """A click callback on an operator NAME: refuse an unknown one before any password prompt."""
    operator(name)
    return name


# -- one formatter for every listing -----------------------------------------------------------

FORMATS = ("table", "json", "csv")


def format_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--format table|json|csv`, `table` by default: the option of every listing."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table: aligned columns with a header row; json; csv: a header row, then rows.",
    )


def iso(moment: dt.datetime | None) -> str | None:
    """A stored (naive UTC) timestamp as ISO 8601 UTC with `Z`, to the second."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds") + "Z"


def plain(value: Any) -> Any:
    """A value as JSON shows it: timestamps ISO 8601 with `Z`, dates ISO, booleans true/false."""
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def cell(value: Any, fmt: str) -> str:
    """A value as a table or CSV cell: booleans `true`/`false` (as in JSON); timestamps to the
    minute in tables (columns say UTC), ISO 8601 with `Z` in CSV; nothing is `-` in a table and
    empty in CSV."""
    if value is None:
        return "-" if fmt == "table" else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return minute(value) if fmt == "table" else str(iso(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):  # a list in one cell: its items, comma-separated
        return ",".join(cell(item, fmt) for item in value)
    return str(value)


class _Echo:
    """A file-like stdout for `csv`, through `click.echo` (which the CLI runner captures)."""

    def write(self, text: str) -> None:
        click.echo(text, nl=False)


def emit(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    *,
    headers: Sequence[str] | None = None,
    json_lines: bool = False,
    widths: Sequence[int] | None = None,
) -> None:
    """Print a listing. `columns` are the keys of each row, the JSON keys and the CSV header;
    `headers` the table's header row (default: the columns). JSON is one array, or one object
    per line with `json_lines` (streams); a table with `widths` goes out row by row (values
    clipped), else it is measured first."""
    if fmt == "json":
        if json_lines:
            for row in rows:
                click.echo(json.dumps(plain({c: row[c] for c in columns}), ensure_ascii=False))
        else:
            echo_json([plain({c: row[c] for c in columns}) for row in rows])
    elif fmt == "csv":
        writer = csv.writer(_Echo(), lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row[c], "csv") for c in columns])
    elif widths is None:
        table(([row[c] for c in columns] for row in rows), headers or columns)
    else:

        def line(values: Sequence[str]) -> str:
            clipped = (
                v if len(v) <= w else v[: w - 1] + "…" for v, w in zip(values, widths, strict=True)
            )
            return "  ".join(v.ljust(w) for v, w in zip(clipped, widths, strict=True)).rstrip()

        click.echo(line(list(headers or columns)))
        for row in rows:
            click.echo(line([cell(row[c], "table") for c in columns]))


# -- progress ------------------------------------------------------------------------------

# Below this many items a command is over before a bar would help.
PROGRESS_MINIMUM = 1000


def watched(output_on_stdout: bool) -> bool:
    """Whether a person watches the command on a terminal: stderr is one and, for a command
    whose result streams to stdout, stdout is not that terminal (a bar would tear through the
    rows)."""
    return sys.stderr.isatty() and not (output_on_stdout and sys.stdout.isatty())


@contextlib.contextmanager
def progress_bar(
    total: int | Callable[[], int],
    label: str,
    *,
    output_on_stdout: bool = False,
) -> Iterator[Callable[[int], None]]:
    """`advance(n)` for work done in steps: a bar on stderr while a person watches a large job
    (`PROGRESS_MINIMUM` items; `total` may be a function, so nobody counts unless a bar may be
    shown)."""
    if not watched(output_on_stdout):
        yield lambda _n: None
        return
    count = total() if callable(total) else total
    if count < PROGRESS_MINIMUM:
        yield lambda _n: None
        return
    with click.progressbar(length=count, label=label, file=sys.stderr) as bar:
        yield bar.update


def progress(
    items: Iterable[T],
    total: int | Callable[[], int],
    label: str,
    *,
    output_on_stdout: bool = False,
) -> Iterator[T]:
    """`items`, with a progress bar on stderr while a person watches (`progress_bar`)."""
    with progress_bar(total, label, output_on_stdout=output_on_stdout) as advance:
        for item in items:
            yield item
            advance(1)
