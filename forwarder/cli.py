"""The ``audit-forwarder`` command line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from forwarder.settings import DEFAULT_CONFIG, ConfigError, Settings, load_settings

EXIT_CONFIG = 2


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def settings_from(ctx: click.Context) -> Settings:
    path = ctx.obj["config"]
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        fail(f"invalid configuration in {exc.path}:\n{lines}", EXIT_CONFIG)
    from forwarder.logs import configure_logging

    configure_logging(ctx.obj["log_level"] or settings.log.level, settings.log.format)
    return settings


def run_async(fn: Callable[[], Any]) -> Any:
    from forwarder.journal import StateError

    try:
        return asyncio.run(fn())
    except StateError as exc:
        fail(f"error: {exc}", 1)
    except KeyboardInterrupt:
        return 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "-c", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, envvar="AUDIT_FORWARDER_CONFIG",
    show_default=True, help="The YAML configuration file.",
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
    run_async(lambda: Daemon(settings).run_forever())


@main.command()
@click.option(
    "--timeout", type=float, default=600.0, show_default=True, help="Give up after this many seconds."
)
@click.pass_context
def once(ctx: click.Context, timeout: float) -> None:
    """Poll every source once, deliver everything, exit (for cron).

    Exits 1 if a source or a sink failed; nothing undelivered is lost, it stays journaled.

    \b
    Example:
      audit-forwarder -c config.yaml once --timeout 300
    """
    from forwarder.daemon import Daemon

    settings = settings_from(ctx)
    sys.exit(run_async(lambda: Daemon(settings).run_once(timeout)))


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the configuration, then try every source's credentials and every sink.

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
    """Inspect the journal and cursors."""


@state.command("show")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def state_show(ctx: click.Context, output: str) -> None:
    """Show cursors, journal depth, each sink's lag, quarantined and dead-lettered counts.

    \b
    Example:
      audit-forwarder -c config.yaml state show --output json
    """
    from forwarder.state_view import show_state

    settings = settings_from(ctx)
    run_async(lambda: show_state(settings, output))


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
