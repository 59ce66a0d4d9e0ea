"""`lms-scim tenants`: the organisations this deployment serves, their settings and state."""

from __future__ import annotations

import sys
from typing import Any

import click

from app import runtime
from app.cli.common import echo_json, emit, format_option, reported, table
from app.config import TENANT_VARIABLES, TenantSettings, tenant_field
from app.secretbox import masked
from app.store import tenancy
from app.store import tenants as tenant_store
from app.store.models import Tenant

tenants_group = click.Group(
    "tenants",
    help="Organisations (tenants): create, list, show, set, disable, enable, delete.",
    short_help="Organisations (tenants) and their settings.",
)

SECRET = "LMS_TOKEN"  # noqa: S105 - the variable's name, not a value


@tenants_group.command("create", short_help="Create a tenant SLUG.")
@click.argument("slug")
@click.option("--name", required=True, help="The organisation's display name.")
def tenants_create(slug: str, name: str) -> None:
    """A new tenant SLUG (lower-case letters, digits, hyphens); give it a token with
    `lms-scim tokens create NAME --tenant SLUG`."""
    with reported():
        tenant = tenant_store.create(slug, name)
    click.echo(f"Created tenant {tenant.slug!r} ({tenant.name}).")


# camelCase JSON keys and CSV headers, as every other listing writes them.
_LIST_COLUMNS = (
    "slug",
    "name",
    "state",
    "lastActivity",
    "users",
    "activeUsers",
    "groups",
    "tokens",
)


@tenants_group.command("list", short_help="Every tenant with its counts and last activity.")
@format_option()
def tenants_list(fmt: str) -> None:
    """Every tenant with its users, active users, groups, usable tokens and the time of its
    latest audit event."""
    rows = (
        {
            "slug": s.slug,
            "name": s.name,
            "state": s.state,
            "lastActivity": s.last_activity,
            "users": s.users,
            "activeUsers": s.active_users,
            "groups": s.groups,
            "tokens": s.tokens,
        }
        for s in tenant_store.summaries()
    )
    emit(
        rows,
        _LIST_COLUMNS,
        fmt,
        headers=("slug", "name", "state", "last activity", "users", "active", "groups", "tokens"),
    )


