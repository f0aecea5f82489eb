"""The daemon: wires configuration, journal, pollers and sink workers, and runs them.

``run_forever`` is the service (APScheduler polls each source on its interval with jitter;
one worker task per sink drains the journal); ``run_once`` is one cycle of every source
followed by delivering everything (for cron and the demo). Shutdown stops polling first,
then gives each sink up to ``shutdown_timeout_s`` to finish its in-flight batch; whatever
is not confirmed stays in the journal for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Any, TextIO

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from forwarder.delivery import SinkWorker
from forwarder.journal import Journal, StateError
from forwarder.logs import register_secrets
from forwarder.polling import Poller
from forwarder.secrets import collect_secrets
from forwarder.settings import Settings
from forwarder.sources import SOURCES
from sinks.registry import SINKS

log = structlog.get_logger("forwarder.daemon")
JOURNAL_FILE = "journal.sqlite3"
LOCK_FILE = "audit-forwarder.lock"


class StateLock:
    """One daemon (or state-changing command) per state_dir: a second one would race on the
    journal's offsets. flock is released by the kernel if the process dies, even by kill -9."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self.handle: TextIO | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StateError(
                f"another audit-forwarder process holds {self.path}; stop it first (one process per state_dir)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        register_secrets(collect_secrets(settings))
        self.lock = StateLock(settings.state_dir)
        self.journal = Journal(
            settings.state_dir / JOURNAL_FILE, settings.journal.max_events, settings.journal.max_bytes
        )
        self.pollers: dict[str, Poller] = {}
        self.workers: dict[str, SinkWorker] = {}
        self.worker_tasks: dict[str, asyncio.Task[None]] = {}
        self.poll_tasks: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()
        self.started_at = time.time()
        self._prune_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.lock.acquire()
        await self.journal.open()
        for name, cfg in self.settings.sources.items():
            source = SOURCES[cfg.type][1](name, cfg)
            self.pollers[name] = Poller(source, self.journal, self.notify_sinks)
        for name, sink_cfg in self.settings.sinks.items():
            sink = SINKS[sink_cfg.type][1](name, sink_cfg)
            self.workers[name] = SinkWorker(name, sink, sink_cfg, self.journal, self.settings.retry)
        dropped = await self.journal.register_sinks(self.workers)
        if dropped:
            log.warning("sinks no longer configured; their journal offsets were removed", sinks=dropped)
        for name, worker in self.workers.items():
            self.worker_tasks[name] = asyncio.create_task(worker.run(), name=f"sink:{name}")
        self._prune_task = asyncio.create_task(self._prune_loop(), name="prune")
        log.info(
            "audit-forwarder started",
            sources=sorted(self.pollers),
            sinks=sorted(self.workers),
            state=str(self.journal.path),
        )

    async def stop(self) -> None:
        for task in list(self.poll_tasks):
            task.cancel()
        await asyncio.gather(*self.poll_tasks, return_exceptions=True)
        for worker in self.workers.values():
            worker.stop()
        if self.worker_tasks:
            _, pending = await asyncio.wait(
                self.worker_tasks.values(), timeout=self.settings.shutdown_timeout_s
            )
            for task in pending:
                log.warning("sink did not finish its batch in time; it stays journaled", sink=task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._prune_task:
            self._prune_task.cancel()
            await asyncio.gather(self._prune_task, return_exceptions=True)
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                await worker.sink.close()
        for poller in self.pollers.values():
            with contextlib.suppress(Exception):
                await poller.source.close()
        with contextlib.suppress(Exception):
            await self.journal.prune()
        await self.journal.close()
        self.lock.release()
        log.info("audit-forwarder stopped")

    def notify_sinks(self) -> None:
        for worker in self.workers.values():
            worker.notify()

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                await self.journal.prune()
            except Exception:
                log.exception("journal prune failed")

    async def poll(self, name: str) -> bool:
        task = asyncio.current_task()
        if task is not None:
            self.poll_tasks.add(task)
        try:
            return await self.pollers[name].poll()
        finally:
            if task is not None:
                self.poll_tasks.discard(task)

    # --- modes ---------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)

    async def run_forever(self) -> None:
        self._install_signals()
        await self.start()
        scheduler = AsyncIOScheduler()
        for name, cfg in self.settings.sources.items():
            scheduler.add_job(
                self.poll,
                "interval",
                args=[name],
                seconds=cfg.interval_s,
                jitter=cfg.jitter_s,
                max_instances=1,
                coalesce=True,
                next_run_time=None,
                id=name,
            )
        scheduler.start()
        for name in self.settings.sources:
            # the first poll starts at once instead of one interval after start-up
            asyncio.create_task(self.poll(name), name=f"poll:{name}")  # noqa: RUF006
        try:
            await self.stopping.wait()
            log.info("stop requested; finishing in-flight batches")
        finally:
            scheduler.shutdown(wait=False)
            await self.stop()

    async def run_once(self, timeout_s: float = 600.0) -> int:
        """Poll every source once, deliver everything, stop. Exit code 1 if anything failed."""
        self._install_signals()
        await self.start()
        ok = True
        try:
            polls = [asyncio.create_task(self.poll(name)) for name in self.pollers]
            done = await self._race(asyncio.gather(*polls), timeout_s)
            ok = bool(done) and all(done)
            deadline = time.monotonic() + timeout_s
            while not self.stopping.is_set() and time.monotonic() < deadline:
                active = [w for w in self.workers.values() if w.status.state != "stopped"]
                if all(w.caught_up for w in active):
                    break
                await asyncio.sleep(0.05)
            for name, worker in self.workers.items():
                if worker.status.state == "stopped" or not worker.caught_up:
                    log.error("sink did not deliver everything", sink=name, **worker.describe())
                    ok = False
                if worker.status.dead_lettered:
                    ok = False
        finally:
            await self.stop()
        return 0 if ok else 1

    async def _race(self, work: Any, timeout_s: float) -> Any:
        stop = asyncio.create_task(self.stopping.wait())
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task, stop}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
