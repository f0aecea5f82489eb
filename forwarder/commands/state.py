"""``audit-forwarder state``: inspect the journal and cursors, move or reset cursors."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forwarder.commands.common import OUTPUT, YES, collector_paused, confirmer, date_ms, run_async, settings_from


@click.group()
def state() -> None:
    """Inspect the journal and cursors, move or reset cursors."""


@state.command("show")
@OUTPUT
@click.pass_context
def state_show(ctx: click.Context, output: str) -> None:
    """Show cursors, journal depth, each sink's lag, quarantined and dead-lettered counts.

    Read-only and safe while the daemon runs. Needs no credential: a secret given as
    ${VAR} may be unset.

    \b
    Example:
      audit-forwarder -c config.yaml state show --output json
    """
    with collector_paused():
        from forwarder.state_view import show_state

        settings = settings_from(ctx, read_only=True)
    run_async(lambda: show_state(settings, output))


@state.command("migrate")
@click.option("--to", "to", default=None, metavar="DSN",
              help="The empty PostgreSQL state, as a libpq DSN or URI. A password written here shows in `ps`: "
              "prefer --to-dsn-file, PGPASSWORD or ~/.pgpass.")  # fmt: skip
@click.option("--to-dsn-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A file holding that DSN (one line).")  # fmt: skip
@OUTPUT
@click.pass_context
def state_migrate(ctx: click.Context, to: str | None, to_dsn_file: Path | None, output: str) -> None:
    """Copy this configuration's SQLite state into an EMPTY PostgreSQL state (daemon stopped).

    Cursors, chain heads, offsets, in-flight notes, undelivered events, dead letters,
    quarantine and the evidence ledger move with their numbers; a target holding anything is refused; the counts are
    compared after the copy and printed. Then set `state: {backend: postgresql, ...}` and
    start the replicas.

    \b
    Example:
      audit-forwarder -c config.yaml state migrate --to-dsn-file /run/secrets/af-dsn
    """
    from forwarder.tools.common import echo_json, print_table
    from forwarder.tools.migrate import migrate_state

    if (to is None) == (to_dsn_file is None):
        raise click.UsageError("give the target as exactly one of --to DSN or --to-dsn-file FILE")
    dsn = to if to is not None else to_dsn_file.read_text(encoding="utf-8").strip()  # type: ignore[union-attr]
    settings = settings_from(ctx)
    counts = run_async(lambda: migrate_state(settings, dsn, lambda line: click.echo(line, err=True)))
    if output == "json":
        echo_json(counts)
    else:
        print_table("Migrated (verified)", ("what", "count"), sorted(counts.items()))


@state.command("set-cursor")
@click.option("--source", required=True, help="A source name from the configuration.")
@click.option("--org", "--organization", "org", required=True, help="One of that source's organizations.")
@click.option("--to", "to", required=True, help="The new watermark: a date such as 2024-05-01T00:00:00Z.")
@YES
@click.pass_context
def state_set_cursor(ctx: click.Context, source: str, org: str, to: str, yes: bool) -> None:
    """Move where a source resumes for one organization (the daemon must be stopped).

    The next run reads from --to minus the source's overlap_s (sent again, same ids); moved
    back, later entries are collected again; moved forward, the skipped ones are not.

    \b
    Example:
      audit-forwarder -c config.yaml state set-cursor --source codacy --org gh/acme --to 2024-05-01
    """
    from forwarder.tools.cursors import set_cursor

    settings = settings_from(ctx)
    to_ms = date_ms(to, "--to")
    assert to_ms is not None
    ok = run_async(lambda: set_cursor(settings, source, org, to_ms, confirmer(yes), click.echo))
    sys.exit(0 if ok else 1)


@state.command("reset")
@click.option("--source", default=None, help="Only this source's cursors (default: all).")
@click.option("--org", "--organization", "org", default=None, help="Only this organization's cursors.")
@YES
@click.pass_context
def state_reset(ctx: click.Context, source: str | None, org: str | None, yes: bool) -> None:
    """Forget cursors, so their next run starts again from initial_lookback_days (daemon stopped).

    \b
    Example:
      audit-forwarder -c config.yaml state reset --source codacy --org gh/acme
    """
    from forwarder.tools.cursors import reset_cursors

    settings = settings_from(ctx)
    ok = run_async(lambda: reset_cursors(settings, source, org, confirmer(yes), click.echo))
    sys.exit(0 if ok else 1)
