"""`lms-scim relay`: The LMS relay: keep each tenant's Moodle or Totara in step."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

import click

from app import runtime
from app.cli.common import echo_json, every_tenant_or_one, for_tenant, progress_bar, reported, table
from app.config import TenantSettings
from app.datetimes import minute
from app.store import lms_targets, outbox, tenancy
from app.store import tenants as tenant_store
from app.store.models import LmsTarget, Tenant

relay_group = click.Group("relay", help="The LMS relay: keep each tenant's LMS in step.")

NO_LMS = (
    "Set LMS_URL and LMS_TOKEN to reach the LMS web service (another tenant than the default "
    "one: `lms-scim tenants set SLUG LMS_URL=…` and `lms-scim tenants set SLUG LMS_TOKEN`)."
)


def not_configured(slug: str) -> str:
    """What `relay status` says of a tenant without an LMS: the relay is off (nothing is
    queued), and how to turn it on."""
    return (
        f"The LMS relay is not configured for tenant {slug!r}: no LMS is set, so its changes "
        "are not queued for one.\n"
        f"To configure it: `lms-scim tenants set {slug} LMS_URL=https://moodle.example.com` and "
        f"`lms-scim tenants set {slug} LMS_TOKEN` (the default tenant may use the LMS_URL and "
        "LMS_TOKEN environment variables instead), or `lms-scim lms add NAME --url URL`; "
        f"then `lms-scim relay sync --all --tenant {slug}` queues everything once (a full "
        "reconciliation) and `lms-scim relay run` delivers it."
    )


def _receivers(tenant: Tenant) -> tuple[int, ...]:
    """The ids of the tenant's targets that receive its changes (none: the relay is off)."""
    return runtime.current().receivers(tenant.id)


Served = tuple[Tenant, LmsTarget, TenantSettings]


def _label(tenant: Tenant, target: LmsTarget) -> str:
    """How a line names a target: the tenant's slug for its `default`, else slug/name."""
    return tenant.slug if target.from_settings else f"{tenant.slug}/{target.name}"


def _served(tenants: Sequence[Tenant], lms: str | None = None) -> list[Served]:
    """The targets (of these tenants; only those called `lms`, if given) that name an LMS, with
    their settings; none at all is an error."""
    from app.relay import worker

    current = runtime.current()
    served = []
    with reported():
        for tenant in tenants:
            with tenancy.use(tenant.id):
                settings = current.tenant_settings(tenant.id)
                for target in lms_targets.all_targets():
                    if lms is not None and target.name != lms:
                        continue
                    effective = lms_targets.settings_of(target, settings, current.secret_box)
                    served.append((tenant, target, effective))
        if lms is not None and not served:
            raise ValueError(f"No LMS target called {lms!r}.")
    served = [entry for entry in served if worker.has_lms(entry[2])]
    if not served:
        raise click.ClickException(NO_LMS)
    return served


def _dispatcher(tenants: Sequence[Tenant], named: bool, **options: Any) -> Any:
    from app.relay import dispatch, worker

    current = runtime.current()
    timeout = current.config.lms_timeout_ms
    batch = options.pop("batch")
    for tenant, target, settings in _served(tenants):  # settings that cannot work stop the start
        try:
            worker.relay_from(settings, timeout)
        except ValueError as exc:
            raise click.ClickException(f"{_label(tenant, target)}: {exc}") from None
    return dispatch.Dispatcher(
        settings_for=current.tenant_settings,
        build=lambda settings: worker.relay_from(settings, timeout, batch),
        only={t.id for t in tenants} if named else None,
        secret_box=current.secret_box,
        **options,
    )


@relay_group.command("run", short_help="Deliver every tenant's changes to its LMS.")
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
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this relay's Prometheus metrics (delivery latency, backlog) on this port.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="…and address.")
def relay_run(
    tenants: list[Tenant],
    named: bool,
    batch: int,
    idle: float,
    workers: int,
    once: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Deliver every tenant's changes to its LMS (or --tenant's only) until SIGTERM. One
    process serves all tenants fairly; run several if you like: they never deliver the same
    change at once."""
    dispatcher = _dispatcher(tenants, named, batch=batch, idle=idle, workers=workers)
    if metrics_port is not None:
        _serve_metrics(metrics_host, metrics_port)
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
    for tenant, target, settings in _served(tenants)[:10]:
        click.echo(f"relay: delivering {_label(tenant, target)} to {settings.lms_url}", err=True)
    dispatcher.run(stop)
    click.echo("relay: stopped", err=True)


def _serve_metrics(host: str, port: int) -> None:
    """`/metrics` of this relay process in a thread: the delivery latency it observes and the
    backlog per LMS target (read at each scrape). No token: bind it to loopback or a private
    network (the default is loopback)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from app import observability

    registry = CollectorRegistry()
    registry.register(observability.RELAY_DELIVERY)
    registry.register(observability.RelayBacklog(runtime.current().config))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc}") from None
    click.echo(f"relay: metrics on http://{host}:{port}/metrics", err=True)


