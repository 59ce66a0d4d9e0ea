"""`lms-scim relay`: The LMS relay: keep each tenant's Moodle or Totara in step."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

import click

from app import runtime
from app.cli.common import echo_json, every_tenant_or_one, for_tenant, reported, table
from app.config import TenantSettings
from app.datetimes import minute
from app.store import outbox, tenancy
from app.store.models import Tenant

relay_group = click.Group("relay", help="The LMS relay: keep each tenant's LMS in step.")

NO_LMS = (
    "Set LMS_URL and LMS_TOKEN to reach the LMS web service (another tenant than the default "
    "one: `lms-scim tenants set SLUG LMS_URL=…` and `lms-scim tenants set SLUG LMS_TOKEN`)."
)


def _with_lms(tenants: Sequence[Tenant]) -> list[tuple[Tenant, TenantSettings]]:
    """The tenants that name an LMS, with their settings; none at all is an error."""
    from app.relay import worker

    current = runtime.current()
    with reported():  # a sealed LMS token that does not open under this SECRET_KEY
        served = [(t, current.tenant_settings(t.id)) for t in tenants]
    served = [(t, s) for t, s in served if worker.has_lms(s)]
    if not served:
        raise click.ClickException(NO_LMS)
    return served


def _dispatcher(tenants: Sequence[Tenant], named: bool, **options: Any) -> Any:
    from app.relay import dispatch, worker

    current = runtime.current()
    timeout = current.config.lms_timeout_ms
    batch = options.pop("batch")
    for tenant, settings in _with_lms(tenants):  # settings that cannot work stop the start
        try:
            worker.relay_from(settings, timeout)
        except ValueError as exc:
            raise click.ClickException(f"tenant {tenant.slug}: {exc}") from None
    return dispatch.Dispatcher(
        settings_for=current.tenant_settings,
        build=lambda settings: worker.relay_from(settings, timeout, batch),
        only={t.id for t in tenants} if named else None,
        **options,
    )


@relay_group.command("run")
@every_tenant_or_one
@click.option("--batch", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--idle", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Tenants delivered at once (a stalled LMS holds one).",
)
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def relay_run(
    tenants: list[Tenant], named: bool, batch: int, idle: float, workers: int, once: bool
) -> None:
    """Deliver every tenant's changes to its LMS (or --tenant's only) until SIGTERM. One
    process serves all tenants fairly; run several if you like: they never deliver the same
    change at once."""
    dispatcher = _dispatcher(tenants, named, batch=batch, idle=idle, workers=workers)
    stop = threading.Event()
    if once:
        dispatcher.run_due(stop)
        _summary(tenants)
        return

    def _stop(signum: int, _frame: Any) -> None:
        click.echo(f"relay: {signal.Signals(signum).name}, finishing the change in hand", err=True)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    for tenant, settings in _with_lms(tenants)[:10]:
        click.echo(f"relay: delivering {tenant.slug} to {settings.lms_url}", err=True)
    dispatcher.run(stop)
    click.echo("relay: stopped", err=True)


@relay_group.command("test")
@every_tenant_or_one
def relay_test(tenants: list[Tenant], named: bool) -> None:
    """Check each tenant's LMS_URL and LMS_TOKEN, and which required functions the token may
    not call."""
    from app.relay import worker

    served = _with_lms(tenants)
    failed = 0
    for tenant, settings in served:
        with reported():
            client = worker.client_from(settings, runtime.current().config.lms_timeout_ms)
        prefix = f"{tenant.slug}: " if len(served) > 1 else ""
        failed += not _check(client, prefix)
    if failed:
        raise click.ClickException(f"{failed} LMS site(s) cannot be used as they are")


def _check(client: Any, prefix: str) -> bool:
    from app.relay.moodle import LmsError

    try:
        info, missing = client.check()
    except LmsError as exc:
        click.echo(f"{prefix}cannot use the LMS web service: {exc}", err=True)
        return False
    click.echo(
        f"{prefix}connected to {info.get('sitename', '?')} ({info.get('release', '?')}) "
        f"as {info.get('username', '?')}"
    )
    if missing:
        click.echo(f"{prefix}the token may not call:", err=True)
        for name in missing:
            click.echo(f"  {name}", err=True)
        click.echo(
            f"{prefix}{len(missing)} required function(s) missing from the web service", err=True
        )
        return False
    click.echo(f"{prefix}every required function is allowed")
    return True


def _summary(tenants: Sequence[Tenant]) -> None:
    for line, tenant in zip(outbox.relay_overview([t.id for t in tenants]), tenants, strict=True):
        prefix = f"{tenant.slug}: " if len(tenants) > 1 else ""
        click.echo(
            f"{prefix}backlog: {line.backlog} ({line.retrying} retrying); "
            f"failures: {line.dead_total}"
        )


@relay_group.command("status")
@every_tenant_or_one
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--limit", default=20, show_default=True, help="Dead letters to show.")
def relay_status(tenants: list[Tenant], named: bool, fmt: str, limit: int) -> None:
    """Backlog, failures (dead letters with their reasons) and the last delivery: of one
    tenant in detail, or a line per tenant when there are several and none is named."""
    if len(tenants) > 1:
        _overview(tenants, fmt)
        return
    with tenancy.use(tenants[0].id):
        found = outbox.relay_status(limit=limit)
        lms = runtime.current().tenant_settings().lms_url
    if fmt == "json":
        echo_json({"tenant": tenants[0].slug, "lms": lms, **found.as_json()})
        return
    click.echo(f"LMS:           {lms or 'not configured (LMS_URL, LMS_TOKEN)'}")
    oldest = f", oldest from {minute(found.oldest)} UTC" if found.oldest else ""
    click.echo(f"backlog:       {found.backlog} change(s) waiting{oldest}")
    click.echo(
        f"retrying:      {found.retrying}" + (f" ({found.last_error})" if found.last_error else "")
    )
    click.echo(f"failures:      {found.dead_total} dead letter(s)")
    last = f"{minute(found.last_delivery)} UTC" if found.last_delivery else "never"
    click.echo(f"last delivery: {last}")
    if found.dead:
        click.echo("\ndead letters (newest first; `lms-scim relay retry` requeues them):")
        table(
            (
                (r.id, minute(r.created), r.kind, r.user_id or r.group_id, r.attempts, r.last_error)
                for r in found.dead
            ),
            ("id", "changed (UTC)", "kind", "resource", "attempts", "reason"),
        )


def _overview(tenants: Sequence[Tenant], fmt: str) -> None:
    current = runtime.current()
    lines = outbox.relay_overview([t.id for t in tenants])
    rows = [
        (t.slug, current.tenant_settings(t.id).lms_url, line)
        for t, line in zip(tenants, lines, strict=True)
    ]
    if fmt == "json":
        echo_json({"tenants": [_overview_json(slug, lms, line) for slug, lms, line in rows]})
        return
    table(
        (
            (
                slug,
                lms or "not configured",
                line.backlog,
                line.retrying,
                line.dead_total,
                minute(line.oldest) if line.oldest else None,
                minute(line.last_delivery) if line.last_delivery else "never",
            )
            for slug, lms, line in rows
        ),
        ("tenant", "LMS", "backlog", "retrying", "failures", "oldest (UTC)", "last delivery"),
    )


def _overview_json(slug: str, lms: str | None, line: outbox.TenantRelay) -> dict[str, Any]:
    return {
        "tenant": slug,
        "lms": lms,
        "backlog": line.backlog,
        "retrying": line.retrying,
        "failures": line.dead_total,
        "oldestWaiting": outbox.iso(line.oldest),
        "lastDelivery": outbox.iso(line.last_delivery),
    }


@relay_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@for_tenant
def relay_retry(ids: tuple[int, ...], everything: bool) -> None:
    """Put dead letters (IDS, or --all) back in the queue, e.g. after fixing the cause."""
    if not ids and not everything:
        raise click.UsageError("name dead letters by id, or use --all")
    count = outbox.requeue(None if everything else ids)
    click.echo(f"requeued {count} change(s)")
