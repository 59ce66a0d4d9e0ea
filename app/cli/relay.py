"""`lms-scim relay`: The LMS relay: keep Moodle or Totara in step."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from app import runtime
from app.cli.common import echo_json, reported, table
from app.datetimes import minute
from app.store import outbox, tenancy

relay_group = click.Group("relay", help="The LMS relay: keep Moodle or Totara in step.")


def _relay() -> Any:
    from app.relay import worker

    # The relay serves the default tenant for now (its settings: the environment's, overlaid
    # with what `tenants set default …` stored).
    current = runtime.current()
    with reported():
        tenant = current.tenant_settings(tenancy.DEFAULT_TENANT)
        client = worker.client_from(tenant, current.config.lms_timeout_ms)
        return worker.Relay(client, worker.Settings.from_config(tenant))


@relay_group.command("run")
@click.option("--batch", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--idle", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def relay_run(batch: int, idle: float, once: bool) -> None:
    """Deliver the outbox to the LMS until SIGTERM (a long-running worker; run several if
    you like: they never deliver the same change at once)."""
    relay = _relay()
    relay.batch = batch
    stop = threading.Event()
    if once:
        while relay.run_once(stop) and not relay.failures:
            pass
        _relay_summary()
        return

    def _stop(signum: int, _frame: Any) -> None:
        click.echo(f"relay: {signal.Signals(signum).name}, finishing the change in hand", err=True)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    click.echo(f"relay: delivering to {relay.client.url}", err=True)
    relay.run(stop, idle)
    click.echo("relay: stopped", err=True)


@relay_group.command("test")
def relay_test() -> None:
    """Check LMS_URL and LMS_TOKEN, and which required functions the token may not call."""
    from app.relay.moodle import LmsError

    relay = _relay()
    try:
        info, missing = relay.client.check()
    except LmsError as exc:
        raise click.ClickException(f"cannot use the LMS web service: {exc}") from None
    click.echo(
        f"connected to {info.get('sitename', '?')} ({info.get('release', '?')}) "
        f"as {info.get('username', '?')}"
    )
    if missing:
        click.echo("the token may not call:", err=True)
        for name in missing:
            click.echo(f"  {name}", err=True)
        raise click.ClickException(
            f"{len(missing)} required function(s) missing from the web service"
        )
    click.echo("every required function is allowed")


def _relay_summary() -> None:
    found = outbox.relay_status(limit=0)
    click.echo(
        f"backlog: {found.backlog} ({found.retrying} retrying); failures: {found.dead_total}"
    )


@relay_group.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--limit", default=20, show_default=True, help="Dead letters to show.")
def relay_status(fmt: str, limit: int) -> None:
    """Backlog, failures (dead letters with their reasons) and the last delivery."""
    found = outbox.relay_status(limit=limit)
    if fmt == "json":
        echo_json(found.as_json())
        return
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


@relay_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
def relay_retry(ids: tuple[int, ...], everything: bool) -> None:
    """Put dead letters (IDS, or --all) back in the queue, e.g. after fixing the cause."""
    if not ids and not everything:
        raise click.UsageError("name dead letters by id, or use --all")
    count = outbox.requeue(None if everything else ids)
    click.echo(f"requeued {count} change(s)")
