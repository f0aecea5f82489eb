"""What the operator tools share: opening the state (locked when they change it), finding a
configured source, reading dates, printing JSON."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import click
import orjson

from forwarder.build import BuildError, build
from forwarder.event import parse_time
from forwarder.journal import StateError, StateJournal
from forwarder.journal.factory import JOURNAL_FILE, make_journal
from forwarder.settings import Settings
from forwarder.sources import SOURCES
from forwarder.sources.base import Page, Source
from forwarder.state_lock import StateLock
from forwarder.terminal import plain


class ToolError(Exception):
    """A mistake in the operator's request (unknown source, bad date): reported in one line, exit 1."""


def lock_state(settings: Settings) -> StateLock:
    """Changing cursors, offsets or dead letters under a running daemon would race with it, so
    state-changing commands take the daemon's own lock, without waiting (refused as ``backfill``
    and a second daemon are: ``StateLock`` words the refusal)."""
    lock = StateLock(settings.state_dir)
    lock.acquire()
    return lock


@asynccontextmanager
async def open_state(settings: Settings, *, change: bool) -> AsyncIterator[StateJournal]:
    """The state, for a tool. Changing it takes the lock the daemon holds, without waiting (only
    the lock holder may migrate): SQLite's flock, or the replicas' PostgreSQL advisory lock taken
    exclusively, refused while any replica runs (``forwarder.replicas``). Reading takes nothing."""
    if settings.state.backend == "sqlite" and not (settings.state_dir / JOURNAL_FILE).exists():
        raise StateError(
            f"no state database at {settings.state_dir / JOURNAL_FILE} yet: the daemon has not run with this state_dir"
        )
    async with contextlib.AsyncExitStack() as held:
        if change and settings.state.backend == "sqlite":
            held.callback(lock_state(settings).release)
        elif change:
            from forwarder.journal.factory import postgres_conninfo
            from forwarder.journal.postgres.advisory_lock import AdvisoryLock

            lock = AdvisoryLock(*postgres_conninfo(settings.state))
            await lock.exclusive()
            held.push_async_callback(lock.close)
        journal = make_journal(settings.state, settings.state_dir, migrate=change)
        held.push_async_callback(journal.close)
        await journal.open()
        yield journal


def build_source(settings: Settings, name: str) -> Source:
    config = settings.sources.get(name)
    if config is None:
        known = ", ".join(sorted(settings.sources)) or "none"
        raise ToolError(f"no source named {name!r} in the configuration (configured: {known})")
    try:
        source: Source = build(SOURCES, name, config)
    except BuildError as exc:
        raise ToolError(f"source {name!r} {exc}") from None
    return source


async def pick_organizations(source: Source, wanted: tuple[str, ...] | list[str]) -> list[str]:
    """The organizations asked for, or all; a source that discovers them reads its listing first."""
    refresh = getattr(source, "refresh_organizations", None)
    if refresh is not None:
        try:
            await refresh(force=True)
        except Exception as exc:
            raise ToolError(f"source {source.name!r}: the organization listing failed: {exc}") from None
    configured = source.organizations()
    unknown = [org for org in wanted if org not in configured]
    if unknown:
        raise ToolError(
            f"organization(s) {', '.join(unknown)} not configured for source {source.name!r} "
            f"(configured: {', '.join(configured)})"
        )
    return list(wanted) or configured


def parse_date_ms(value: str, option: str) -> int:
    """Dates as an operator types them: 2024-05-01, 2024-05-01T12:00, with or without Z or an offset
    (naive means UTC). Whole seconds, so the same command line always names the same window."""
    try:
        return int(parse_time(value).timestamp()) * 1000
    except ValueError:
        raise ToolError(f"{option} {value!r} is not a date such as 2024-05-01 or 2024-05-01T12:00:00Z") from None


_FLAT = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """The one place that decides how a tool prints a table. On a terminal: boxed, fitted to
    its width. Anywhere else (a pipe to grep, a log file, cron's mail): tab-separated, a
    ``# title`` line, the header, then one line per row with every value whole; rich cut
    them to 80 columns there (``organizati…``) and wrapped one row over eight lines."""
    cells = [["-" if value is None else plain(value) for value in row] for row in rows]  # vendor text: no escapes
    if sys.stdout.isatty():
        from rich.console import Console  # here only: `state show` into a pipe or cron needs no rich
        from rich.table import Table
        from rich.text import Text

        table = Table(*columns, title=title)
        for row in cells:
            table.add_row(*(Text(value) for value in row))  # Text: vendor text is never read as markup
        Console().print(table)
        return
    click.echo(f"# {title}")
    click.echo("\t".join(columns))
    for row in cells:
        click.echo("\t".join(value.translate(_FLAT) for value in row))


def echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())


@asynccontextmanager
async def closing(pages: AsyncIterator[Page]) -> AsyncIterator[AsyncIterator[Page]]:
    """Leaving a source's page stream early must close it, so its open request and slices stop now."""
    try:
        yield pages
    finally:
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()