def _text(value: Any) -> str | None:
    """A setting's value as it would be written in the environment."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(f"{name}={number}" for name, number in value)
    return str(value)


@tenants_group.command("show", short_help="A tenant's state and settings, with their source.")
@click.argument("slug")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def tenants_show(slug: str, fmt: str) -> None:
    """A tenant's state and settings, each with its source: `tenant` (set with `tenants set`)
    or `default` (the environment's). The LMS token is masked."""
    with reported():
        tenant = tenant_store.by_slug(slug)
        state = runtime.current().tenant(tenant.id)
    rows = []
    for variable in TENANT_VARIABLES:
        value = state.settings.value(variable)
        shown = masked(value) if variable == SECRET else _text(value)
        rows.append((variable, shown, "tenant" if variable in state.settings.own else "default"))
    if fmt == "json":
        echo_json(
            {
                "slug": tenant.slug,
                "name": tenant.name,
                "state": "disabled" if state.disabled else "active",
                "settings": {v: {"value": s, "source": src} for v, s, src in rows},
            }
        )
        return
    click.echo(f"{tenant.slug} ({tenant.name}): {'disabled' if state.disabled else 'active'}")
    table(rows, ("setting", "value", "source"))


def _read_secret() -> str:
    """The LMS token from a hidden prompt at a terminal, else the first line of stdin (never
    from argv, where `ps` and shell history would show it)."""
    if sys.stdin.isatty():
        return click.prompt("LMS token", hide_input=True)
    return sys.stdin.readline().strip()


def _changes(assignments: tuple[str, ...]) -> dict[str, str | None]:
    """`KEY=VALUE` (set), `KEY=` (reset to the default) and a bare `LMS_TOKEN` (read apart)."""
    changes: dict[str, str | None] = {}
    for item in assignments:
        variable, has_value, value = item.partition("=")
        variable = variable.strip().upper()
        tenant_field(variable)  # ValueError for a name that is not a per-tenant setting
        if variable == SECRET and value:
            raise ValueError(
                f"{SECRET} is never taken from the command line; "
                f"give `{SECRET}` alone and type it or pipe it in."
            )
        if variable == SECRET and not has_value:
            value = _read_secret()
            if not value:
                raise ValueError(f"No {SECRET} given; to remove it, write `{SECRET}=`.")
        elif not has_value:
            raise ValueError(f"{item!r}: write KEY=VALUE, or KEY= to go back to the default.")
        changes[variable] = value or None
    return changes


def _save(tenant: Tenant, changes: dict[str, str | None]) -> None:
    """Check the tenant's settings as they would be, seal the LMS token, store them."""
    current = runtime.current()
    merged = {k: v for k, v in tenant_store.stored(tenant.id).settings.items() if k != SECRET}
    merged.update({k: v for k, v in changes.items() if k != SECRET and v is not None})
    for variable in (k for k, v in changes.items() if v is None):
        merged.pop(variable, None)
    if changes.get(SECRET):
        merged[SECRET] = changes[SECRET]
    # ValueError naming the variable
    settings = TenantSettings.overlay(
        current.config, merged, default_tenant=tenant.id == tenancy.DEFAULT_TENANT
    )
    if changes.get(runtime.ENTRA):  # one tenant per Entra directory
        current.check_entra_directory(tenant.id, changes[runtime.ENTRA])
    if changes.get(SECRET):
        changes[SECRET] = current.secret_box.seal(
            changes[SECRET], runtime.lms_token_context(tenant.id)
        )
    roles = [name for name, _ in settings.lms_role_ids] if "LMS_ROLE_IDS" in changes else None
    tenant_store.save_settings(tenant, changes, role_names=roles)
    current.tenants.clear()
    if any(variable.startswith("ENTRA_") for variable in changes):
        current.entra_directories.clear()  # and the tokens verified under the old directory
        current.tokens.clear()


@tenants_group.command("set", short_help="Set some of a tenant's settings (KEY=VALUE).")
@click.argument("slug")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE…")
def tenants_set(slug: str, assignments: tuple[str, ...]) -> None:
    """Set some of a tenant's settings, by their environment names; `KEY=` goes back to the
    default. `LMS_TOKEN` alone reads the token from a hidden prompt or stdin."""
    with reported():
        tenant = tenant_store.by_slug(slug)
        changes = _changes(assignments)
        _save(tenant, changes)
    for variable, value in changes.items():
        if value is None:
            click.echo(f"{slug}: {variable} back to the default.")
        elif variable == SECRET:
            click.echo(f"{slug}: {variable} set (sealed; shown masked by `tenants show`).")
        else:
            click.echo(f"{slug}: {variable} = {value}")
    if changes.get("LMS_URL"):
        # The relay is opt-in: nothing was queued while the tenant had no LMS.
        click.echo(
            f"{slug}: the relay starts from a full reconciliation: run "
            f"`lms-scim relay sync --all --tenant {slug}`, then `lms-scim relay run`."
        )


def _set_disabled(slug: str, disabled: bool) -> None:
    with reported():
        tenant = tenant_store.by_slug(slug)
        changed = tenant_store.set_disabled(tenant, disabled)
    runtime.current().tenants.clear()
    word = "disabled" if disabled else "enabled"
    click.echo(f"Tenant {slug!r} {word}." if changed else f"Tenant {slug!r} was {word} already.")


@tenants_group.command("disable", short_help="Refuse the tenant's tokens until `tenants enable`.")
@click.argument("slug")
def tenants_disable(slug: str) -> None:
    """Refuse the tenant's tokens (403) until `tenants enable`; nothing is deleted."""
    with reported():
        tenant = tenant_store.by_slug(slug)
    if tenant.id == tenancy.DEFAULT_TENANT:
        click.echo(
            "Warning: this is the default tenant; its IdPs (and a single-organisation "
            "install's) are refused until `tenants enable`.",
            err=True,
        )
    _set_disabled(slug, True)


@tenants_group.command("enable")
@click.argument("slug")
def tenants_enable(slug: str) -> None:
    """Accept the tenant's tokens again."""
    _set_disabled(slug, False)


@tenants_group.command("delete", short_help="Delete a tenant (--purge: with its data).")
@click.argument("slug")
@click.option("--purge", is_flag=True, help="Delete its users, groups and everything else too.")
def tenants_delete(slug: str, purge: bool) -> None:
    """Delete a tenant with its tokens and audit trail; refused while it has users or groups
    unless --purge, which asks for the slug again. The default tenant stays."""
    with reported():
        tenant = tenant_store.by_slug(slug)
    if purge:
        typed = click.prompt(f"This deletes every row of tenant {slug!r}. Type its slug to confirm")
        if typed.strip() != slug:
            raise click.ClickException("The slug typed does not match; nothing was deleted.")
    with reported():
        removed = tenant_store.delete(tenant, purge=purge)
    current = runtime.current()
    current.tenants.clear()
    current.tokens.clear()
    detail = ", ".join(f"{n} {table_name}" for table_name, n in sorted(removed.items()))
    click.echo(f"Deleted tenant {slug!r}" + (f" ({detail})." if detail else "."))
