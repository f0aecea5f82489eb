"""The ``audit-forwarder`` command line."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from forwarder.settings import DEFAULT_CONFIG, ConfigError, Settings, load_settings

EXIT_CONFIG = 2


class Seconds(click.ParamType[float]):
    """A positive, finite number of seconds (click's FloatRange lets NaN through)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not 0 < seconds < math.inf:
            self.fail(f"{value!r} is not a positive number of seconds", param, ctx)
        return seconds


SECONDS = Seconds()
YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
OUTPUT = click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
                      help="A table (tab-separated, values whole, off a terminal) or JSON.")  # fmt: skip


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def invalid_config(exc: ConfigError) -> NoReturn:
    lines = "\n".join(f"  - {p}" for p in exc.problems)
    fail(f"invalid configuration in {exc.path}:\n{lines}", EXIT_CONFIG)


def settings_from(ctx: click.Context, *, read_only: bool = False) -> Settings:
    """``read_only`` commands (``state show``, ``dlq list``) need no credential: an unset
    ``${VAR}`` in a secret field then loads as a placeholder instead of refusing the file."""
    path = ctx.obj["config"]
    try:
        settings = load_settings(path, read_only=read_only)
    except ConfigError as exc:
        invalid_config(exc)
    from forwarder.logs import configure_logging, register_secrets
    from forwarder.secrets import collect_secrets

    configure_logging(ctx.obj["log_level"] or settings.log.level, settings.log.format)
    register_secrets(collect_secrets(settings))  # every command: a vendor may echo a token in its errors
    return settings


def run_async(fn: Callable[[], Any]) -> Any:
    from forwarder.journal import StateError
    from forwarder.sources.http import SourceError
    from forwarder.terminal import plain
    from forwarder.tools.common import ToolError

    try:
        return asyncio.run(fn())
    except (StateError, ToolError, SourceError) as exc:
        fail(f"error: {plain(exc)}", 1)
    except ConfigError as exc:  # a source or sink the daemon could not build from a valid file
        invalid_config(exc)
    except KeyboardInterrupt:
        return 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "-c", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, envvar="AUDIT_FORWARDER_CONFIG",
    show_default=True, help="The YAML configuration file (may also follow the subcommand).",
)  # fmt: skip
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
    "--timeout", type=SECONDS, default=600.0, show_default=True,
    help="Bound of the whole run, in seconds: polling, delivery and shutdown (which gets what is left, at most "
    "shutdown_timeout_s). What is not delivered by then stays journaled for the next run.",
)  # fmt: skip
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="The closing summary as tables (tab-separated off a terminal) or as one JSON document.")  # fmt: skip
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
    from forwarder.tools.summary import print_summary

    settings = settings_from(ctx)
    daemon = Daemon(settings, config_path=ctx.obj["config"], once=True)
    code = run_async(lambda: daemon.run_once(timeout))
    if daemon.summary is not None:
        print_summary(daemon.summary, output)
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

    \b
    Example:
      audit-forwarder -c config.yaml check
    """
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
    from forwarder.event import json_schema

    click.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())


@main.group()
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

    Cursors, offsets, in-flight notes, undelivered events, dead letters and quarantine move
    with their numbers; a target holding anything is refused; the counts are compared after
    the copy and printed. Then set `state: {backend: postgresql, ...}` and start the replicas.

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


def confirmer(yes: bool) -> Callable[[str], bool]:
    """``--yes`` for scripts; otherwise the operator answers (no answer, e.g. no terminal, means no)."""
    return (lambda _: True) if yes else (lambda question: click.confirm(question, default=False))


def date_ms(value: str | None, option: str) -> int | None:
    from forwarder.tools.common import ToolError, parse_date_ms

    try:
        return None if value is None else parse_date_ms(value, option)
    except ToolError as exc:
        raise click.BadParameter(str(exc)) from None


@state.command("set-cursor")
@click.option("--source", required=True, help="A source name from the configuration.")
@click.option("--org", required=True, help="One of that source's organizations.")
@click.option("--to", "to", required=True, help="The new watermark: a date such as 2024-05-01T00:00:00Z.")
@YES
@click.pass_context
def state_set_cursor(ctx: click.Context, source: str, org: str, to: str, yes: bool) -> None:
    """Move where a source resumes for one organization (the daemon must be stopped).

    Earlier entries are collected again on the next run; later ones are skipped.

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
@click.option("--org", default=None, help="Only this organization's cursors.")
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


@main.command()
@click.option("--source", required=True, help="A source name from the configuration.")
@click.option("--org", "orgs", multiple=True, help="Only this organization (repeatable; default: all).")
@click.option("--since", required=True, help="Start of the window, e.g. 2024-01-01 (UTC unless an offset is given).")
@click.option("--until", default=None, help="End of the window (default: now, or the unfinished window's end).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Organizations collected at the same time.")  # fmt: skip
@click.option("--timeout", type=SECONDS, default=600.0, show_default=True,
              help="Seconds to wait for the sinks to deliver after collecting.")  # fmt: skip
@click.pass_context
def backfill(
    ctx: click.Context, source: str, orgs: tuple[str, ...], since: str, until: str | None, concurrency: int,
    timeout: float,
) -> None:  # fmt: skip
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
    job = Backfill(settings, source, orgs, since_ms, date_ms(until, "--until"), concurrency, timeout,
                   Console(stderr=True))  # fmt: skip
    sys.exit(run_async(job.run))


@main.command()
@click.option("--source", required=True, help="A source name from the configuration.")
@click.option("--org", "orgs", multiple=True, help="Only this organization (repeatable; default: all).")
@click.option("--since", default=None, help="Read from this date (default: as a first run would).")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Events per organization.")
@click.option("--format", "fmt", default=None,
              help="Print each event as a sink with this format (json, csv...) would write it.")  # fmt: skip
@OUTPUT
@click.pass_context
def preview(
    ctx: click.Context, source: str, orgs: tuple[str, ...], since: str | None, limit: int, fmt: str | None,
    output: str,
) -> None:  # fmt: skip
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


@main.group()
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


@main.command()
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True)
@click.option(
    "--entries", type=int, default=200, show_default=True, help="Entries per emulated organization."
)
def demo(output_dir: Path, entries: int) -> None:
    """Run the daemon against local vendor emulators and show what it collected.

    \b
    Example:
      audit-forwarder demo --output-dir ./demo-output
    """
    from forwarder.demo import run_demo

    sys.exit(run_demo(output_dir, entries))


def _config_anywhere(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["config"] = value


def _accept_config_after_subcommands(group: click.Group) -> None:
    """``audit-forwarder run --config FILE`` is how Vector and Filebeat users type it: every
    subcommand takes ``-c/--config`` too, and the one nearest the end of the line wins."""
    for command in group.commands.values():
        command.params.append(click.Option(
            ["--config", "-c"], type=click.Path(path_type=Path), default=None, expose_value=False,
            callback=_config_anywhere, help="The YAML configuration file (also accepted before the subcommand).",
        ))  # fmt: skip
        if isinstance(command, click.Group):
            _accept_config_after_subcommands(command)


_accept_config_after_subcommands(main)
