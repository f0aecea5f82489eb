"""The ``audit-forwarder`` command line.

Imports here stay light (click, the command modules): ``--help`` and ``schema`` must answer
without loading the settings, httpx or any sink; each command imports what it runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from forwarder.commands.common import DEFAULT_CONFIG, OUTPUT, SECONDS, date_ms, run_async, settings_from
from forwarder.commands.dlq import dlq
from forwarder.commands.state import state
from forwarder.evidence.cli import register as register_evidence


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFIG,
    envvar="AUDIT_FORWARDER_CONFIG",
    show_default=True,
    help="The YAML configuration file (may also follow the subcommand).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.pass_context
def main(ctx: click.Context, config: Path, log_level: str | None) -> None:
    """Forward SaaS audit logs to your SIEM without losing any.

    \b
    Example:
      audit-forwarder --config /etc/audit-forwarder/config.yaml run
    """
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, log_level=log_level)


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon until SIGTERM or SIGINT.

    \b
    Example:
      audit-forwarder -c config.yaml run
    """
    from forwarder.daemon import Daemon

    settings = settings_from(ctx)
    run_async(lambda: Daemon(settings, config_path=ctx.obj["config"]).run_forever())


@main.command()
@click.option(
    "--timeout",
    type=SECONDS,
    default=600.0,
    show_default=True,
    help="Bound of the whole run, in seconds: polling, delivery and shutdown (which gets what is left, at most "
    "shutdown_timeout_s). What is not delivered by then stays journaled for the next run.",
)
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="The closing summary as tables (tab-separated off a terminal) or as one JSON document.",
)
@click.pass_context
def once(ctx: click.Context, timeout: float, output: str) -> None:
    """Poll every source once, deliver everything, print a summary, exit (for cron).

    The summary (on stdout; logs go to stderr) gives per source and organization the events
    collected, pages and failures, and per sink what was delivered, is still pending and was
    dead-lettered. Exits 0 when every source was polled and every sink confirmed everything,
    1 otherwise (a failure, a dead letter or the timeout); nothing undelivered is lost, it
    stays journaled for the next run.

    \b
    Example:
      audit-forwarder -c config.yaml once --timeout 300 --output json
    """
    from forwarder.daemon import Daemon
    from forwarder.once import OnceRun
    from forwarder.tools.summary import print_summary

    settings = settings_from(ctx)
    job = OnceRun(Daemon(settings, config_path=ctx.obj["config"], once=True))
    code = run_async(lambda: job.run(timeout))
    if job.summary is not None:
        print_summary(job.summary, output)
    sys.exit(code)


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the configuration, then try every source's credentials and every sink.

    Tries rather than guesses: creates (and removes) a file in state_dir and in each file
    sink's directory, creating missing directories as run would; each line names the setting.

    All components are tried at once; a request is retried at most once, so an unreachable
    vendor fails within seconds and one that never answers within a minute, instead of
    after the source's full retry policy.

    Exit status 0 when no line is FAIL (WARN lines included), 1 when one is, 2 when the
    configuration is invalid.

    \b
    Example:
      audit-forwarder -c config.yaml check
    """
    import asyncio

    from forwarder.checks import run_checks

    settings = settings_from(ctx)
    click.echo(f"configuration ok: {ctx.obj['config']}")
    ok = asyncio.run(run_checks(settings, click.echo))
    sys.exit(0 if ok else 1)


@main.command()
def schema() -> None:
    """Print the normalized event's JSON Schema.

    \b
    Example:
      audit-forwarder schema > audit-event.schema.json
    """
    from forwarder.event_schema import SCHEMA_FILE

    click.echo(SCHEMA_FILE.read_text(encoding="utf-8"), nl=False)


@main.command()
@click.option("--source", required=True, help="A source name from the configuration.")
@click.option(
    "--org", "--organization", "orgs", multiple=True, help="Only this organization (repeatable; default: all)."
)
@click.option("--since", required=True, help="Start of the window, e.g. 2024-01-01 (UTC unless an offset is given).")
@click.option("--until", default=None, help="End of the window (default: now, or the unfinished window's end).")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Organizations collected at the same time.",
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=600.0,
    show_default=True,
    help="Seconds to wait for the sinks to deliver after collecting.",
)
@click.pass_context
def backfill(
    ctx: click.Context,
    source: str,
    orgs: tuple[str, ...],
    since: str,
    until: str | None,
    concurrency: int,
    timeout: float,
) -> None:
    """Collect a past window and deliver it through the configured sinks (daemon stopped).

    Resumable: after an interruption, run the same command again. The live cursor is not
    touched; progress is kept under SOURCE#backfill:SINCE:UNTIL (see `state show`).

    \b
    Example:
      audit-forwarder -c config.yaml backfill --source codacy --since 2024-01-01 --until 2024-04-01
    """
    from rich.console import Console

    from forwarder.tools.backfill import Backfill

    settings = settings_from(ctx)
    since_ms = date_ms(since, "--since")
    assert since_ms is not None
    until_ms = date_ms(until, "--until")
    if until_ms is not None and until_ms <= since_ms:  # refused before the state is opened
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    if until_ms is None and since_ms >= time.time() * 1000:
        raise click.BadParameter(f"{since} is in the future: nothing to backfill", param_hint="--since")
    job = Backfill(settings, source, orgs, since_ms, until_ms, concurrency, timeout, Console(stderr=True))
    sys.exit(run_async(job.run))


@main.command()
@click.option("--source", required=True, help="A source name from the configuration.")
@click.option(
    "--org", "--organization", "orgs", multiple=True, help="Only this organization (repeatable; default: all)."
)
@click.option("--since", default=None, help="Read from this date (default: as a first run would).")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Events per organization.")
@click.option(
    "--format", "fmt", default=None, help="Print each event as a sink with this format (json, csv...) would write it."
)
@OUTPUT
@click.pass_context
def preview(
    ctx: click.Context,
    source: str,
    orgs: tuple[str, ...],
    since: str | None,
    limit: int,
    fmt: str | None,
    output: str,
) -> None:
    """Fetch and print normalized events; touches no cursor, journal or sink (safe while running).

    \b
    Example:
      audit-forwarder -c config.yaml preview --source codacy --limit 5 --output json
    """
    from forwarder.formats import get_formatter
    from forwarder.tools.preview import collect_preview, print_preview

    settings = settings_from(ctx)
    since_ms = date_ms(since, "--since")
    if fmt is not None:
        try:
            get_formatter(fmt)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--format") from None
    events, problems = run_async(lambda: collect_preview(settings, source, orgs, since_ms, limit))
    from forwarder.terminal import plain

    for problem in problems:
        click.echo(plain(problem), err=True)
    print_preview(events, output, fmt)


@main.command()
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True)
@click.option("--entries", type=int, default=200, show_default=True, help="Entries per emulated organization.")
@click.option(
    "--presets", is_flag=True, help="Also collect from Okta, GitHub and Google Workspace emulators (their presets)."
)
def demo(output_dir: Path, entries: int, presets: bool) -> None:
    """Run the daemon against local vendor emulators and show what it collected.

    \b
    Example:
      audit-forwarder demo --output-dir ./demo-output
      audit-forwarder demo --presets
    """
    from forwarder.demo import run_demo

    sys.exit(run_demo(output_dir, entries, presets))


def _config_anywhere(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["config"] = value


def _accept_config_after_subcommands(group: click.Group) -> None:
    """``audit-forwarder run --config FILE`` is how Vector and Filebeat users type it: every
    subcommand takes ``-c/--config`` too, and the one nearest the end of the line wins."""
    for command in group.commands.values():
        command.params.append(
            click.Option(
                ["--config", "-c"],
                type=click.Path(path_type=Path),
                default=None,
                expose_value=False,
                callback=_config_anywhere,
                help="The YAML configuration file (also accepted before the subcommand).",
            )
        )
        if isinstance(command, click.Group):
            _accept_config_after_subcommands(command)


main.add_command(state)
main.add_command(dlq)
register_evidence(main)  # keys, verify: forwarder/evidence/cli.py
_accept_config_after_subcommands(main)
