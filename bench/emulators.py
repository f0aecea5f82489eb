"""Benchmark variants of the Codacy emulator and the HEC receiver, fast enough not to be
the bottleneck.

The stock Codacy emulator parses every stored timestamp on each request (fine for tests
with hundreds of entries, quadratic with a million); the variant here keeps the entries
sorted with their epoch-ms keys and each one pre-rendered as JSON, so a request is a bisect
and a join. The stock HEC receiver decodes and keeps every envelope; the variant only
checks auth, inflates and counts envelopes, and tells the count on ``/_control/count`` so
the benchmark can follow delivery over time.

For the live-feed phase, ``POST /_control/entries {"generate": N, "span_s": 0}`` on the Codacy
variant answers with the wall time at which the new entries became visible to the audit
endpoint and their ``requestId``s, and the HEC variant started with ``--arrivals`` stamps
the wall time at which each ``requestId`` reached it (``GET /_control/arrivals`` hands over
the stamps not handed over yet). Both processes and the benchmark share the machine's clock.

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
REQUEST_ID = re.compile(rb'"requestId":"([0-9a-f]{16})"')  # unique per generated Codacy entry


def request_ids(body: bytes) -> set[str]:
    """The entries a chunk of delivered output holds (an event carries its id in raw and details)."""
    return {m.decode() for m in REQUEST_ID.findall(body)}


class FastCodacyEmulator(CodacyEmulator):
    """Serves the same entries and errors as ``CodacyEmulator``, from a sorted index."""

    def __init__(self) -> None:
        super().__init__()
        self.requests_per_window = 1 << 30  # the benchmark measures throughput, not throttling
        self.keys: dict[tuple[str, str], list[int]] = {}
        self.rendered: dict[tuple[str, str], list[bytes]] = {}

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        created = super().generate(count, **options)
        rows = sorted(((parse_timestamp(e["timestamp"]), orjson.dumps(e)) for e in created), key=lambda r: r[0])
        org = next(iter(self.orgs)) if len(self.orgs) == 1 else None
        keys = self.keys.get(org) if org else None
        if org and keys is not None and rows and (not keys or keys[-1] <= rows[0][0]):
            # the live feed (one org, entries newer than all others): append instead of re-sorting all
            keys.extend(ms for ms, _ in rows)
            self.rendered[org].extend(body for _, body in rows)
        else:
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
        with self.lock:  # the live feed appends to the index concurrently
            keys, rendered = self.keys[(provider, org)], self.rendered[(provider, org)]
            first, last = bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)
            selected = rendered[first:last]
        body = b"[" + b",".join(reversed(selected)) + b"]"  # newest first, as Codacy
        return Response(200, body, {"Content-Type": "application/json"})

    def _control(self, req: Request) -> Response:
        payload = orjson.loads(req.body or b"null") if req.method == "POST" else None
        if req.path == "/_control/entries" and isinstance(payload, dict) and "generate" in payload:
            options = {k: v for k, v in payload.items() if k != "generate"}
            with self.lock:  # the audit endpoint takes this lock too: nothing serves them before the stamp
                created = self.generate(int(payload["generate"]), **options)
                available_at = time.time()
            ids = [e["details"]["requestId"] for e in created]
            return Response.json({"added": len(created), "available_at": available_at, "ids": ids})
        return super()._control(req)


class CountingHecReceiver(SplunkHecEmulator):
    """Accepts ``/services/collector/event`` like Splunk but keeps only a count."""

    def __init__(self, arrivals: bool = False) -> None:
        super().__init__()
        self.received = 0
        self.record_arrivals = arrivals  # off for the drain phase: no regex over a million events
        self.arrivals: dict[str, float] = {}
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
        arrived = time.time()
        ids = request_ids(body) if self.record_arrivals else set()
        with self.lock:
            self.received += n
            for key in ids:
                self.arrivals.setdefault(key, arrived)
        return hec(0)

    def _control(self, req: Request) -> Response:
        if req.path == "/_control/count":
            with self.lock:
                return Response.json({"events": self.received})
        if req.path == "/_control/arrivals":
            with self.lock:
                handed, self.arrivals = self.arrivals, {}
            return Response.json(handed)
        return super()._control(req)


EMULATORS = ("codacy", "splunk_hec")


def idle_orgs(count: int) -> list[str]:
    """The organizations of the idle measurement (``bench.idle``), each with nothing to collect."""
    return [f"gh/org-{i:04d}" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a benchmark emulator on loopback.")
    parser.add_argument("name", choices=EMULATORS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--entries", type=int, default=0)
    parser.add_argument("--span-s", type=float, default=86_400.0)
    parser.add_argument("--org", default="gh/acme")
    parser.add_argument("--orgs", type=int, default=0, help="codacy: N empty organizations gh/org-0000... (idle)")
    parser.add_argument("--arrivals", action="store_true", help="splunk_hec: stamp each entry's arrival")
    args = parser.parse_args()
    emulator: Emulator
    if args.name == "splunk_hec":
        emulator = CountingHecReceiver(arrivals=args.arrivals)
    else:
        emulator = FastCodacyEmulator()
        if args.entries:
            emulator.generate(args.entries, orgs=[args.org], span_s=args.span_s)
        else:  # the live feed starts empty, but the organization exists (an unknown one is a 404)
            for org in idle_orgs(args.orgs) if args.orgs else [args.org]:
                emulator.ensure_org(*org.split("/", 1))
            emulator.reindex()
    serve_forever(emulator, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
