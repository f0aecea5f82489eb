"""What every command shares: option types, loading the settings, running a coroutine and
turning the errors an operator can fix into a message and an exit code.

``forwarder.settings`` (every source's and sink's config model, httpx with them) is imported
only by the functions that load or report a configuration, so that ``--help`` and ``schema``
never pay for it (docs/performance.md, round 8)."""

from __future__ import annotations

import gc
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from forwarder.settings import ConfigError, Settings

DEFAULT_CONFIG = Path("/etc/audit-forwarder/config.yaml")
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


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
OUTPUT = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table (tab-separated, values whole, off a terminal) or JSON.",
)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def invalid_config(exc: ConfigError) -> NoReturn:
    lines = "\n".join(f"  - {p}" for p in exc.problems)
    fail(f"invalid configuration in {exc.path}:\n{lines}", EXIT_CONFIG)


def settings_from(ctx: click.Context, *, read_only: bool = False) -> Settings:
    """``read_only`` commands (``state show``, ``dlq list``) need no credential: an unset
    ``${VAR}`` in a secret field then loads as a placeholder instead of refusing the file."""
    from forwarder.settings import ConfigError, load_settings

    path = ctx.obj["config"]
    try:
        settings = load_settings(path, read_only=read_only)
    except ConfigError as exc:
        invalid_config(exc)
    from forwarder.logs import configure_logging
    from forwarder.redaction import register_secrets
    from forwarder.secrets import collect_secrets

    configure_logging(ctx.obj["log_level"] or settings.log.level, settings.log.format)
    register_secrets(collect_secrets(settings))  # every command: a vendor may echo a token in its errors
    return settings


@contextmanager
def collector_paused() -> Iterator[None]:
    """Loading a command's modules and validating its configuration makes some 100,000
    long-lived objects (modules, classes, pydantic's validators) and few cycles: the cycle
    collector ran ~140 times over them and took 30 ms of ``state show``'s 0.3 s budget
    (docs/performance.md, round 10). It is paused meanwhile, and what was loaded is then
    frozen (``gc.freeze``), so that no later collection walks it again: a short read-only
    command then runs without a full collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def run_async(fn: Callable[[], Any]) -> Any:
    import asyncio

    from forwarder.journal import StateError
    from forwarder.settings import ConfigError
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
        # Exits here rather than returning a code: callers read the result as the command's
        # answer, so an interrupted `dlq replay` exited 0 (130 is "true") and `preview` died
        # unpacking it. The daemon and `once`/`backfill` stop on SIGINT themselves and never
        # get here once started.
        fail("interrupted: the command stopped before it finished; run it again for the rest", EXIT_INTERRUPTED)


def confirmer(yes: bool) -> Callable[[str], bool]:
    """``--yes`` for scripts; otherwise the operator answers (no answer, e.g. no terminal, means no)."""
    return (lambda _: True) if yes else _ask


def _ask(question: str) -> bool:
    """The question is asked inside ``asyncio.run``, whose SIGINT handler only marks the main task
    for cancellation: Ctrl-C at the prompt did nothing until the operator answered, and then the
    command exited 0 having done nothing. While the prompt waits, Ctrl-C interrupts it as at any
    other prompt (click's "Aborted!", exit 1)."""
    previous = signal.getsignal(signal.SIGINT)
    interruptible = threading.current_thread() is threading.main_thread() and previous not in (None, signal.SIG_IGN)
    if interruptible:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return click.confirm(question, default=False)
    finally:
        if interruptible:
            signal.signal(signal.SIGINT, previous)


def date_ms(value: str | None, option: str) -> int | None:
    from forwarder.tools.common import ToolError, parse_date_ms

    try:
        return None if value is None else parse_date_ms(value, option)
    except ToolError as exc:
        raise click.BadParameter(str(exc)) from None
