"""The daemon: wires configuration, journal, pollers and sink workers, and runs them.

``run_forever`` is the service (APScheduler polls each source on its interval with jitter;
one worker task per sink drains the journal); ``forwarder.once`` runs one cycle of every
source followed by delivering everything (for cron and the demo) on the same lifecycle.
Shutdown stops polling first, then gives each sink up to ``shutdown_timeout_s`` to finish its
in-flight batch; whatever is not confirmed stays in the journal for the next start.

``run_forever`` also serves metrics and health (``forwarder.health``, given the daemon as a
read-only ``forwarder.status.StatusView``), talks to systemd (``forwarder.systemd``) and
reloads the configuration on SIGHUP (``reload``, planned by ``forwarder.reload``): sources and
sinks whose configuration changed are replaced, the others keep running, and the journal
and cursors are never touched, so a reload cannot lose or repeat anything a restart would not.
A reload applies completely or not at all: a file that is invalid, or names a source or sink
that cannot be built, leaves everything running as it was.

Secrets kept in AWS (``<field>_from``) rotate without a restart: ``refresh_secrets`` (when:
``forwarder.secret_refresh``) applies freshly read values through the same reload path, so only
the sources and sinks whose secret changed are replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from forwarder import memory, metrics, secret_stores, systemd
from forwarder.build import BuildError, build
from forwarder.delivery import SinkWorker
from forwarder.health import HealthServer
from forwarder.journal.factory import make_journal
from forwarder.logs import log_task_failure, watch_loop
from forwarder.polling import Poller
from forwarder.pruner import Pruner
from forwarder.redaction import register_secrets
from forwarder.reload import RESTART_ONLY, ReloadPlan, plan
from forwarder.replicas import StateOwner
from forwarder.routing import unknown_sources_warning
from forwarder.secret_refresh import SecretRefresh
from forwarder.secrets import collect_secrets
from forwarder.settings import ConfigError, Settings, load_settings, reread_secrets
from forwarder.sources import SOURCES
from forwarder.sources.base import SourceConfig
from sinks.registry import SINKS

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = structlog.get_logger("forwarder.daemon")


class Daemon:
    def __init__(
        self, settings: Settings, config_path: Path | None = None, *, once: bool = False, exclusive: bool = False
    ) -> None:
        """``exclusive``: a state-changing tool (``backfill``) on a PostgreSQL state takes it
        alone, refused while a replica runs (SQLite's flock is exclusive anyway)."""
        self.settings = settings
        self.once = once  # ``forwarder.once``: no next cycle, so logs must not promise one
        self.config_path = config_path  # reread on SIGHUP; None means reload is unavailable
        register_secrets(collect_secrets(settings))
        self.journal = make_journal(
            settings.state, settings.state_dir, settings.journal.max_events, settings.journal.max_bytes
        )
        self.owner = StateOwner(settings.state, settings.state_dir, self.journal, self._gained, exclusive=exclusive)
        self.replicas = self.owner.replicas  # None on a SQLite state
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
        self._reload_pending = False
        self._background: set[asyncio.Task[Any]] = set()
        self._secrets_task: asyncio.Task[None] | None = None
        self._pruner = Pruner(
            self.journal,
            lambda: [p.source for p in self.pollers.values()],
            lambda: self.settings.evidence.ledger_retention_days,
        )
        self._secret_refresh = SecretRefresh(
            lambda: self.settings.secrets.refresh_s, lambda: bool(self.settings.stored_secrets), self.refresh_secrets
        )

    @staticmethod
    def wall_time(loop_time: float | None) -> float | None:
        """Poller timestamps are event-loop (monotonic) time; metrics and health want Unix time."""
        if loop_time is None:
            return None
        return time.time() - (time.monotonic() - loop_time)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        memory.limit_malloc_arenas()
        memory.pin_mmap_threshold()
        memory.tune_gc()
        await self.owner.acquire()
        await self.journal.open()
        settings = self.settings
        self.pollers, self.workers = await self._build(settings, list(settings.sources), list(settings.sinks))
        dropped = await self.journal.register_sinks(self.workers)
        if dropped:
            log.warning("sinks no longer configured; their journal offsets were removed", sinks=dropped)
        await self.owner.start(self.pollers, self.workers)
        for name in self.workers:
            self._start_worker(name)
        self._prune_task = asyncio.create_task(self._pruner.run(), name="prune")
        self.started = True
        log.info("audit-forwarder started", sources=sorted(self.pollers), sinks=sorted(self.workers),
                 state=str(self.journal.path))  # fmt: skip

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
                owns = self.owner.source_owner(name)
                pollers[name] = Poller(source, self.journal, self.notify_sinks, once=self.once, owns=owns)
            except BuildError as exc:
                problems.append(f"sources.{name}: {exc}")
        for name in sinks:
            sink_cfg = settings.sinks[name]
            try:
                sink = await asyncio.to_thread(build, SINKS, name, sink_cfg)
                if warning := unknown_sources_warning(sink_cfg.filter, settings.sources):
                    log.warning(warning, sink=name)
                owner = self.owner.sink_owner(name)
                workers[name] = SinkWorker(name, sink, sink_cfg, self.journal, settings.retry, owner)
            except BuildError as exc:
                problems.append(f"sinks.{name}: {exc}")
        if problems:
            await close_built(pollers, workers)
            raise ConfigError(self.config_path or "the configuration", problems)
        return pollers, workers

    def _start_worker(self, name: str) -> None:
        self.worker_tasks[name] = asyncio.create_task(self.workers[name].run(), name=f"sink:{name}")

    async def _stop_sources(self, names: list[str]) -> None:
        """Unscheduled and unlisted first, then its polls cancelled, then the source closed: a
        poll started while the others were being cancelled (the scheduler, a lease just gained)
        used the closed client and logged a traceback."""
        pollers = []
        for name in names:
            if self.scheduler is not None and self.scheduler.get_job(name) is not None:
                self.scheduler.remove_job(name)
            poller = self.pollers.pop(name, None)
            if poller is not None:
                pollers.append(poller)
        tasks = [t for name in names for t in self.poll_tasks.pop(name, set())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for poller in pollers:
            with contextlib.suppress(Exception):
                await poller.source.close()

    async def _stop_sinks(self, names: list[str], timeout_s: float | None = None) -> None:
        """Each worker finishes its in-flight batch (up to shutdown_timeout_s, or ``timeout_s``
        if shorter); what it did not confirm stays journaled after its offset."""
        for name in names:
            self.workers[name].stop()
        tasks = {self.worker_tasks.pop(name): name for name in names if name in self.worker_tasks}
        if tasks:
            grace = min(self.settings.shutdown_timeout_s, timeout_s if timeout_s is not None else float("inf"))
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
        for task in (self._watchdog_task, self._prune_task, self._secrets_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._stop_sources(list(self.pollers))
        await self._stop_sinks(list(self.workers), sinks_timeout_s)
        with contextlib.suppress(Exception):
            await self.journal.prune()
        self.started = False
        await self.owner.stop()
        await self.journal.close()
        self.owner.release()
        log.info("audit-forwarder stopped")

    def _gained(self, units: set[str]) -> None:
        """Leases just taken (a takeover, a rebalance): the sinks look at once, and a source
        with a gained organization polls now rather than at its next interval."""
        self.notify_sinks()
        for name in {u.split("/")[1] for u in units if u.startswith("source/")} & set(self.pollers):
            if self.scheduler is not None and not self.once:
                self._spawn(self.poll(name), f"poll:{name}")

    def notify_sinks(self) -> None:
        for worker in self.workers.values():
            worker.notify()

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
    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)

    def _schedule(self, name: str, cfg: SourceConfig) -> None:
        assert self.scheduler is not None
        self.scheduler.add_job(self._tick, "interval", args=[name], seconds=cfg.interval_s, jitter=cfg.jitter_s,
                               max_instances=1, coalesce=True, id=name)  # fmt: skip
        # the first poll starts at once instead of one interval after start-up
        self._spawn(self.poll(name), f"poll:{name}")

    async def _tick(self, name: str) -> None:
        """The scheduler's run of a source starts its cycle in a task of its own and returns:
        a cycle still waiting on a slow organization must not make the scheduler skip the next
        one, whose other organizations are due (the poller skips only the busy ones)."""
        self._spawn(self.poll(name), f"poll:{name}")

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(log_task_failure)

    async def run_forever(self) -> None:
        watch_loop()
        self.install_signals()
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._sighup)
        if self.settings.metrics.enabled:  # counting from the first poll; ``once`` serves no /metrics
            metrics.enable()
        if not await self.owner.reachable(self.stopping):  # stopped while its database was out of reach
            return
        await self.start()
        if self._reload_pending:  # a SIGHUP while it waited: the file may have changed since it was read
            self._sighup()
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
            self._watchdog_task = asyncio.create_task(systemd.ping_watchdog(interval), name="watchdog")
        self._secrets_task = asyncio.create_task(self._secret_refresh.run(), name="secrets")
        unregister = secret_stores.on_credentials_refused(self._secret_refresh.refused.set)
        try:
            await self.stopping.wait()
            log.info("stop requested; finishing in-flight batches")
        finally:
            unregister()
            self.scheduler.shutdown(wait=False)
            await self.stop()

    def _sighup(self) -> None:
        """A reload needs the journal open: a SIGHUP while waiting for the database is applied at start."""
        self._reload_pending = not self.started
        if self.started:
            self._spawn(self.reload(), "reload")

    def _status_line(self) -> str:
        return f"{len(self.pollers)} sources, {len(self.workers)} sinks"

    # --- reload --------------------------------------------------------------------------------
    async def reload(self) -> bool:
        """SIGHUP: reread the configuration file; on any problem keep running the old one."""
        if self.config_path is None:
            log.error("cannot reload: the configuration file's path is unknown; restart instead")
            return False
        async with self._reload_lock, self._reloading():
            try:
                stopped = frozenset(n for n, w in self.workers.items() if w.status.state == "stopped")
                new = await asyncio.to_thread(load_settings, self.config_path)
                await self._apply(plan(self.settings, new, stopped))
            except ConfigError as exc:
                log.error("configuration reload refused; the running configuration stays in force",
                          config=str(exc.path), problems=exc.problems)  # fmt: skip
                return False
            except Exception:
                log.exception("configuration reload failed; the running configuration stays in force")
                return False
            return True

    @contextlib.asynccontextmanager
    async def _reloading(self) -> AsyncIterator[None]:
        """Around a reload or a secret rotation: systemd told, and what the old configuration
        built unfrozen so it can be collected, then what the new one built frozen."""
        systemd.notify("RELOADING=1", systemd.monotonic_usec())
        memory.thaw()
        try:
            yield
        finally:
            memory.tune_gc()
            systemd.notify("READY=1", f"STATUS={self._status_line()}")

    # --- stored secrets ---------------------------------------------------------------------------
    async def refresh_secrets(self) -> bool:
        """Reads every stored secret again; if one changed, replaces the sources and sinks using
        it through the reload path (sinks finish their in-flight batch). True if it applied one.
        A secret that cannot be read leaves the running values in force, loudly."""
        async with self._reload_lock:
            try:
                fresh = await asyncio.to_thread(reread_secrets, self.settings)
            except ConfigError as exc:
                log.error("stored secrets could not be read again; the running values stay in force",
                          problems=exc.problems)  # fmt: skip
                return False
            except Exception:
                log.exception("stored secrets could not be read again; the running values stay in force")
                return False
            # the running value of every restart-only setting, as a reload kept them: only secrets differ
            change = plan(self.settings, fresh.model_copy(update={k: getattr(self.settings, k) for k in RESTART_ONLY}))
            if change.empty:
                log.debug("stored secrets unchanged", secrets=sorted(self.settings.stored_secrets))
                return False
            async with self._reloading():
                try:
                    await self._apply(change, "stored secrets changed; their users were rebuilt")
                except Exception:
                    log.exception("applying the rotated secrets failed; the running configuration stays in force")
                    return False
            return True

    async def _apply(self, change: ReloadPlan, event: str = "configuration reloaded") -> None:
        new = change.settings
        register_secrets(collect_secrets(new))
        pollers, workers = await self._build(new, change.added_sources, change.added_sinks)
        try:  # the one step that needs the state's database: before anything running changes
            await self.journal.register_sinks([*self.workers, *workers])
        except Exception:
            await close_built(pollers, workers)
            raise
        self.settings = new
        await self._stop_sources(change.gone_sources)
        await self._stop_sinks(change.gone_sinks)
        self.workers.update(workers)
        try:
            await self.journal.register_sinks(self.workers)
        except Exception as exc:  # they only hold pruning back until the next reload or start
            log.warning("the removed sinks' offsets stay until the next reload or start", error=str(exc))
        for name in change.added_sinks:
            self._start_worker(name)
        self.pollers.update(pollers)
        for name in change.added_sources:
            if self.scheduler is not None:
                self._schedule(name, new.sources[name])
        self.owner.reconfigured(self.pollers, self.workers)
        change.log_applied(event)


async def close_built(pollers: dict[str, Poller], workers: dict[str, SinkWorker]) -> None:
    """What was built for a refused start or reload: httpx clients hold connection pools."""
    closing = [p.source.close() for p in pollers.values()] + [w.sink.close() for w in workers.values()]
    await asyncio.gather(*closing, return_exceptions=True)
