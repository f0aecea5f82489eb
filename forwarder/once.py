"""``once``: one cycle of every source, then delivering everything, then stop (cron, the demo).

Built on the daemon's own lifecycle (``start``, ``poll``, ``stop``), so it journals, delivers
and shuts down exactly as the service does; what it adds is the deadline over the whole run
and the closing summary the CLI prints. What was not confirmed by the end stays journaled for
the next run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from forwarder.daemon import Daemon
from forwarder.delivery import SinkWorker
from forwarder.logs import watch_loop
from forwarder.redaction import scrub

log = structlog.get_logger("forwarder.once")


class OnceRun:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.summary: dict[str, Any] | None = None  # what the run did, for the CLI's closing summary

    async def run(self, timeout_s: float = 600.0) -> int:
        """Poll every source once, deliver everything, stop. Exit code 1 if anything failed.

        ``timeout_s`` bounds the whole run: the polls, the wait for the sinks and the shutdown,
        whose in-flight batches get what is left of it (at most ``shutdown_timeout_s``), so cron
        can rely on it. What was not confirmed by then stays journaled for the next run."""
        daemon = self.daemon
        watch_loop()
        began = time.monotonic()
        deadline = began + timeout_s
        daemon.install_signals()
        await daemon.start()
        ok = True
        timed_out = False
        workers = dict(daemon.workers)
        try:
            polls = [asyncio.create_task(daemon.poll(name)) for name in daemon.pollers]
            done = await self._race(asyncio.gather(*polls), deadline - time.monotonic())
            ok = bool(done) and all(done)
            timed_out = done is None and not daemon.stopping.is_set()
            for worker in daemon.workers.values():  # everything now, even what a sink would let wait
                worker.flush(force=True)
            while not daemon.stopping.is_set():
                active = [w for w in daemon.workers.values() if w.status.state != "stopped"]
                if all(w.caught_up for w in active):
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                await asyncio.sleep(0.05)
            for name, worker in daemon.workers.items():
                if worker.status.state == "stopped" or not worker.caught_up:
                    log.error("sink did not deliver everything", sink=name, **worker.describe())
                    ok = False
                if worker.status.dead_lettered:
                    ok = False
            sources = self._sources_summary()
            states = {name: worker.status.state for name, worker in workers.items()}  # shutdown makes them idle
        finally:
            await daemon.stop(sinks_timeout_s=deadline - time.monotonic())
        if timed_out:
            log.error("once: the timeout ended the run; what was not delivered stays journaled", timeout_s=timeout_s)
        self.summary = {
            "ok": ok and not timed_out,
            "timed_out": timed_out,
            "interrupted": daemon.stopping.is_set(),
            "timeout_s": timeout_s,
            "elapsed_s": round(time.monotonic() - began, 3),
            "sources": sources,
            "sinks": [self._sink_summary(name, worker, states[name]) for name, worker in workers.items()],
        }
        return 0 if ok and not timed_out else 1

    def _sources_summary(self) -> list[dict[str, Any]]:
        return [
            {
                "source": name,
                "organization": org,
                "state": "unfinished" if status.state == "polling" else status.state,
                "events": status.events,
                "pages": status.pages,
                "quarantined": status.quarantined,
                "failures": status.failures,
                "error": status.error and scrub(status.error),  # printed, not logged
            }
            for name, poller in self.daemon.pollers.items()
            for org, status in poller.status.items()
        ]

    def _sink_summary(self, name: str, worker: SinkWorker, state: str) -> dict[str, Any]:
        return {
            "sink": name,
            "state": "stopped" if worker.status.state == "stopped" else state,
            "delivered": worker.status.delivered,
            "pending": max(0, self.daemon.journal.head - worker.offset),
            "dead_lettered": worker.status.dead_lettered,
            "filtered": worker.status.filtered,
            "error": worker.status.error and scrub(worker.status.error),
        }

    async def _race(self, work: Any, timeout_s: float) -> Any:
        """``work``'s result, or None when the deadline or a stop request came first."""
        stop = asyncio.create_task(self.daemon.stopping.wait())
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task, stop}, timeout=max(0.0, timeout_s), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
