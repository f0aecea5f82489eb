"""``audit-forwarder dlq``: inspect, replay or purge dead letters."""

from __future__ import annotations

import sys

import click

from forwarder.commands.common import OUTPUT, YES, confirmer, run_async, settings_from


@click.group()
def dlq() -> None:
    """Inspect, replay or purge the records a sink gave up on (dead letters)."""


@dlq.command("list")
@click.option("--sink", default=None, help="Only this sink's dead letters.")
@OUTPUT
@click.pass_context
def dlq_list(ctx: click.Context, sink: str | None, output: str) -> None:
    """List dead letters with their reason (safe while the daemon runs; needs no credential).

    \b
    Example:
      audit-forwarder -c config.yaml dlq list --sink splunk --output json
    """
    from forwarder.tools.dlq import list_dead_letters

    settings = settings_from(ctx, read_only=True)
    run_async(lambda: list_dead_letters(settings, sink, output))


@dlq.command("replay")
@click.option("--sink", default=None, help="Only this sink's dead letters.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable).")
@click.pass_context
def dlq_replay(ctx: click.Context, sink: str | None, ids: tuple[int, ...]) -> None:
    """Send dead letters again to their own sink only, then delete those it confirmed (daemon stopped).

    \b
    Example:
      audit-forwarder -c config.yaml dlq replay --sink splunk --id 12 --id 13
    """
    from forwarder.tools.dlq import replay_dead_letters

    settings = settings_from(ctx)
    ok = run_async(lambda: replay_dead_letters(settings, sink, ids, click.echo))
    sys.exit(0 if ok else 1)


@dlq.command("purge")
@click.option("--sink", default=None, help="Only this sink's dead letters.")
@YES
@click.pass_context
def dlq_purge(ctx: click.Context, sink: str | None, yes: bool) -> None:
    """Delete dead letters for good (daemon stopped).

    \b
    Example:
      audit-forwarder -c config.yaml dlq purge --sink splunk --yes
    """
    from forwarder.tools.dlq import purge_dead_letters

    settings = settings_from(ctx)
    ok = run_async(lambda: purge_dead_letters(settings, sink, confirmer(yes), click.echo))
    sys.exit(0 if ok else 1)