@relay_group.command("test", short_help="Check each LMS target's URL, token and functions.")
@every_tenant_or_one
@click.option("--lms", "lms", metavar="NAME", help="Only the LMS target NAME.")
def relay_test(tenants: list[Tenant], named: bool, lms: str | None) -> None:
    """Check each LMS target's URL and token (the default one's: LMS_URL and LMS_TOKEN), and
    which required functions the token may not call. A token that does not unseal under
    SECRET_KEY or SECRET_KEY_PREVIOUS fails its target's check, saying how to set it again."""
    from app.relay import worker
    from app.relay.courses import functions_for

    served = _served(tenants, lms)
    failed = 0
    for tenant, target, settings in served:
        with reported():
            client = worker.client_from(settings, runtime.current().config.lms_timeout_ms)
        prefix = f"{_label(tenant, target)}: " if len(served) > 1 else ""
        with tenancy.use(tenant.id):  # groups with courses need the course functions too
            also = functions_for(target.id)
        failed += not _check(client, prefix, also)
    if failed:
        raise click.ClickException(f"{failed} LMS site(s) cannot be used as they are")


def _check(client: Any, prefix: str, also: Sequence[str] = ()) -> bool:
    from app.relay.moodle import LmsError

    try:
        info, missing = client.check(also)
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
        if not (_receivers(tenant) or line.backlog or line.dead_total):
            click.echo(f"{prefix}relay not configured (no LMS)")
            continue
        click.echo(
            f"{prefix}backlog: {line.backlog} ({line.retrying} retrying); "
            f"failures: {line.dead_total}"
        )


@relay_group.command("status", short_help="Backlog, failures and the last delivery.")
@every_tenant_or_one
@click.option("--lms", "lms", metavar="NAME", help="Only the LMS target NAME (of --tenant).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--limit", default=20, show_default=True, help="Dead letters to show.")
def relay_status(tenants: list[Tenant], named: bool, lms: str | None, fmt: str, limit: int) -> None:
    """Backlog, failures (dead letters with their reasons) and the last delivery: of one
    tenant in detail (each of its LMS targets), or a line per tenant and target when there are
    several tenants and none is named."""
    if len(tenants) > 1:
        if lms is not None:
            raise click.UsageError("--lms names a target of one tenant: add --tenant")
        _overview(tenants, fmt)
        return
    tenant = tenants[0]
    with tenancy.use(tenant.id), reported():
        targets = [lms_targets.by_name(lms)] if lms else lms_targets.all_targets()
        settings = runtime.current().tenant_settings()
        found = [
            (t, _site(t, settings), outbox.relay_status(limit=limit, target=t.id)) for t in targets
        ]
    receiving = _receivers(tenant)
    if not receiving and not any(status.backlog or status.dead_total for *_, status in found):
        if fmt == "json":
            echo_json(
                {"tenant": tenant.slug, "configured": False, "help": not_configured(tenant.slug)}
            )
        else:
            click.echo(not_configured(tenant.slug))
        return
    if fmt == "json":
        shown = [
            {"target": t.name, "lms": site, "configured": t.id in receiving, **status.as_json()}
            for t, site, status in found
        ]
        if len(shown) == 1:
            echo_json({"tenant": tenant.slug, **shown[0]})
        else:
            echo_json({"tenant": tenant.slug, "targets": shown})
        return
    for number, (target, site, status) in enumerate(found):
        if len(found) > 1:
            click.echo(("\n" if number else "") + f"== LMS target {target.name}")
        _status_text(site, status, target.id in receiving)


def _site(target: LmsTarget, settings: TenantSettings) -> str | None:
    """The target's URL (`default`: the tenant's LMS_URL), without opening its token."""
    return settings.lms_url if target.from_settings else target.url


