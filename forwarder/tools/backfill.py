"""``backfill``: collect a past window (``--since`` to ``--until``) as fast as the vendor allows.

Design (``README.md``, Operator tools):

* It runs with the daemon stopped: it takes the state lock and starts the configured sinks
  itself, like ``once``. A second writer next to the daemon would race with its journal
  counters and offsets; stopping the daemon loses nothing, its live cursor resumes after.
* Progress lives in the journal's ``cursors`` table under ``NAME#backfill:SINCE:UNTIL``, one
  row per organization, written in the same transaction as the page's events. The live
  cursor is never read nor written, and a rerun of the same command resumes after a crash.
* Events are journaled under the source's own name, so sinks receive them with the usual
  at-least-once guarantee. Entries outside the window (slices overshoot, the first slice
  re-reads the overlap) are dropped; ids are the live ones, so an overlap with what the
  daemon already sent shows up as duplicates with identical ids, never as different events.
* The vendor-specific paging, retries, Retry-After and normalization are the source's and
  ``Poller``'s, reused unchanged: backfill only swaps the cursor key and bounds the window.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Unpack, cast

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from forwarder.chunks import Chunks
from forwarder.daemon import Daemon
from forwarder.evidence.chain import Head
from forwarder.journal import StateJournal
from forwarder.journal.protocols import PageParts
from forwarder.polling import Poller
from forwarder.settings import Settings
from forwarder.sources.base import Page, Source
from forwarder.terminal import markup
from forwarder.tools.backfill_keys import TAG, backfill_key, stamp
from forwarder.tools.common import ToolError, build_source, closing, pick_organizations


def done(cursor: dict[str, Any] | None, until_ms: int) -> bool:
    return cursor is not None and int(cursor.get("watermark_ms", 0)) >= until_ms


@dataclass
class OrgProgress:
    pages: int = 0
    events: int = 0
    watermark_ms: int = 0


@dataclass
class Window:
    source: str
    since_ms: int
    until_ms: int
    progress: dict[str, OrgProgress] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return backfill_key(self.source, self.since_ms, self.until_ms)

    def inside(self, time_ms: int) -> bool:
        return self.since_ms <= time_ms < self.until_ms


class BoundedSource:
    """The real source, stopped once a page's cursor reaches ``until``."""

    def __init__(self, source: Source, until_ms: int) -> None:
        self.source = source
        self.name = source.name
        self.until_ms = until_ms

    def organizations(self) -> list[str]:
        return self.source.organizations()

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        async with closing(self.source.pages(organization, cursor)) as pages:
            async for page in pages:
                yield page
                if done(page.cursor, self.until_ms):
                    return

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        return self.source.normalize(organization, raw, key, observed)


class WindowJournal:
    """The journal as ``Poller`` sees it during a backfill: the window's cursor instead of the
    live one, and only the entries inside the window."""

    def __init__(self, journal: StateJournal, window: Window, on_page: Callable[[], None]) -> None:
        self.journal = journal
        self.window = window
        self.on_page = on_page

    async def get_cursor(self, source: str, organization: str) -> dict[str, Any]:
        cursor = await self.journal.get_cursor(self.window.key, organization)
        return cursor or {"watermark_ms": self.window.since_ms, "recent": {}}

    async def append(
        self, source: str, organization: str, entries: Chunks, cursor: dict[str, Any], **page: Unpack[PageParts]
    ) -> None:
        w = self.window
        inside = Chunks.of(e for e in entries if w.inside(e.time_ms))  # the poller kept only these already
        page["cursor_source"] = w.key  # the window's progress, apart from the live cursor
        await self.journal.append(source, organization, inside, cursor, **page)
        progress = w.progress.setdefault(organization, OrgProgress())
        progress.pages += 1
        progress.events += inside.count
        progress.watermark_ms = int(cursor.get("watermark_ms", progress.watermark_ms))
        self.on_page()

    async def chain_head(self, source: str, organization: str) -> Head:
        """The live stream's: a backfill's events are links of the same chain."""
        return await self.journal.chain_head(source, organization)

    def is_full(self) -> bool:
        return self.journal.is_full()

    @property
    def size(self) -> tuple[int, int]:
        return self.journal.size


