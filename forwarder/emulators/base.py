"""A small HTTP server shared by the vendor emulators.

The emulators exist so that tests, the demo and the benchmark talk to a real HTTP peer
over loopback. They run in their own process (``python -m forwarder.emulators NAME``) so
that what they cost is never counted as the forwarder's. The standard library's threading
server is enough for that and keeps the emulators free of extra dependencies.

Every emulator shares the same control plane under ``/_control``: tests add entries while a
daemon runs, read back the full set to compare with what the sinks received, and queue
faults (any status code, ``Retry-After``, a raw body such as an HTML error page, a delay).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    base_url: str

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return cls(status, json.dumps(payload).encode(), hdrs)


@dataclass
class Fault:
    """The next ``count`` matching requests get this answer instead of the real one."""

    status: int = 503
    count: int = 1
    body: str | None = None
    content_type: str = "application/json"
    retry_after: str | None = None
    delay_s: float = 0.0
    path_contains: str = ""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class Emulator:
    """Routes, entries and faults of one emulated vendor API (or one receiver of a sink).

    **The emulator contract.** What an emulator declares so that the tests, ``demo`` and
    ``python -m forwarder.emulators`` drive it from the registries alone, with no table of
    their own. A new emulator is one module in this folder plus one line in ``EMULATORS``
    (``forwarder/emulators/__init__.py``); the contract suite (``tests/contract/``) then runs
    the source it names against it.

    - ``name``: its key in ``EMULATORS`` and its name on the command line.
    - ``source_type``: the ``type`` of the source that reads this API, a key of
      ``forwarder.sources.SOURCES``. A receiver (Splunk HEC) sets ``sink_type`` instead, a
      key of ``sinks.registry.SINKS``, and implements ``sink_config``.
    - ``source_config(url, organizations)``: a working source entry against this emulator
      served at ``url``: the base URL, the credentials it accepts and the organizations
      (by default the ones it holds, else its default one). Tests add only their timing
      settings; the command line prints it for an operator to paste.
    - ``entry_key(entry)``: the event ``id`` the source gives one entry of
      ``all_entries()`` (which carries the organization as ``_org``). Tests compare what a
      receiver holds with these ids, so this must be the source's own rule.
    - ``generate(count, orgs=..., span_s=..., end_ms=...)``: ``count`` entries per
      organization spread over the ``span_s`` seconds before ``end_ms`` (default now),
      oldest first; ``add_entries`` and ``all_entries`` back ``/_control/entries``.
    - Faults need no code: the control plane answers any status (a 401, a 5xx, a 429 with
      ``Retry-After``) on the next matching requests, which the contract suite relies on;
      the emulator's own 401 for wrong credentials is the vendor's documented answer.
    """

    name = "emulator"
    source_type: ClassVar[str | None] = None
    sink_type: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = []
        self.faults: list[Fault] = []
        self.request_log: list[tuple[float, str, str, int]] = []

    # --- to be provided by each vendor ---------------------------------------------------
    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def all_entries(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def source_config(self, url: str, organizations: list[str] | None = None) -> dict[str, Any]:
        """A source entry (``type`` included) that reads this emulator served at ``url``."""
        raise NotImplementedError

    def sink_config(self, url: str) -> dict[str, Any]:
        """A receiver's counterpart of ``source_config``: a sink entry that writes to it."""
        raise NotImplementedError

    def entry_key(self, entry: dict[str, Any]) -> str:
        """The event id the source of ``source_type`` gives ``entry`` (``_org`` included)."""
        raise NotImplementedError

    def config_entries(self, name: str, url: str) -> dict[str, dict[str, Any]]:
        """What ``python -m forwarder.emulators`` prints to paste under ``sources:`` (or
        ``sinks:``): one entry, unless a source reads one organization only."""
        if self.sink_type is not None:
            return {name: self.sink_config(url)}
        return {name: self.source_config(url)}

    def configure(self, options: dict[str, Any]) -> None:
        """Vendor-specific switches (roles, plan, page size...), set through /_control/config."""
        for key, value in options.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, value)

    # --- routing ---------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Callable[..., Response]) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def dispatch(self, req: Request) -> Response:
        if req.path.startswith("/_control/"):
            return self._control(req)
        fault = self._take_fault(req.path)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.status:
                headers = {"Content-Type": fault.content_type, **fault.headers}
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                body = fault.body if fault.body is not None else json.dumps({"message": "injected fault"})
                return Response(fault.status, body.encode(), headers)
        for method, pattern, handler in self.routes:
            match = pattern.match(req.path)
            if match and method == req.method:
                return handler(req, **match.groupdict())
        return Response.json({"message": f"no route for {req.method} {req.path}"}, 404)

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path_contains in path and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _control(self, req: Request) -> Response:
        what = req.path.removeprefix("/_control/")
        payload = json.loads(req.body or b"null") if req.method == "POST" else None
        with self.lock:
            if what == "entries" and req.method == "GET":
                return Response.json(self.all_entries())
            if what == "entries" and req.method == "POST":
                if isinstance(payload, dict) and "generate" in payload:
                    options: dict[str, Any] = {k: v for k, v in payload.items() if k != "generate"}
                    created = self.generate(int(payload["generate"]), **options)
                else:
                    created = list(payload or [])
                    self.add_entries(created)
                return Response.json({"added": len(created)})
            if what == "faults" and req.method == "POST":
                items = payload if isinstance(payload, list) else [payload]
                self.faults.extend(Fault(**dict(item or {})) for item in items)
                return Response.json({"queued": len(items)})
            if what == "faults" and req.method == "DELETE":
                self.faults.clear()
                return Response.json({"cleared": True})
            if what == "config" and req.method == "POST":
                try:
                    self.configure(dict(payload or {}))
                except KeyError as exc:
                    return Response.json({"message": f"unknown option {exc}"}, 400)
                return Response.json({"configured": True})
            if what == "requests" and req.method == "GET":
                return Response.json(self.request_log)
        return Response.json({"message": "unknown control call"}, 404)


def _handler_class(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, the body waited for the client's
        # delayed ACK (40 ms per request: most of the HEC benchmark's wall time).
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host = self.headers.get("Host") or "127.0.0.1"
            req = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                base_url=f"http://{host}",
            )
            try:
                resp = emulator.dispatch(req)
            except Exception as exc:  # an emulator bug must show as a 500, not a hung socket
                resp = Response.json({"message": f"emulator error: {exc!r}"}, 500)
            with emulator.lock:
                if not req.path.startswith("/_control/"):
                    emulator.request_log.append((time.time(), req.method, self.path, resp.status))
            self.send_response(resp.status)
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _Handler


class _Server(ThreadingHTTPServer):
    """The standard library's listen backlog is 5: a daemon polling a hundred organizations at
    once (``bench.idle``) had most of its connection attempts dropped, each one sent again by
    the kernel after 1, 3, 7... seconds, until some requests hit their deadline and were
    retried; no vendor's front end refuses a hundred connections at once."""

    request_queue_size = 1024


def make_server(emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = _Server((host, port), _handler_class(emulator))
    server.daemon_threads = True
    return server


def serve_forever(emulator: Emulator, host: str, port: int) -> None:
    """Print the bound URL first, so the parent process can read the port it got."""
    server = make_server(emulator, host, port)
    print(f"LISTENING http://{host}:{server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.2)


def start_in_thread(emulator: Emulator, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, str]:
    """For the demo: the emulator serves from a thread of the demo process."""
    server = make_server(emulator, host, 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"