def _status_text(lms: str | None, found: outbox.RelayStatus, receives: bool = True) -> None:
    click.echo(f"LMS:           {lms or 'not configured (LMS_URL, LMS_TOKEN)'}")
    if not receives and not found.backlog:
        click.echo("backlog:       none (nothing is queued for a target without an LMS)")
    else:
        oldest = f", oldest from {minute(found.oldest)} UTC" if found.oldest else ""
        click.echo(f"backlog:       {found.backlog} change(s) waiting{oldest}")
    click.echo(
        f"retrying:      {found.retrying}" + (f" ({found.last_error})" if found.last_error else "")
    )
    click.echo(f"failures:      {found.dead_total} dead letter(s)")
    last = f"{minute(found.last_delivery)} UTC" if found.last_delivery else "never"
    click.echo(f"last delivery: {last}")
    if receives and found.last_delivery is None and not (found.backlog or found.dead_total):
        click.echo("hint:          nothing was ever delivered; `lms-scim relay sync --all` queues")
        click.echo("               every user, group and membership once (a full reconciliation)")
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
    """A line per tenant and LMS target (`slug` for a tenant's default, `slug/name` else)."""
    current = runtime.current()
    by_id = {t.id: t for t in tenants}
    lines = outbox.relay_overview([t.id for t in tenants], by_target=True)
    with tenancy.everywhere():
        targets = {t.id: t for t in LmsTarget.select().where(LmsTarget.tenant_id.in_(list(by_id)))}
    rows = []
    for line in lines:
        tenant, target = by_id[line.tenant_id], targets[line.target_id]
        site = _site(target, current.tenant_settings(tenant.id))
        rows.append((tenant, target, site, line))
    if fmt == "json":
        echo_json({"tenants": [_overview_json(t, g, site, line) for t, g, site, line in rows]})
        return
    table(
        (
            (
                _label(tenant, target),
                site or "not configured",
                # A target without an LMS has nothing queued: "-", not "0 waiting".
                line.backlog if site or line.backlog else None,
                line.retrying,
                line.dead_total,
                minute(line.oldest) if line.oldest else None,
                minute(line.last_delivery) if line.last_delivery else "never",
            )
            for tenant, target, site, line in rows
        ),
        ("tenant", "LMS", "backlog", "retrying", "failures", "oldest (UTC)", "last delivery"),
    )


def _overview_json(
    tenant: Tenant, target: LmsTarget, lms: str | None, line: outbox.TenantRelay
) -> dict[str, Any]:
    return {
        "tenant": tenant.slug,
        "target": target.name,
        "lms": lms,
        "backlog": line.backlog,
        "retrying": line.retrying,
        "failures": line.dead_total,
        "oldestWaiting": outbox.iso(line.oldest),
        "lastDelivery": outbox.iso(line.last_delivery),
    }


@relay_group.command("retry", short_help="Requeue dead letters (IDS, or --all).")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@click.option("--lms", "lms", metavar="NAME", help="Only the LMS target NAME's dead letters.")
@for_tenant
def relay_retry(ids: tuple[int, ...], everything: bool, lms: str | None) -> None:
    """Put dead letters (IDS, or --all; of every LMS target of the tenant, or of --lms's)
    back in the queue, e.g. after fixing the cause."""
    if not ids and not everything:
        raise click.UsageError("name dead letters by id, or use --all")
    with reported():
        target = lms_targets.by_name(lms).id if lms is not None else None
    count = outbox.requeue(None if everything else ids, target=target)
    click.echo(f"requeued {count} change(s)")


_KINDS = {outbox.USER: "users", outbox.GROUP: "groups", outbox.MEMBER: "memberships"}


@relay_group.command("sync", short_help="Queue everything once: a full reconciliation.")
@click.option(
    "--all", "everything", is_flag=True, help="Every user, group and membership (required)."
)
@click.option("--lms", "lms", metavar="NAME", help="Only the LMS target NAME.")
@click.option(
    "--batch", type=click.IntRange(1, 10_000), default=1000, show_default=True,
    help="Rows queued per transaction.",
)  # fmt: skip
@for_tenant
def relay_sync(everything: bool, lms: str | None, batch: int) -> None:
    """A full reconciliation: queue every user, group and membership (with its enrolments) of
    the tenant for each of its LMS targets (or --lms's), in batches. Run it once an LMS is
    configured (the relay is opt-in: nothing was queued before); `relay run` then delivers.
    Running it again queues only what is not waiting already."""
    if not everything:
        raise click.UsageError("name what to reconcile: --all (every user, group, membership)")
    tenant = tenancy.owner()
    slug = tenant_store.stored(tenant).slug
    receiving = runtime.current().receivers(tenant)
    with reported():
        targets = [lms_targets.by_name(lms)] if lms else lms_targets.all_targets()
        targets = [t for t in targets if t.id in receiving]
        if not targets:
            raise ValueError(
                f"LMS target {lms!r} has no LMS (set LMS_URL first)"
                if lms
                else not_configured(slug)
            )
        for target in targets:
            _sync_one(target, batch)


def _sync_one(target: LmsTarget, batch: int) -> None:
    """`sync_all` of one target, with a progress bar while a person watches."""
    seen = dict.fromkeys(_KINDS, 0)
    queued = dict.fromkeys(_KINDS, 0)
    with progress_bar(outbox.sync_size, f"queueing for {target.name}") as advance:
        for step in outbox.sync_all(target.id, batch):
            seen[step.kind] += step.seen
            queued[step.kind] += step.queued
            advance(step.seen)
    total, looked = sum(queued.values()), sum(seen.values())
    parts = ", ".join(f"{seen[k]} {name}" for k, name in _KINDS.items())
    click.echo(
        f"{target.name}: queued {total} change(s) for a full reconciliation ({parts}); "
        f"{looked - total} were waiting already"
    )
