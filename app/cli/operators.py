"""`lms-scim operators`: People who may sign in to /admin."""

from __future__ import annotations

from typing import Any

import click

from app import operator_signin, runtime
from app.cli import common
from app.cli.common import emit, format_option, reported
from app.store import operators as operator_store
from app.store import tenants as tenant_store

operators_group = click.Group("operators", help="People who may sign in to /admin.")


MIN_PASSWORD_LENGTH = 12


def _long_enough(_ctx: Any, _param: Any, password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(f"use at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _password_option() -> Any:
    return click.option(
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        callback=_long_enough,
        help=f"Prompted for when omitted (input hidden); {MIN_PASSWORD_LENGTH}+ characters.",
    )


def _new_name(_ctx: Any, _param: Any, name: str) -> str:
    """Refuse a name that is taken before the password prompt (the store's unique index still
    decides a race)."""
    if operator_store.find(name) is not None:
        raise click.ClickException(f"An operator named {name!r} exists.")
    return name


def _tenant(_ctx: Any, _param: Any, slug: str | None) -> str | None:
    """An unknown tenant is refused before the password prompt too."""
    if slug is not None:
        with reported():
            tenant_store.by_slug(slug)
    return slug


@operators_group.command("create")
@click.argument("name", callback=_new_name)
@click.option(
    "--tenant",
    "tenant_slug",
    metavar="SLUG",
    callback=_tenant,
    help="Bind the operator to this tenant: they see it only. Without it they see every tenant.",
)
@_password_option()
def operators_create(name: str, password: str, tenant_slug: str | None) -> None:
    """An operator who may sign in to /admin (read-only status pages)."""
    with reported():
        tenant = tenant_store.by_slug(tenant_slug) if tenant_slug is not None else None
        operator_signin.create_operator(
            name, password, runtime.current().hasher, tenant.id if tenant else None
        )
    scope = f"tenant {tenant.slug!r} only" if tenant else "every tenant"
    click.echo(f"Created operator {name!r}; they see {scope}.")


@operators_group.command("password")
@click.argument("name", callback=common.known_operator)
@_password_option()
def operators_password(name: str, password: str) -> None:
    """Set a new password for NAME; every /admin session of NAME ends."""
    with reported():
        operator_signin.set_operator_password(name, password, runtime.current().hasher)
    click.echo(f"Password of {name!r} changed; their sessions have ended.")


@operators_group.command("disable", short_help="NAME may no longer sign in; their sessions end.")
@click.argument("name", callback=common.known_operator)
def operators_disable(name: str) -> None:
    """NAME may no longer sign in; their sessions end (`enable` lets them back)."""
    with reported():
        operator_store.set_disabled(name, True)
    click.echo(f"Disabled operator {name!r}; their sessions have ended.")


@operators_group.command("enable")
@click.argument("name", callback=common.known_operator)
def operators_enable(name: str) -> None:
    """NAME may sign in again (with the same password)."""
    with reported():
        operator_store.set_disabled(name, False)
    click.echo(f"Enabled operator {name!r}.")


@operators_group.command("delete", short_help="Delete NAME; the audit trail keeps their events.")
@click.argument("name", callback=common.known_operator)
@click.confirmation_option(
    "--yes", prompt="Delete this operator? The audit trail keeps what they did."
)
def operators_delete(name: str) -> None:
    """Delete NAME and end their sessions; the audit trail keeps their events."""
    with reported():
        operator_store.delete(name)
    click.echo(f"Deleted operator {name!r}.")


@operators_group.command("list")
@format_option()
def operators_list(fmt: str) -> None:
    """Operators: tenant bound to, last sign-in, disabled or active."""
    slugs = {t.id: t.slug for t in tenant_store.all_tenants()}
    rows = (
        {
            "name": o.name,
            # JSON and CSV: null / empty for an operator of every tenant.
            "tenant": slugs.get(o.tenant_id, "?") if o.tenant_id is not None else None,
            "created": o.created,
            "lastSignIn": o.last_sign_in_at,
            "state": "disabled" if o.disabled_at else "active",
            "disabledAt": o.disabled_at,
        }
        for o in operator_store.all_operators()
    )
    if fmt == "table":
        rows = ({**r, "tenant": r["tenant"] or "(every tenant)"} for r in rows)
    emit(
        rows,
        ("name", "tenant", "created", "lastSignIn", "state", "disabledAt"),
        fmt,
        headers=("name", "tenant", "created (UTC)", "last sign-in", "state", "disabled"),
    )
