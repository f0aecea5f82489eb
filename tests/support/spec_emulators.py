"""Minimal vendor audit APIs written from the vendors' OpenAPI documents alone
(/work/shared/vendor-specs), not from the project's emulators: a second opinion that catches a
source which follows its own emulator rather than the documents.

Codacy (codacy-api-v3.openapi.yaml, ``listAuditLogsForOrganization``):
``GET {base}/organizations/{provider}/{remoteOrganizationName}/audit?from=<ms>&to=<ms>``,
header ``api-token``, a bare JSON array of ``AuditLog``, no paging; errors are ``ApiError``
bodies (``message``, ``actions``, ``error``; ``code`` on 401) with 400/401/403/404/422/500.

ConfigCat (configcat-public-management-api.openapi.yaml): ``GET /v2/organizations/{id}/auditlogs``
and ``/v2/products/{id}/auditlogs`` (paged ``{data, paging}``), the deprecated ``/v1`` twins (a
bare array), HTTP Basic, 429 with ``Retry-After`` and ``X-Rate-Limit-*``.

Neither document says whether the time bounds are inclusive: ``bounds`` serves either reading
(``inclusive``: from <= t <= to; ``exclusive``: from < t < to), so a test can run both.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

Bounds = Literal["inclusive", "exclusive"]


@dataclass
class Answer:
    """One scripted answer instead of the normal one (a fault)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0


def parse_iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"no offset in {text!r}")
    return value.astimezone(UTC)


class SpecServer:
    """A loopback HTTP server; subclasses answer ``handle``. Thread-safe entry lists."""

    def __init__(self, bounds: Bounds = "inclusive") -> None:
        self.bounds: Bounds = bounds
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        #: unit (organization or product path key) -> answers to give first, in order
        self.faults: dict[str, list[Answer]] = {}
        #: unit -> an answer given every time
        self.always: dict[str, Answer] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- the HTTP side ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Request(
                    path=unquote(parts.path),
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
                answer = owner.answer(request)
                request.status = answer.status
                with owner.lock:
                    owner.requests.append(request)
                body = b"" if answer.body is None else orjson.dumps(answer.body)
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, request: Request) -> Answer:
        raise NotImplementedError

    def fault_for(self, unit: str) -> Answer | None:
        with self.lock:
            queued = self.faults.get(unit)
            if queued:
                return queued.pop(0)
            return self.always.get(unit)

    def within(self, moment: datetime, start: datetime | None, end: datetime | None) -> bool:
        if self.bounds == "inclusive":
            return (start is None or start <= moment) and (end is None or moment <= end)
        return (start is None or start < moment) and (end is None or moment < end)


# ----------------------------------------------------------------------------------------
# Codacy


def codacy_error(status: int, message: str) -> Answer:
    name = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        422: "UnprocessableEntity",
        500: "InternalServerError",
    }[status]
    body: dict[str, Any] = {
        "message": message,
        "actions": [{"name": "Check our documentation", "url": "https://docs.codacy.com/"}],
        "error": name,
    }
    if status == 401:
        body["code"] = "Unauthorized"
    return Answer(status, body)


class CodacySpec(SpecServer):
    """``{url}/api/v3`` is the source's ``base_url``."""

    def __init__(self, token: str, bounds: Bounds = "inclusive") -> None:
        super().__init__(bounds)
        self.token = token
        #: "gh/acme" -> entries as served
        self.orgs: dict[str, list[dict[str, Any]]] = {}
        #: an entry at exactly the ``to`` of every window older than a minute, added before the
        #: answer: what a log with an entry at every instant would hold at the slice boundaries
        self.plant_at_to = False
        self.planted: dict[str, list[dict[str, Any]]] = {}

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v3"

    def add(self, org: str, *entries: dict[str, Any]) -> None:
        with self.lock:
            self.orgs.setdefault(org, []).extend(entries)

    def answer(self, request: Request) -> Answer:
        parts = request.path.split("/")
        # ['', 'api', 'v3', 'organizations', provider, name, 'audit']
        if len(parts) != 7 or parts[1:4] != ["api", "v3", "organizations"] or parts[6] != "audit":
            return codacy_error(404, "Not found")
        if request.headers.get("api-token") != self.token:
            return codacy_error(401, "Invalid API token")
        org = f"{parts[4]}/{parts[5]}"
        fault = self.fault_for(org)
        if fault is not None:
            return fault
        try:
            start = self.ms(request, "from")
            end = self.ms(request, "to")
        except ValueError as exc:
            return codacy_error(400, str(exc))
        with self.lock:
            if org not in self.orgs:
                return codacy_error(404, f"Organization {parts[5]} not found")
            if self.plant_at_to and end is not None and end < datetime.now(UTC) - timedelta(minutes=1):
                stamp = end.strftime("%Y-%m-%dT%H:%M:%S.") + f"{end.microsecond // 1000:03d}Z"
                if all(e["timestamp"] != stamp for e in self.orgs[org]):
                    entry = {
                        "actor": {"email": "edge@example.com"},
                        "action": "user.login",
                        "result": "succeed",
                        "timestamp": stamp,
                        "description": "at a window's end",
                    }
                    self.orgs[org].append(entry)
                    self.planted.setdefault(org, []).append(entry)
            entries = list(self.orgs[org])
        chosen = [e for e in entries if self.within(parse_iso(e["timestamp"]), start, end)]
        chosen.sort(key=lambda e: parse_iso(e["timestamp"]), reverse=True)
        return Answer(200, chosen)

    @staticmethod
    def ms(request: Request, name: str) -> datetime | None:
        values = request.query.get(name)
        if not values:
            return None
        text = values[-1]
        if not text.lstrip("-").isdigit():
            raise ValueError(f"{name} must be an integer (epoch ms), got {text!r}")
        return datetime.fromtimestamp(int(text) / 1000, UTC)


