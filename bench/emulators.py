"""Benchmark variants of the Codacy emulator and the HEC receiver, fast enough not to be
the bottleneck.

The stock Codacy emulator parses every stored timestamp on each request (fine for tests
with hundreds of entries, quadratic with a million); the variant here keeps the entries
sorted with their epoch-ms keys and each one pre-rendered as JSON, so a request is a bisect
and a join. The stock HEC receiver decodes and keeps every envelope; the variant only
checks auth, inflates and counts envelopes, and tells the count on ``/_control/count`` so
the benchmark can follow delivery over time.

``python -m bench.emulators codacy --entries N --span-s S`` / ``... splunk_hec`` print
``LISTENING <url>`` first, like ``python -m forwarder.emulators``.
"""

from __future__ import annotations

import argparse
import bisect
import re
import time
import zlib
from typing import Any

import orjson

from forwarder.emulators.base import Emulator, Request, Response, serve_forever
from forwarder.emulators.codacy import PROVIDERS, CodacyEmulator, parse_timestamp
from forwarder.emulators.splunk_hec import Rejected, SplunkHecEmulator, hec

ENVELOPE_MARK = b'"sourcetype":'  # once per HEC envelope; normalized events have no such key


class FastCodacyEmulator(CodacyEmulator):
    """Serves the same entries and errors as ``CodacyEmulator``, from a sorted index."""

    def __init__(self) -> None:
        super().__init__()
        self.requests_per_window = 1 << 30  # the benchmark measures throughput, not throttling
        self.keys: dict[tuple[str, str], list[int]] = {}
        self.rendered: dict[tuple[str, str], list[bytes]] = {}

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        created = super().generate(count, **options)
        self.reindex()
        return created

    def reindex(self) -> None:
        for org, entries in self.orgs.items():
            rows = sorted(((parse_timestamp(e["timestamp"]), orjson.dumps(e)) for e in entries), key=lambda r: r[0])
            self.keys[org] = [ms for ms, _ in rows]
            self.rendered[org] = [body for _, body in rows]

    def audit(self, req: Request, provider: str, org: str) -> Response:
        if req.header("api-token") != self.token:
            return Response.json({"message": "Unauthorized", "actions": []}, 401)
        if provider not in PROVIDERS or (provider, org) not in self.keys:
            return Response.json({"message": f"Organization {org} not found", "actions": []}, 404)
        try:
            lo = int(req.arg("from") or 0)
            hi = int(req.arg("to") or time.time() * 1000)
        except ValueError:
            return Response.json({"message": "from/to must be epoch milliseconds", "actions": []}, 400)
        keys, rendered = self.keys[(provider, org)], self.rendered[(provider, org)]
        first, last = bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)
        body = b"[" + b",".join(reversed(rendered[first:last])) + b"]"  # newest first, as Codacy
        return Response(200, body, {"Content-Type": "application/json"})


class CountingHecReceiver(SplunkHecEmulator):
    """Accepts ``/services/collector/event`` like Splunk but keeps only a count."""

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.routes = [r for r in self.routes if not r[1].pattern.startswith("^/services/collector/event")]
        self.routes.insert(0, ("POST", re.compile("^/services/collector/event$"), self.count_events))

    def count_events(self, req: Request) -> Response:
        try:
            self._authorize(req)
        except Rejected as rejected:
            return rejected.response
        body = req.body
        if (req.header("content-encoding") or "").lower() == "gzip":
            body = zlib.decompress(body, wbits=31)
        n = body.count(ENVELOPE_MARK)
        with self.lock:
            self.received += n
        return hec(0)

    def _control(self, req: Request) -> Response:
        if req.path == "/_control/count":
            with self.lock:
                return Response.json({"events": self.received})
        return super()._control(req)


EMULATORS: dict[str, type[Emulator]] = {"codacy": FastCodacyEmulator, "splunk_hec": CountingHecReceiver}


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a benchmark emulator on loopback.")
    parser.add_argument("name", choices=sorted(EMULATORS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--entries", type=int, default=0)
    parser.add_argument("--span-s", type=float, default=86_400.0)
    parser.add_argument("--org", default="gh/acme")
    args = parser.parse_args()
    emulator = EMULATORS[args.name]()
    if args.entries:
        emulator.generate(args.entries, orgs=[args.org], span_s=args.span_s)
    serve_forever(emulator, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
