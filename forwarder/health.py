"""``/metrics``, ``/healthz`` and ``/readyz`` over a tiny HTTP/1.1 server on the daemon's loop.

Hand-written on asyncio sockets rather than a server library, decided again after a local client
exhausted the daemon's descriptors (one idle connection each, unlimited): what that needed is a
cap on connections held at once, a deadline for the headers and for the whole exchange, a cap on
header bytes, and an ``accept()`` that runs out of descriptors without a traceback. aiohttp's
server has no cap on connections held at once and would add half a dozen packages; uvicorn's
``limit_concurrency`` answers 503 only after accepting (the descriptor is already spent) and
brings h11 and an ASGI layer; prometheus-client's own server is ``http.server`` with a thread
per connection and no read deadline. The asyncio-based ones accept through asyncio's server,
whose ``EMFILE`` path is the traceback we had. Three read-only GETs with ``Connection: close``
fit in the ~100 lines of ``HealthServer`` with every bound explicit; the handlers only read
in-memory state (plus two small journal queries on the journal's own thread), so a scrape never
blocks polling or delivery.

``/healthz`` answers 200 while the loop runs (a hung loop cannot answer: that is the signal).
``/readyz`` answers 200 only when the configuration is loaded, the journal is writable, no
sink stopped on an error retrying cannot fix or has been failing longer than
``metrics.sink_failing_threshold_s``, and no organization has been failing longer than
``metrics.source_failing_threshold_s``; otherwise 503 with the reasons. Both carry the same
JSON body: every source's organizations, every sink's state (``failing_since``: since when
nothing was confirmed), and while the journal is full the sinks holding it (``held_by``). The body is scrubbed of
configured secrets, because error texts from vendors and receivers end up in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from dataclasses import asdict
from typing import Any

import orjson
import structlog

from forwarder import metrics
from forwarder.logs import THROTTLE
from forwarder.redaction import scrub_value
from forwarder.status import StatusView

log = structlog.get_logger("forwarder.health")
MAX_CONNECTIONS = 16  # a scraper and a health check or two; more wait in the listen backlog
BACKLOG = 64
HEADER_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0
MAX_HEADER_BYTES = 8 * 1024
ACCEPT_BACKOFF_S = (0.1, 2.0)  # first and longest pause after accept() failed
REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def report(daemon: StatusView) -> tuple[bool, dict[str, Any]]:
    """Readiness and the state behind it, for ``/readyz``, ``/healthz`` and tests."""
    problems: list[str] = []
    threshold = daemon.settings.metrics.source_failing_threshold_s
    if not daemon.started:
        problems.append("the daemon has not finished starting")
    else:
        problems.extend(daemon.journal.problems())
        if daemon.replicas is not None:  # a PostgreSQL state: is it reachable, are the leases renewed
            problems.extend(daemon.replicas.problems())
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
    sink_threshold = daemon.settings.metrics.sink_failing_threshold_s
    for name, worker in list(daemon.workers.items()):
        sinks[name] = state = worker.describe()
        if worker.status.state == "stopped":
            problems.append(f"sink {name} stopped: {worker.status.error}")
        elif (failing := worker.status.failing_for()) is not None and failing > sink_threshold:
            problems.append(
                f"sink {name} has been failing for over {sink_threshold:g}s, {state['lag_events']} events "
                f"behind: {worker.status.error}"
            )
    events, size = daemon.journal.size
    full = daemon.journal.is_full()
    body = {
        "status": "ready" if not problems else "unready",
        "problems": problems,
        "uptime_s": round(time.time() - daemon.started_at, 3),
        "config": str(daemon.config_path) if daemon.config_path else None,
        "journal": {"events": events, "bytes": size, "full": full, **({"held_by": _holding(sinks)} if full else {})},
        "sources": sources,
        "sinks": sinks,
    }
    if daemon.replicas is not None:
        body["leases"] = daemon.replicas.describe()
    return not problems, body


def _holding(sinks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """While the journal is full polling stands still, and the vendors' retention does not:
    which sinks hold it back, most behind first. Not a readiness problem by itself (a backlog
    draining into healthy sinks is backpressure doing its job); a sink failing is one."""
    behind = sorted((s for s in sinks.items() if s[1]["lag_events"] > 0), key=lambda s: -s[1]["lag_events"])
    return [{"sink": name, "lag_events": state["lag_events"], "error": state["error"]} for name, state in behind]


class HealthServer:
    """Bounded so that no client can starve the daemon: at most ``MAX_CONNECTIONS`` at once
    (the rest wait in the kernel's listen backlog, costing the daemon no descriptor), headers
    within ``HEADER_TIMEOUT_S`` and ``MAX_HEADER_BYTES``, the whole exchange within
    ``REQUEST_TIMEOUT_S``. An ``accept()`` that fails for lack of descriptors or memory is
    logged (rate-limited, no traceback) and accepting pauses with a growing back-off."""

    def __init__(self, daemon: StatusView) -> None:
        self.daemon = daemon
        self.sockets: list[socket.socket] = []
        self.address: str | None = None  # host:port actually listened on (port 0: the system's choice)
        self._accepting: set[asyncio.Task[None]] = set()
        self._serving: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        host, port = self.daemon.settings.metrics.host_port
        try:
            self.sockets = await _listen(host, port)
        except OSError as exc:
            # Not fatal: delivering audit logs matters more than being scraped.
            log.error(
                "cannot serve metrics and health; carrying on without",
                listen=f"{host}:{port}",
                error=exc.strerror or str(exc),
            )
            return
        bound_host, bound_port = self.sockets[0].getsockname()[:2]
        self.address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        for sock in self.sockets:
            task = asyncio.create_task(self._accept(sock, self._slots), name="health:accept")
            self._accepting.add(task)
        log.info(
            "serving /metrics, /healthz and /readyz",
            listen=self.address,
            port=bound_port,
            max_connections=MAX_CONNECTIONS,
        )

    async def stop(self) -> None:
        tasks = [*self._accepting, *self._serving]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self._accepting.clear()
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    async def _accept(self, sock: socket.socket, slots: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        backoff = ACCEPT_BACKOFF_S[0]
        while True:
            await slots.acquire()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                slots.release()
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN):
                    continue  # the client gave up before we took it: nothing to do
                if THROTTLE.admit(("forwarder.health", "accept failed"), "warning"):
                    log.warning(
                        "cannot accept a metrics or health connection; pausing accepts",
                        error=exc.strerror or str(exc),
                        retry_in_s=backoff,
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, ACCEPT_BACKOFF_S[1])
                continue
            backoff = ACCEPT_BACKOFF_S[0]
            task = asyncio.create_task(self._serve(conn), name="health:connection")
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                reader = asyncio.StreamReader(limit=MAX_HEADER_BYTES)
                protocol = asyncio.StreamReaderProtocol(reader)
                transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn)
                writer = asyncio.StreamWriter(transport, protocol, reader, loop)
                try:
                    async with asyncio.timeout(HEADER_TIMEOUT_S):
                        head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    method, answer = "GET", (431, "text/plain", b"request headers too large\n")
                else:
                    method, _, rest = head.decode("latin-1").partition(" ")
                    path = rest.partition(" ")[0].partition("?")[0]
                    answer = await self._route(method, path)
                status, content_type, body = answer
                writer.write(
                    f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + (body if method != "HEAD" else b"")
                )
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            pass  # a client that went away, stalled or sent nothing: just hang up
        except Exception:
            if THROTTLE.admit(("forwarder.health", "endpoint failed"), "error"):
                log.exception("health endpoint failed")
        finally:
            await _hang_up(conn, writer)

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        if path == "/metrics":
            content_type, scraped = await metrics.render(self.daemon)
            return 200, content_type, scraped
        if path in ("/healthz", "/readyz"):
            ready, body = report(self.daemon)
            # scrubbed before encoding: JSON escapes a secret holding " or \ out of scrub's reach
            text = orjson.dumps(scrub_value(body), option=orjson.OPT_INDENT_2).decode() + "\n"
            status = 200 if path == "/healthz" or ready else 503
            return status, "application/json", text.encode()
        return 404, "text/plain", b"try /metrics, /healthz or /readyz\n"


async def _listen(host: str, port: int) -> list[socket.socket]:
    """One listening socket per address ``host`` resolves to; with port 0 the first gets the
    system's choice and the others the same port."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def _hang_up(conn: socket.socket, writer: asyncio.StreamWriter | None) -> None:
    """Closes gracefully when the client reads, and aborts when it does not: a slot must never
    wait on a peer that stopped reading."""
    if writer is None:
        conn.close()
        return
    writer.close()
    try:
        with contextlib.suppress(Exception):  # reset by the peer, or it stopped reading
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
    finally:
        writer.transport.abort()  # a no-op once closed
