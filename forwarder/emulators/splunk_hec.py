"""Splunk HTTP Event Collector receiver, faithful to the documented wire protocol.

It follows ``shared/research/sinks-schemas.md`` §1 so that the HEC sink is tested against the
behaviour a real Splunk shows, not against the sink's own assumptions: ``Splunk <token>``
auth with the exact 401/403 codes, gzip bodies (415 for other encodings, a decompression cap
against gzip bombs), concatenated JSON envelopes parsed in sequence with
``invalid-event-number`` on the first bad one, 413 above ``max_content_length`` and indexer
acknowledgement per GUID channel, where an ack reads true once and then is forgotten.

Like Splunk (as its maintainers describe in opentelemetry-collector-contrib #36113), the
envelopes before a bad one are kept: a sender that resends them creates duplicates.

Test knobs beyond the protocol: ``ack_never`` (acks never come true), ``drop_unacked`` (events
become visible only once their ack read true, so a lost ack means lost events),
``ack_delay_s``, ``poison_events`` (``{event_id: code}`` makes Splunk refuse that envelope
with code 6, 12 or 13) and the shared fault queue, whose 500/503 answers get HEC bodies.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import time
import zlib
from typing import Any

from forwarder.emulators.base import Emulator, Fault, Request, Response

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TEXTS = {
    0: "Success",
    1: "Token disabled",
    2: "Token is required",
    3: "Invalid authorization",
    4: "Invalid token",
    5: "No data",
    6: "Invalid data format",
    7: "Incorrect index",
    8: "Internal server error",
    9: "Server is busy",
    10: "Data channel is missing",
    11: "Invalid data channel",
    12: "Event field is required",
    13: "Event field cannot be blank",
    14: "ACK is disabled",
    15: "Error in handling indexed fields",
    17: "HEC is healthy",
    18: "HEC is unhealthy, queues are full",
}
STATUS = {0: 200, 1: 403, 2: 401, 3: 401, 4: 403, 8: 500, 9: 503, 17: 200, 18: 503}
COLLECTOR = "/services/collector"


def hec(code: int, **extra: Any) -> Response:
    """Every HEC answer is ``{"text", "code"}`` plus at most ``invalid-event-number``/``ackId``."""
    return Response.json({"text": TEXTS[code], "code": code, **extra}, STATUS.get(code, 400))


class Rejected(Exception):
    """Ends a request early with ``response``; ``accepted`` are envelopes Splunk keeps anyway."""

    def __init__(self, response: Response, accepted: list[dict[str, Any]] | None = None) -> None:
        self.response = response
        self.accepted = accepted or []


class SplunkHecEmulator(Emulator):
    name = "splunk_hec"
    sink_type = "splunk_hec"

    def sink_config(self, url: str) -> dict[str, Any]:
        return {"type": "splunk_hec", "url": url, "token": self.tokens[0]}

    def config_entries(self, name: str, url: str) -> dict[str, dict[str, Any]]:
        return {"splunk": self.sink_config(url)}

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = ["hec-test-token"]
        self.disabled_tokens: list[str] = []
        self.allowed_indexes: list[str] = []  # empty: any index
        self.max_content_length = 838_860_800  # Splunk's default since 6.5.0
        self.healthy = True
        self.use_ack = False
        self.ack_never = False
        self.drop_unacked = False
        self.ack_delay_s = 0.0
        self.poison_events: dict[str, int] = {}
        self.entries: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.next_ack: dict[str, int] = {}
        # (channel, ackId) -> (time the ack turns true, envelopes held back until then)
        self.pending: dict[tuple[str, int], tuple[float, list[dict[str, Any]]]] = {}
        for suffix in ("", "/event", "/event/1.0"):
            self.route("POST", COLLECTOR + suffix, self.event)
        for suffix in ("/raw", "/raw/1.0"):
            self.route("POST", COLLECTOR + suffix, self.raw)
        for suffix in ("/health", "/health/1.0"):
            self.route("GET", COLLECTOR + suffix, self.health)
        self.route("POST", COLLECTOR + "/ack", self.ack)

    # --- control plane -------------------------------------------------------------------
    def add_entries(self, entries: list[dict[str, Any]]) -> None:
        self.entries.extend(entries)

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        created = [{"time": round(time.time(), 3), "event": {"n": i}} for i in range(count)]
        self.add_entries(created)
        return created

    def all_entries(self) -> list[dict[str, Any]]:
        return list(self.entries)

    def _control(self, req: Request) -> Response:
        if req.path == "/_control/batches" and req.method == "GET":
            with self.lock:
                return Response.json(self.batches)
        return super()._control(req)

    def _take_fault(self, path: str) -> Fault | None:
        """Injected 500/503 answers carry the HEC body a real Splunk sends with them."""
        fault = super()._take_fault(path)
        code = {500: 8, 503: 9}.get(fault.status) if fault else None
        if fault is None or fault.body is not None or code is None:
            return fault
        return dataclasses.replace(fault, body=json.dumps({"text": TEXTS[code], "code": code}))

    # --- protocol steps --------------------------------------------------------------------
    def _authorize(self, req: Request) -> None:
        header = req.header("authorization")
        if header is None:
            raise Rejected(hec(2))
        scheme, _, value = header.partition(" ")
        if scheme == "Basic":  # token as the password, user ignored
            try:
                value = base64.b64decode(value, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                raise Rejected(hec(3)) from None
        elif scheme != "Splunk" or not value:
            raise Rejected(hec(3))
        if value in self.disabled_tokens:
            raise Rejected(hec(1))
        if value not in self.tokens:
            raise Rejected(hec(4))

    def _channel(self, req: Request, required: bool) -> str | None:
        channel = req.header("x-splunk-request-channel") or req.arg("channel")
        if channel is None and required:
            raise Rejected(hec(10))
        if channel is not None and required and not GUID.match(channel):
            raise Rejected(hec(11))
        return channel

    def _decode(self, req: Request) -> bytes:
        too_big = Response.json({"text": "Content too large"}, 413)
        if len(req.body) > self.max_content_length:
            raise Rejected(too_big)
        encoding = (req.header("content-encoding") or "identity").strip().lower()
        if encoding == "identity":
            return req.body
        if encoding != "gzip":
            raise Rejected(Response.json({"text": f"Unsupported content encoding {encoding}"}, 415))
        inflater = zlib.decompressobj(wbits=31)
        try:
            data = inflater.decompress(req.body, self.max_content_length + 1)
        except zlib.error:
            raise Rejected(hec(6)) from None
        if len(data) > self.max_content_length:
            raise Rejected(too_big)
        if not inflater.eof:
            raise Rejected(hec(6))
        return data

    def _envelopes(self, body: bytes) -> list[dict[str, Any]]:
        """Concatenated JSON objects, no array, no commas; the first bad one ends the request
        and the ones before it are kept."""
        decoder = json.JSONDecoder()
        found: list[dict[str, Any]] = []
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise Rejected(hec(6, **{"invalid-event-number": 0})) from None
        pos = 0
        while (pos := _skip_space(text, pos)) < len(text):
            number = {"invalid-event-number": len(found)}
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                raise Rejected(hec(6, **number), found) from None
            if not isinstance(value, dict):
                raise Rejected(hec(6, **number), found)
            if value.get("event") is None:
                raise Rejected(hec(12, **number), found)
            if value["event"] == "" or (isinstance(value["event"], str) and not value["event"].strip()):
                raise Rejected(hec(13, **number), found)
            fields = value.get("fields", {})
            if not isinstance(fields, dict) or any(_nested(v) for v in fields.values()):
                raise Rejected(hec(15), found)
            index = value.get("index")
            if self.allowed_indexes and index is not None and index not in self.allowed_indexes:
                raise Rejected(hec(7), found)
            poison = self.poison_events.get(str(fields.get("event_id", "")))
            if poison:
                raise Rejected(hec(poison, **number), found)
            found.append(value)
        return found

    def _accept(self, req: Request, envelopes: list[dict[str, Any]], channel: str | None) -> Response:
        info: dict[str, Any] = {
            "path": req.path,
            "channel": channel,
            "events": len(envelopes),
            "content_encoding": req.header("content-encoding"),
            "bytes": len(req.body),
        }
        with self.lock:
            self.batches.append(info)
            if not (self.use_ack and channel):
                self.entries.extend(envelopes)
                return hec(0)
            ack_id = self.next_ack.get(channel, 0)
            self.next_ack[channel] = ack_id + 1
            held = envelopes if self.drop_unacked else []
            if not self.drop_unacked:
                self.entries.extend(envelopes)
            self.pending[(channel, ack_id)] = (time.monotonic() + self.ack_delay_s, held)
            info["ackId"] = ack_id
            return hec(0, ackId=ack_id)

    # --- endpoints -------------------------------------------------------------------------
    def event(self, req: Request) -> Response:
        try:
            self._authorize(req)
            channel = self._channel(req, self.use_ack)
            body = self._decode(req)
            if not body.strip():
                return hec(5)
            envelopes = self._envelopes(body)
        except Rejected as rejected:
            if rejected.accepted:
                self._accept(req, rejected.accepted, None)
            return rejected.response
        return self._accept(req, envelopes, channel)

    def raw(self, req: Request) -> Response:
        """Raw text, one event per line, metadata from the query; the channel is required."""
        try:
            self._authorize(req)
            channel = self._channel(req, True)
            body = self._decode(req)
        except Rejected as rejected:
            return rejected.response
        meta = {k: v for k in ("host", "source", "sourcetype", "index") if (v := req.arg(k))}
        lines = [line for line in body.decode(errors="replace").splitlines() if line.strip()]
        if not lines:
            return hec(5)
        return self._accept(req, [{**meta, "event": line} for line in lines], channel)

    def health(self, req: Request) -> Response:
        return hec(17 if self.healthy else 18)

    def ack(self, req: Request) -> Response:
        try:
            self._authorize(req)
            if not self.use_ack:
                return hec(14)
            channel = self._channel(req, True)
            assert channel is not None
            ids = json.loads(req.body or b"{}").get("acks")
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                return hec(6)
        except Rejected as rejected:
            return rejected.response
        except (ValueError, AttributeError):
            return hec(6)
        now = time.monotonic()
        status: dict[str, bool] = {}
        with self.lock:
            for ack_id in ids:
                ready = self.pending.get((channel, ack_id))
                done = ready is not None and not self.ack_never and now >= ready[0]
                if done and ready is not None:  # true once, then forgotten
                    self.entries.extend(ready[1])
                    del self.pending[(channel, ack_id)]
                status[str(ack_id)] = done
        return Response.json({"acks": status})


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _nested(value: Any) -> bool:
    """Indexed fields are strings or lists of strings; anything deeper is code 15."""
    if isinstance(value, list):
        return any(isinstance(v, dict | list) for v in value)
    return isinstance(value, dict)
