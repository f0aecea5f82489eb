"""``/metrics``, ``/healthz`` and ``/readyz`` over a tiny HTTP/1.1 server on the daemon's loop.

``asyncio.start_server`` rather than a web framework: three read-only GETs do not justify a
dependency, and every handler only reads in-memory state (plus two small journal queries that
run on the journal's own thread), so a scrape never blocks polling or delivery.

``/healthz`` answers 200 while the loop runs (a hung loop cannot answer: that is the signal).
``/readyz`` answers 200 only when the configuration is loaded, the journal is writable, no
sink stopped on an error retrying cannot fix, and no organization has been failing longer
than ``metrics.source_failing_threshold_s``; otherwise 503 with the reasons. Both carry the
same JSON body: every source's organizations and every sink's state. The body is scrubbed of
configured secrets, because error texts from vendors and receivers end up in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from forwarder import metrics
from forwarder.logs import scrub_value

if TYPE_CHECKING:
    from forwarder.daemon import Daemon

log = structlog.get_logger("forwarder.health")
READ_TIMEOUT_S = 5.0
MAX_HEADER_BYTES = 16 * 1024
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def report(daemon: Daemon) -> tuple[bool, dict[str, Any]]:
    """Readiness and the state behind it, for ``/readyz``, ``/healthz`` and tests."""
    problems: list[str] = []
    threshold = daemon.settings.metrics.source_failing_threshold_s
    journal_path = daemon.journal.path
    if not daemon.started:
        problems.append("the daemon has not finished starting")
    elif not (os.access(journal_path, os.W_OK) and os.access(journal_path.parent, os.W_OK)):
        problems.append(f"the journal {journal_path} is not writable")
    sources: dict[str, dict[str, Any]] = {}
    for name, poller in list(daemon.pollers.items()):
        orgs = sources.setdefault(name, {})
        for org, status in list(poller.status.items()):
            state = asdict(status)
            state["last_success"] = daemon.wall_time(status.last_success)
            state["failing_since"] = daemon.wall_time(status.failing_since)
            orgs[org] = state
            since = state["failing_since"]
            if since is not None and time.time() - since > threshold:
                problems.append(f"source {name} organization {org} has been failing for over {threshold:g}s")
    sinks: dict[str, dict[str, Any]] = {}
    for name, worker in list(daemon.workers.items()):
        sinks[name] = worker.describe()
        if worker.status.state == "stopped":
            problems.append(f"sink {name} stopped: {worker.status.error}")
    events, size = daemon.journal.size
    body = {
        "status": "ready" if not problems else "unready",
        "problems": problems,
        "uptime_s": round(time.time() - daemon.started_at, 3),
        "config": str(daemon.config_path) if daemon.config_path else None,
        "journal": {"events": events, "bytes": size, "full": daemon.journal.is_full()},
        "sources": sources,
        "sinks": sinks,
    }
    return not problems, body


class HealthServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        host, port = self.daemon.settings.metrics.host_port
        try:
            self.server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        except OSError as exc:
            # Not fatal: delivering audit logs matters more than being scraped.
            log.error("cannot serve metrics and health; carrying on without", listen=f"{host}:{port}",
                      error=exc.strerror or str(exc))  # fmt: skip
            return
        log.info("serving /metrics, /healthz and /readyz", listen=f"{host}:{port}")

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            if len(head) > MAX_HEADER_BYTES:
                return
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            status, content_type, body = await self._route(method, path)
            writer.write(
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:
            log.exception("health endpoint failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await metrics.render()
        if path in ("/healthz", "/readyz"):
            ready, body = report(self.daemon)
            # scrubbed before encoding: JSON escapes a secret holding " or \ out of scrub's reach
            text = orjson.dumps(scrub_value(body), option=orjson.OPT_INDENT_2).decode() + "\n"
            status = 200 if path == "/healthz" or ready else 503
            return status, "application/json", text.encode()
        return 404, "text/plain", b"try /metrics, /healthz or /readyz\n"
