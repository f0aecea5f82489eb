"""The daemon: wires configuration, journal, pollers and sink workers, and runs them.

``run_forever`` is the service (APScheduler polls each source on its interval with jitter;
one worker task per sink drains the journal); ``run_once`` is one cycle of every source
followed by delivering everything (for cron and the demo). Shutdown stops polling first,
then gives each sink up to ``shutdown_timeout_s`` to finish its in-flight batch; whatever
is not confirmed stays in the journal for the next start.

``run_forever`` also serves metrics and health (``forwarder.health``), talks to systemd
(``forwarder.systemd``) and reloads the configuration on SIGHUP (``reload``): sources and
sinks whose configuration changed are replaced, the others keep running, and the journal
and cursors are never touched, so a reload cannot lose or repeat anything a restart would not.
A reload applies completely or not at all: a file that is invalid, or names a source or sink
that cannot be built, leaves everything running as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import platform
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from pydantic import BaseModel

from forwarder import metrics, systemd
from forwarder.delivery import SinkWorker
from forwarder.health import HealthServer
from forwarder.journal.factory import JOURNAL_FILE as JOURNAL_FILE  # where the tools look for it
from forwarder.journal.factory import make_journal
from forwarder.journal.types import unreachable
from forwarder.logs import register_secrets, scrub, watch_loop
from forwarder.polling import Poller
from forwarder.secrets import collect_secrets
from forwarder.settings import ConfigError, Settings, load_settings
from forwarder.sources import SOURCES
from forwarder.sources.base import SourceConfig
from forwarder.state_lock import StateLock
from sinks.registry import SINKS

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from forwarder.replicas import Replicas

log = structlog.get_logger("forwarder.daemon")
RESTART_ONLY = ("state_dir", "state", "journal", "metrics", "log")  # the rest of the settings apply at a reload


def _tune_gc() -> None:
    """Everything start-up (or a reload) built lives until the next reload: frozen, the cycle
    collector stops re-scanning it on every collection while a backlog drains; a reload
    unfreezes it first, so what the old configuration built can still be collected. The
    thresholds stay at their defaults: httpx leaves each response in a reference cycle with
    its request body, and only frequent young collections free those megabytes promptly."""
    gc.collect()
    gc.freeze()


M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates under contention an arena of its own, and memory
    freed in one arena is never reused by another: the journal thread and the sinks' worker
    threads (S3's gzip and PUTs) each kept their own freed megabytes, raising the peak RSS.
    Two arenas is what ``MALLOC_ARENA_MAX=2`` would set; an operator's own setting wins, and
    other C libraries (musl) are left alone. Called before the first worker thread starts."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


Built = TypeVar("Built")


class BuildError(Exception):
    """A constructor refused what validation let through (httpx refuses a token it cannot put
    in a header, such as ``tök“en``); the message says so without a traceback."""


def build(registry: Mapping[str, tuple[Any, Callable[[str, Any], Built]]], name: str, config: Any) -> Built:
    """The source or sink ``config`` describes, from its registry (``SOURCES`` or ``SINKS``)."""
    try:
        built = registry[config.type][1](name, config)
    except Exception as exc:
        raise BuildError(scrub(f"cannot be built: {type(exc).__name__}: {exc}")) from None
    for warning in config.transport_warnings():  # every start, reload, tool and check builds through here
        log.warning(f"insecure transport: {warning}", component=name, type=config.type)
    return built


def _same(old: BaseModel, new: BaseModel) -> bool:
    """Compares what the operator wrote: generated defaults (a HEC channel) differ per load."""
    return type(old) is type(new) and old.model_dump(exclude_unset=True) == new.model_dump(exclude_unset=True)


class Daemon:
    def __init__(
        self, settings: Settings, config_path: Path | None = None, *, once: bool = False, exclusive: bool = False
    ) -> None:
        """``exclusive``: a state-changing tool (``backfill``) on a PostgreSQL state takes it
        alone, refused while a replica runs (SQLite's flock is exclusive anyway)."""
        self.settings = settings
        self.once = once  # ``run_once``: no next cycle, so logs must not promise one
        self.summary: dict[str, Any] | None = None  # what ``run_once`` did, for the CLI's closing summary
        self.config_path = config_path  # reread on SIGHUP; None means reload is unavailable
        register_secrets(collect_secrets(settings))
        self.journal = make_journal(
            settings.state, settings.state_dir, settings.journal.max_events, settings.journal.max_bytes
        )
        # one process per SQLite state (flock); replicas of a PostgreSQL state share it (forwarder.replicas)
        self.lock = StateLock(settings.state_dir) if settings.state.backend == "sqlite" else None
        self.replicas: Replicas | None = None
        if settings.state.backend == "postgresql":
            from forwarder.journal.postgres.journal import PostgresJournal
            from forwarder.replicas import Replicas

            assert isinstance(self.journal, PostgresJournal)
            self.replicas = Replicas(settings.state, self.journal, self._gained, exclusive=exclusive)
        self.pollers: dict[str, Poller] = {}
        self.workers: dict[str, SinkWorker] = {}
        self.worker_tasks: dict[str, asyncio.Task[None]] = {}
        self.poll_tasks: dict[str, set[asyncio.Task[Any]]] = {}
        self.stopping = asyncio.Event()
        self.started = False
        self.started_at = time.time()
        self.scheduler: AsyncIOScheduler | None = None
        self.health = HealthServer(self)
        self._prune_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        metrics.STATE.bind(self)

    @staticmethod
    def wall_time(loop_time: float | None) -> float | None:
        """Poller timestamps are event-loop (monotonic) time; metrics and health want Unix time."""
        if loop_time is None:
            return None
        return time.time() - (time.monotonic() - loop_time)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        limit_malloc_arenas()
        _tune_gc()
        if self.lock is not None:
            self.lock.acquire()
        if self.replicas is not None:  # before the journal opens: a refused start migrates nothing
            await self.replicas.acquire_lock()
        await self.journal.open()
        settings = self.settings
        self.pollers, self.workers = await self._build(settings, list(settings.sources), list(settings.sinks))
        dropped = await self.journal.register_sinks(self.workers)
        if dropped:
            log.warning("sinks no longer configured; their journal offsets were removed", sinks=dropped)
        if self.replicas is not None:
            await self.replicas.start(self._units())
        for name in self.workers:
            self._start_worker(name)
        self._prune_task = asyncio.create_task(self._prune_loop(), name="prune")
        self.started = True
        log.info(
            "audit-forwarder started",
            sources=sorted(self.pollers),
            sinks=sorted(self.workers),
            state=str(self.journal.path),
        )

    async def _build(
        self, settings: Settings, sources: list[str], sinks: list[str]
    ) -> tuple[dict[str, Poller], dict[str, SinkWorker]]:
        """Everything is built before anything running is touched (see ``BuildError``): a
        reload that fails here changes nothing, and start-up names the culprit instead of dying
        with a traceback. What was built is closed before the ConfigError: httpx clients hold
        connection pools. Constructors run in a thread: each httpx client loads the CA bundle
        (50-190 ms), which on the loop stalled a running daemon's sinks at every reload."""
        pollers: dict[str, Poller] = {}
        workers: dict[str, SinkWorker] = {}
        problems: list[str] = []
        for name in sources:
            try:
                source = await asyncio.to_thread(build, SOURCES, name, settings.sources[name])
                owns = None if self.replicas is None else self.replicas.source_owner(name)
                pollers[name] = Poller(source, self.journal, self.notify_sinks, once=self.once, owns=owns)
            except BuildError as exc:
                problems.append(f"sources.{name}: {exc}")
        for name in sinks:
            sink_cfg = settings.sinks[name]
            try:
                sink = await asyncio.to_thread(build, SINKS, name, sink_cfg)
                owner = None if self.replicas is None else self.replicas.sink_owner(name)
                workers[name] = SinkWorker(name, sink, sink_cfg, self.journal, settings.retry, owner)
            except BuildError as exc:
                problems.append(f"sinks.{name}: {exc}")
        if problems:
            closing = [p.source.close() for p in pollers.values()] + [w.sink.close() for w in workers.values()]
            await asyncio.gather(*closing, return_exceptions=True)
            raise ConfigError(self.config_path or "the configuration", problems)
        return pollers, workers

    def _start_worker(self, name: str) -> None:
        self.worker_tasks[name] = asyncio.create_task(self.workers[name].run(), name=f"sink:{name}")

    async def _stop_sources(self, names: list[str]) -> None:
        tasks = [t for name in names for t in self.poll_tasks.pop(name, set())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name in names:
            if self.scheduler is not None and self.scheduler.get_job(name) is not None:
                self.scheduler.remove_job(name)
            poller = self.pollers.pop(name, None)
            if poller is not None:
                with contextlib.suppress(Exception):
                    await poller.source.close()

    async def _stop_sinks(self, names: list[str], timeout_s: float | None = None) -> None:
        """Each worker finishes its in-flight batch (up to shutdown_timeout_s, or ``timeout_s``
        if shorter); what it did not confirm stays journaled after its offset."""
        for name in names:
            self.workers[name].stop()
        tasks = {self.worker_tasks.pop(name): name for name in names if name in self.worker_tasks}
        if tasks:
            grace = self.settings.shutdown_timeout_s
            if timeout_s is not None:
                grace = min(grace, timeout_s)
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, grace))
            for task in pending:
                log.warning("sink did not finish its batch in time; it stays journaled", sink=tasks[task])
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for name in names:
            worker = self.workers.pop(name)
            with contextlib.suppress(Exception):
                await worker.sink.close()

    async def stop(self, sinks_timeout_s: float | None = None) -> None:
        systemd.notify("STOPPING=1")
        await self.health.stop()
        for task in (self._watchdog_task, self._prune_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._stop_sources(list(self.pollers))
        await self._stop_sinks(list(self.workers), sinks_timeout_s)
        with contextlib.suppress(Exception):
            await self.journal.prune()
        self.started = False
        if self.replicas is not None:
            await self.replicas.stop()
        await self.journal.close()
        if self.lock is not None:
            self.lock.release()
        log.info("audit-forwarder stopped")

    def _units(self) -> list[str]:
        from forwarder.replicas import units_of

        return units_of({n: p.source.organizations() for n, p in self.pollers.items()}, self.workers)

    def _gained(self, units: set[str]) -> None:
        """Leases just taken (a takeover, a rebalance): the sinks look at once, and a source
        with a gained organization polls now rather than at its next interval."""
        self.notify_sinks()
        if self.once or self.scheduler is None:
            return
        for name in {u.split("/")[1] for u in units if u.startswith("source/")}:
            if name in self.pollers:
                self._spawn(self.poll(name), f"poll:{name}")

    def notify_sinks(self) -> None:
        for worker in self.workers.values():
            worker.notify()

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                await self.journal.prune()
            except Exception as exc:
                if unreachable(exc):  # the renewals and the workers say so already, once
                    continue
                log.exception("journal prune failed")

    async def poll(self, name: str) -> bool:
        poller = self.pollers.get(name)
        if poller is None:  # removed by a reload after this run was scheduled
            return True
        task = asyncio.current_task()
        tasks = self.poll_tasks.setdefault(name, set())
        if task is not None:
            tasks.add(task)
        try:
            return await poller.poll()
        finally:
            if task is not None:
                tasks.discard(task)
            for worker in self.workers.values():
                worker.flush()

    # --- modes ---------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)

    def _schedule(self, name: str, cfg: SourceConfig) -> None:
        assert self.scheduler is not None
        self.scheduler.add_job(
            self.poll,
            "interval",
            args=[name],
            seconds=cfg.interval_s,
            jitter=cfg.jitter_s,
            max_instances=1,
            coalesce=True,
            id=name,
        )
        # the first poll starts at once instead of one interval after start-up
        self._spawn(self.poll(name), f"poll:{name}")

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run_forever(self) -> None:
        watch_loop()
        self._install_signals()
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload(), "reload"))
        await self.start()
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # here: ``once`` needs no scheduler

        self.scheduler = AsyncIOScheduler()
        self.scheduler.start()
        for name, cfg in self.settings.sources.items():
            self._schedule(name, cfg)
        if self.settings.metrics.enabled:
            await self.health.start()
        systemd.notify("READY=1", f"STATUS={self._status_line()}")
        interval = systemd.watchdog_interval()
        if interval:
            self._watchdog_task = asyncio.create_task(self._watchdog(interval), name="watchdog")
        try:
            await self.stopping.wait()
            log.info("stop requested; finishing in-flight batches")
        finally:
            self.scheduler.shutdown(wait=False)
            await self.stop()

    async def _watchdog(self, interval: float) -> None:
        # Pinging from the loop itself: a blocked or wedged loop stops the pings and systemd restarts us.
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _status_line(self) -> str:
        return f"{len(self.pollers)} sources, {len(self.workers)} sinks"

    # --- reload --------------------------------------------------------------------------------
    async def reload(self) -> bool:
        """SIGHUP: reread the configuration file; on any problem keep running the old one."""
        async with self._reload_lock:
            systemd.notify("RELOADING=1", systemd.monotonic_usec())
            gc.unfreeze()  # what the old configuration built may now be garbage, cycles included
            try:
                return await self._reload()
            except Exception:
                log.exception("configuration reload failed; the running configuration stays in force")
                return False
            finally:
                _tune_gc()
                systemd.notify("READY=1", f"STATUS={self._status_line()}")

    async def _reload(self) -> bool:
        if self.config_path is None:
            log.error("cannot reload: the configuration file's path is unknown; restart instead")
            return False
        try:
            await self._apply(await asyncio.to_thread(load_settings, self.config_path))
        except ConfigError as exc:
            log.error(
                "configuration reload refused; the running configuration stays in force",
                config=str(exc.path), problems=exc.problems,
            )  # fmt: skip
            return False
        return True

    async def _apply(self, new: Settings) -> None:
        for key in RESTART_ONLY:
            if getattr(new, key) != getattr(self.settings, key):
                log.warning("this setting changes only on restart; keeping the running value", setting=key)
        new = new.model_copy(update={k: getattr(self.settings, k) for k in RESTART_ONLY})
        register_secrets(collect_secrets(new))
        old = self.settings
        retry_changed = new.retry != old.retry
        gone_sources = [n for n in old.sources if n not in new.sources or not _same(old.sources[n], new.sources[n])]
        gone_sinks = [
            n for n in old.sinks
            if retry_changed or n not in new.sinks or not _same(old.sinks[n], new.sinks[n])
        ]  # fmt: skip
        added_sources = [n for n in new.sources if n in gone_sources or n not in old.sources]
        added_sinks = [n for n in new.sinks if n in gone_sinks or n not in old.sinks]
        pollers, workers = await self._build(new, added_sources, added_sinks)
        self.settings = new
        await self._stop_sources(gone_sources)
        await self._stop_sinks(gone_sinks)
        self.workers.update(workers)
        await self.journal.register_sinks(self.workers)
        for name in added_sinks:
            self._start_worker(name)
        self.pollers.update(pollers)
        for name in added_sources:
            if self.scheduler is not None:
                self._schedule(name, new.sources[name])
        if self.replicas is not None:
            self.replicas.set_units(self._units())
        log.info(
            "configuration reloaded",
            sources_stopped=sorted(set(gone_sources) - set(added_sources)),
            sources_started=sorted(set(added_sources) - set(gone_sources)),
            sources_restarted=sorted(set(gone_sources) & set(added_sources)),
            sinks_stopped=sorted(set(gone_sinks) - set(added_sinks)),
            sinks_started=sorted(set(added_sinks) - set(gone_sinks)),
            sinks_rebuilt=sorted(set(gone_sinks) & set(added_sinks)),
        )

    async def run_once(self, timeout_s: float = 600.0) -> int:
        """Poll every source once, deliver everything, stop. Exit code 1 if anything failed.

        ``timeout_s`` bounds the whole run: the polls, the wait for the sinks and the shutdown,
        whose in-flight batches get what is left of it (at most ``shutdown_timeout_s``), so cron
        can rely on it. What was not confirmed by then stays journaled for the next run."""
        watch_loop()
        began = time.monotonic()
        deadline = began + timeout_s
        self._install_signals()
        await self.start()
        ok = True
        timed_out = False
        workers = dict(self.workers)
        try:
            polls = [asyncio.create_task(self.poll(name)) for name in self.pollers]
            done = await self._race(asyncio.gather(*polls), deadline - time.monotonic())
            ok = bool(done) and all(done)
            timed_out = done is None and not self.stopping.is_set()
            while not self.stopping.is_set():
                active = [w for w in self.workers.values() if w.status.state != "stopped"]
                if all(w.caught_up for w in active):
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                await asyncio.sleep(0.05)
            for name, worker in self.workers.items():
                if worker.status.state == "stopped" or not worker.caught_up:
                    log.error("sink did not deliver everything", sink=name, **worker.describe())
                    ok = False
                if worker.status.dead_lettered:
                    ok = False
            sources = self._sources_summary()
            states = {name: worker.status.state for name, worker in workers.items()}  # shutdown makes them idle
        finally:
            await self.stop(sinks_timeout_s=deadline - time.monotonic())
        if timed_out:
            log.error("once: the timeout ended the run; what was not delivered stays journaled", timeout_s=timeout_s)
        self.summary = {
            "ok": ok and not timed_out,
            "timed_out": timed_out,
            "interrupted": self.stopping.is_set(),
            "timeout_s": timeout_s,
            "elapsed_s": round(time.monotonic() - began, 3),
            "sources": sources,
            "sinks": [self._sink_summary(name, worker, states[name]) for name, worker in workers.items()],
        }
        return 0 if ok and not timed_out else 1

    def _sources_summary(self) -> list[dict[str, Any]]:
        return [
            {
                "source": name, "organization": org,
                "state": "unfinished" if status.state == "polling" else status.state,
                "events": status.events, "pages": status.pages, "quarantined": status.quarantined,
                "failures": status.failures, "error": status.error and scrub(status.error),  # printed, not logged
            }
            for name, poller in self.pollers.items()
            for org, status in poller.status.items()
        ]  # fmt: skip

    def _sink_summary(self, name: str, worker: SinkWorker, state: str) -> dict[str, Any]:
        return {
            "sink": name, "state": "stopped" if worker.status.state == "stopped" else state,
            "delivered": worker.status.delivered,
            "pending": max(0, self.journal.head - worker.offset), "dead_lettered": worker.status.dead_lettered,
            "filtered": worker.status.filtered, "error": worker.status.error and scrub(worker.status.error),
        }  # fmt: skip

    async def _race(self, work: Any, timeout_s: float) -> Any:
        stop = asyncio.create_task(self.stopping.wait())
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task, stop}, timeout=max(0.0, timeout_s), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