async def resolve_until(
    journal: StateJournal, source: str, orgs: list[str], since_ms: int, until_ms: int | None, latest_ms: int
) -> tuple[int, bool]:
    """Without ``--until``, rerunning the command resumes the unfinished window with the same
    ``--since`` instead of starting a new one that ends now. Returns (until, resumed)."""
    if until_ms is not None:
        if until_ms > latest_ms:
            raise ToolError("--until is later than now minus the source's lag_s: those entries are not final yet")
        return until_ms, False
    prefix = f"{source}{TAG}{stamp(since_ms)}:"
    windows: dict[str, dict[str, dict[str, Any]]] = {}
    for key, org, cursor, _ in (await journal.stats()).cursors:
        if key.startswith(prefix):
            windows.setdefault(key, {})[org] = cursor
    for key in sorted(windows, reverse=True):
        until = int(datetime.strptime(key[len(prefix) :], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()) * 1000
        if not all(done(windows[key].get(org), until) for org in orgs):
            return until, True
    return latest_ms // 1000 * 1000, False


async def until_stopped(stopping: asyncio.Event, work: asyncio.Future[list[bool]]) -> list[bool]:
    """SIGTERM or Ctrl-C stops collecting at a page boundary; what is journaled stays, and sinks
    still get their shutdown grace."""
    stop = asyncio.ensure_future(stopping.wait())
    waiting: set[asyncio.Future[Any]] = {work, stop}
    finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if work in finished:
        return work.result()
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    return []


class Backfill:
    def __init__(
        self,
        settings: Settings,
        source_name: str,
        orgs: tuple[str, ...],
        since_ms: int,
        until_ms: int | None,
        concurrency: int,
        timeout_s: float,
        console: Console,
    ) -> None:
        self.settings = settings
        self.source_name = source_name
        self.orgs = orgs
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.console = console

    async def run(self) -> int:
        source = build_source(self.settings, self.source_name)
        try:
            orgs = await pick_organizations(source, self.orgs)
            lag_ms = int(self.settings.sources[self.source_name].lag_s * 1000)
            daemon = Daemon(self.settings, exclusive=True)
            await daemon.start()  # takes the state lock: refused while the daemon (any replica) runs
            try:
                return await self._collect_and_deliver(daemon, source, orgs, lag_ms)
            finally:
                await daemon.stop()
        finally:
            await source.close()

    async def _collect_and_deliver(self, daemon: Daemon, source: Source, orgs: list[str], lag_ms: int) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stopping.set)
        until, resumed = await resolve_until(
            daemon.journal, self.source_name, orgs, self.since_ms, self.until_ms, int(time.time() * 1000) - lag_ms
        )
        if until <= self.since_ms:
            raise ToolError("--since must be earlier than --until")
        window = Window(self.source_name, self.since_ms, until)
        if resumed:
            self.console.print(f"resuming backfill {window.key}")
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[pages]} pages · {task.fields[events]} events · {task.fields[rate]}/s"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
        ) as bar:
            tasks = {
                org: bar.add_task(markup(org), total=until - self.since_ms, pages=0, events=0, rate=0) for org in orgs
            }

            def refresh() -> None:
                elapsed = max(time.monotonic() - started, 1e-3)
                for org, task in tasks.items():
                    p = window.progress.get(org, OrgProgress())
                    covered = min(max(p.watermark_ms - self.since_ms, 0), until - self.since_ms)
                    bar.update(task, completed=covered, pages=p.pages, events=p.events, rate=int(p.events / elapsed))
                daemon.notify_sinks()

            journal = WindowJournal(daemon.journal, window, refresh)
            poller = Poller(
                cast(Source, BoundedSource(source, until)), journal, daemon.notify_sinks, keep=window.inside
            )
            limit = asyncio.Semaphore(self.concurrency)
            results = await until_stopped(
                daemon.stopping, asyncio.gather(*(self._one(poller, journal, org, limit) for org in orgs))
            )
            refresh()
        complete = sum(bool(r) for r in results)
        delivered = await self._drain(daemon)
        events = sum(p.events for p in window.progress.values())
        pages = sum(p.pages for p in window.progress.values())
        elapsed = time.monotonic() - started
        self.console.print(
            f"backfill {window.key}: {events} events from {pages} pages, {complete}/{len(orgs)} organization(s) "
            f"complete in {elapsed:.1f}s ({events / max(elapsed, 1e-3):.0f} events/s); "
            + ("all delivered" if delivered else "NOT all delivered (see `state show` and `dlq list`)")
            + ("" if complete == len(orgs) else "; rerun the same command to resume"),
            highlight=False,
            soft_wrap=True,
        )
        return 0 if complete == len(orgs) and delivered else 1

    async def _one(self, poller: Poller, journal: WindowJournal, org: str, limit: asyncio.Semaphore) -> bool:
        async with limit:
            while True:
                before = await journal.get_cursor(self.source_name, org)
                if done(before, journal.window.until_ms):
                    return True
                if not await poller.poll_org(org):
                    return False
                after = await journal.get_cursor(self.source_name, org)
                if done(after, journal.window.until_ms):
                    return True
                if journal.is_full():  # wait for the sinks to drain, as the daemon would
                    await asyncio.sleep(1.0)
                elif after == before:
                    return False  # the source stopped short of the window's end; rerun to resume

    async def _drain(self, daemon: Daemon) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while not daemon.stopping.is_set() and time.monotonic() < deadline:
            workers = list(daemon.workers.values())
            if any(w.status.state == "stopped" for w in workers):
                return False
            if all(w.caught_up for w in workers):
                return not any(w.status.dead_lettered for w in workers)
            await asyncio.sleep(0.05)
        return False