# ----------------------------------------------------------------------------------------
# ConfigCat


@dataclass
class CatEntry:
    """An entry as served, plus where it lives (the filters' keys, not in the served shape)."""

    item: dict[str, Any]
    product: str | None = None


class ConfigCatSpec(SpecServer):
    def __init__(self, username: str, password: str, bounds: Bounds = "inclusive") -> None:
        super().__init__(bounds)
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.orgs: dict[str, list[CatEntry]] = {}
        #: product id -> its organization
        self.products: dict[str, str] = {}
        #: v1 answers refuse windows over 30 days, as documented; v2 does too when set (unknown)
        self.v2_caps_30_days = False
        #: as CodacySpec.plant_at_to, on the first page of a window
        self.plant_at_to = False
        self.planted: list[dict[str, Any]] = []
        self.next_id = 5_000_000_000
        self.rate_remaining = "100"

    def add(self, org: str, *items: dict[str, Any], product: str | None = None) -> None:
        with self.lock:
            self.orgs.setdefault(org, []).extend(CatEntry(dict(i), product) for i in items)
            if product is not None:
                self.products[product] = org

    def answer(self, request: Request) -> Answer:
        parts = request.path.split("/")
        # ['', 'v2', 'organizations'|'products', id, 'auditlogs']
        if len(parts) != 5 or parts[1] not in ("v1", "v2") or parts[4] != "auditlogs":
            return Answer(404)
        version, kind, unit = parts[1], parts[2], parts[3]
        if kind not in ("organizations", "products"):
            return Answer(404)
        if request.headers.get("authorization") != self.expected:
            return Answer(401)
        fault = self.fault_for(unit)
        if fault is not None:
            return fault
        with self.lock:
            if kind == "organizations":
                if unit not in self.orgs:
                    return Answer(404)
                entries = list(self.orgs[unit])
            else:
                if unit not in self.products:
                    return Answer(404)
                entries = [e for e in self.orgs[self.products[unit]] if e.product == unit]
        q = request.query

        def one(name: str) -> str | None:
            values = q.get(name)
            return values[-1] if values else None

        try:
            start = parse_iso(v) if (v := one("fromUtcDateTime")) else None
            end = parse_iso(v) if (v := one("toUtcDateTime")) else None
            page_number = int(one("pageNumber") or 1)
            page_size = int(one("pageSize") or 100)
        except ValueError:
            return Answer(400)
        if page_number < 1 or not 1 <= page_size <= 100:
            return Answer(400)
        if start is None and end is None:
            end = datetime.now(UTC)
            start = end.replace(microsecond=0) - (datetime(2000, 1, 8) - datetime(2000, 1, 1))
        if (version == "v1" or self.v2_caps_30_days) and start and end and end - start > timedelta(days=30):
            return Answer(400)
        if self.plant_at_to and end is not None and page_number == 1 and end < datetime.now(UTC) - timedelta(minutes=1):
            stamp = end.strftime("%Y-%m-%dT%H:%M:%S.") + f"{end.microsecond // 1000:03d}Z"
            with self.lock:
                self.next_id += 1
                item = {
                    "auditLogId": self.next_id,
                    "auditLogDateTime": stamp,
                    "auditLogTypeEnum": "configChanged",
                    "truncated": False,
                    "modelVersion": 6,
                    "auditLogType": "Config changed",
                    "userEmail": "edge@example.com",
                    "userName": "Edge",
                    "where": "w",
                    "why": None,
                    "actionTarget": "edge",
                    "details": "",
                }
                org_key = unit if kind == "organizations" else self.products[unit]
                self.orgs[org_key].append(CatEntry(item, None if kind == "organizations" else unit))
                entries.append(self.orgs[org_key][-1])
                self.planted.append(item)
        if kind == "organizations" and (product := one("productId")):
            entries = [e for e in entries if e.product == product]
        if audit_type := one("auditLogType"):
            entries = [e for e in entries if e.item["auditLogTypeEnum"] == audit_type]
        chosen = [e.item for e in entries if self.within(parse_iso(e.item["auditLogDateTime"]), start, end)]
        chosen.sort(key=lambda i: (parse_iso(i["auditLogDateTime"]), i["auditLogId"]), reverse=True)
        headers = {"X-Rate-Limit-Remaining": self.rate_remaining, "X-Rate-Limit-Reset": "1"}
        if version == "v1":
            return Answer(200, chosen, headers)
        total = len(chosen)
        pages = max(1, -(-total // page_size))
        data = chosen[(page_number - 1) * page_size : page_number * page_size]
        paging = {
            "currentPage": page_number,
            "totalPages": pages,
            "pageSize": page_size,
            "totalCount": total,
            "hasPrevious": page_number > 1,
            "hasNext": page_number < pages,
        }
        return Answer(200, {"data": data, "paging": paging}, headers)


def too_many(retry_after: str = "1") -> Answer:
    return Answer(429, None, {"Retry-After": retry_after, "X-Rate-Limit-Remaining": "0"})


@contextmanager
def serving(server: SpecServer) -> Iterator[SpecServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
