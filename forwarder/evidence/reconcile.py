"""``reconcile``: the vendor's own log for a period against what the forwarder recorded.

The vendor is read again with the source's own walk and a throwaway cursor (as ``preview``
does: no lock, no journal write, no cursor moved), and each entry keyed exactly as collection
keys it (``pages()`` then ``normalize``: the same ids). Each id is then looked up in the
evidence ledger (``forwarder.journal.ledger``): an entry with no row was never collected (or
its record was removed), and for each sink, an entry whose journal seq the sink's offset has
not passed, or that the sink dead-lettered, never reached it.

What it cannot see: an entry the vendor no longer returns (past its retention, or deleted) is
not in the walk; entries newer than the source's ``lag_s`` are not read (the period is cut
there, and said so). The reverse it can: an entry the forwarder journaled that the vendor no
longer returns is listed apart (``gone_at_vendor``), not as a problem, since the forwarder's
copy is then the only one left; without it, "41 journaled" next to "21 confirmed" (of the
vendor's 30) reads as 20 events a sink never got.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from forwarder.event import format_ms, parse_ms
from forwarder.journal.ledger import LedgerRow, SinkConfirmation
from forwarder.sources.base import Source
from forwarder.sources.window import WindowCursor

LOOKUP_MARGIN_MS = 86_400_000  # ledger rows read beyond the period: an id is matched whatever its time
GAP_ID_PREFIX = "forwarder.gap:"  # the forwarder's own gap events (forwarder.sources.gaps): never the vendor's


@dataclass(frozen=True)
class VendorEntry:
    id: str
    time_ms: int
    action: str


@dataclass
class VendorRead:
    entries: dict[str, VendorEntry] = field(default_factory=dict)
    unkeyed: list[str] = field(default_factory=list)  # entries collection would quarantine: no id to look up
    read_to_ms: int = 0  # the walk's end: the period is checked up to here


@dataclass(frozen=True)
class Finding:
    kind: str  # never_collected, not_confirmed, dead_lettered, not_sent, unkeyed
    organization: str
    id: str
    time: str
    sink: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class StreamResult:
    source: str
    organization: str
    vendor_entries: int
    journaled: int
    confirmed: dict[str, int]
    read_to: str
    findings: list[Finding]
    gone_at_vendor: list[dict[str, str]] = field(default_factory=list)  # journaled; the vendor no longer returns it

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["findings"] = [f.as_dict() for f in self.findings]
        return out


def _walk_done(cursor: dict[str, Any] | None, to_ms: int) -> bool:
    return cursor is not None and int(cursor.get("watermark_ms", 0)) >= to_ms


async def read_vendor(source: Source, organization: str, from_ms: int, to_ms: int) -> VendorRead:
    """Every entry the vendor returns with an event time in ``[from_ms, to_ms)``, keyed as collection keys it."""
    from forwarder.tools.common import closing

    read = VendorRead(read_to_ms=from_ms)
    cursor = WindowCursor(from_ms, {}).dump()
    async with closing(source.pages(organization, cursor)) as pages:
        async for page in pages:  # page.extra_events (the forwarder's gap events) are not the vendor's
            observed = datetime.now(UTC)
            for raw, key in page.entries:
                try:
                    event = source.normalize(organization, raw, key, observed)
                    time_ms = parse_ms(event["time"])
                except Exception as exc:
                    read.unkeyed.append(f"{key}: {type(exc).__name__}: {exc}"[:300])
                    continue
                if from_ms <= time_ms < to_ms:
                    read.entries[str(event["id"])] = VendorEntry(str(event["id"]), time_ms, str(event.get("action")))
            watermark = int((page.cursor or {}).get("watermark_ms", read.read_to_ms))
            read.read_to_ms = max(read.read_to_ms, watermark)
            if _walk_done(page.cursor, to_ms):
                break
    read.read_to_ms = min(max(read.read_to_ms, from_ms), to_ms)
    return read


def compare(
    source: str,
    organization: str,
    vendor: VendorRead,
    ledger: list[LedgerRow],
    sinks: list[SinkConfirmation],
    from_ms: int,
    to_ms: int,
) -> StreamResult:
    by_id: dict[str, list[LedgerRow]] = {}
    for row in ledger:
        by_id.setdefault(row.event_id, []).append(row)
    findings: list[Finding] = []
    confirmed = {s.sink: 0 for s in sinks}
    for entry in sorted(vendor.entries.values(), key=lambda e: (e.time_ms, e.id)):
        when = format_ms(entry.time_ms)
        rows = by_id.get(entry.id)
        if not rows:
            detail = f"{entry.action}: the vendor holds it; the forwarder has no record of it"
            findings.append(Finding("never_collected", organization, entry.id, when, "-", detail))
            continue
        for sink in sinks:
            states = [sink.state(r.seq) for r in rows]  # a duplicate (a backfill overlap) counts if any copy arrived
            if "confirmed" in states:
                confirmed[sink.sink] += 1
                continue
            state = states[0]
            kind = {"not confirmed": "not_confirmed", "dead-lettered": "dead_lettered"}.get(state, "not_sent")
            seqs = ", ".join(str(r.seq) for r in rows)
            findings.append(
                Finding(
                    kind,
                    organization,
                    entry.id,
                    when,
                    sink.sink,
                    f"{entry.action}: journal seq {seqs} {state} (offset {sink.offset})",
                )
            )
    findings += [Finding("unkeyed", organization, "-", "-", "-", f"would be quarantined: {u}") for u in vendor.unkeyed]
    journaled = sum(1 for r in ledger if from_ms <= r.time_ms < to_ms)
    gone = {
        r.event_id: r.time_ms
        for r in ledger
        if from_ms <= r.time_ms < vendor.read_to_ms
        and r.event_id not in vendor.entries
        and not r.event_id.startswith(GAP_ID_PREFIX)
    }
    gone_at_vendor = [{"id": i, "time": format_ms(t)} for i, t in sorted(gone.items(), key=lambda it: (it[1], it[0]))]
    return StreamResult(
        source,
        organization,
        len(vendor.entries),
        journaled,
        confirmed,
        format_ms(vendor.read_to_ms),
        findings,
        gone_at_vendor,
    )


async def reconcile(
    journal: Any, source: Source, organizations: list[str], from_ms: int, to_ms: int
) -> list[StreamResult]:
    """One result per organization; each run is recorded (``evidence_runs``) for ``report``."""
    results = []
    sinks = await journal.confirmations()
    for organization in organizations:
        vendor = await read_vendor(source, organization, from_ms, to_ms)
        ledger = await journal.ledger(source.name, organization, from_ms - LOOKUP_MARGIN_MS, to_ms + LOOKUP_MARGIN_MS)
        results.append(compare(source.name, organization, vendor, ledger, sinks, from_ms, to_ms))
    return results


def run_summary(result: StreamResult, from_ms: int, to_ms: int) -> dict[str, Any]:
    """What ``evidence_runs`` keeps of a reconcile: the counts and the first findings."""
    summary = result.as_dict()
    summary["findings"] = summary["findings"][:100]
    summary["gone_at_vendor"] = summary["gone_at_vendor"][:100]
    summary["gone_at_vendor_count"] = len(result.gone_at_vendor)
    summary.update(
        {
            "from": format_ms(from_ms),
            "to": format_ms(to_ms),
            "missing": len(result.findings),
            "at": format_ms(int(time.time() * 1000)),
        }
    )
    return summary
