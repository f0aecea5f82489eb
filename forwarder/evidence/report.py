"""``report``: the document an auditor is handed for a period, from the state alone.

Everything comes from the evidence ledger (``forwarder.journal.ledger``), which outlives the
journaled events: per stream (source x organization) the events collected in the period (by
event time), what each sink confirmed, the gaps the forwarder knows of with their reasons,
the quarantined entries and dead letters, the chain's range and head, and the last ``verify``
and ``reconcile`` runs. ``report_data`` gathers it as one JSON-able document; the renderers
(``forwarder.evidence.render``) turn it into Markdown or one self-contained HTML file.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from forwarder.event import format_ms
from forwarder.journal.ledger import LedgerGap

DAY_MS = 86_400_000


def _gap_overlaps(gap: LedgerGap, from_ms: int, to_ms: int) -> bool:
    noticed = from_ms <= gap.time_ms < to_ms
    lost_from = gap.from_ms if gap.from_ms is not None else gap.time_ms
    lost_to = gap.to_ms if gap.to_ms is not None else gap.time_ms
    return noticed or (lost_from < to_ms and lost_to > from_ms)


async def report_data(journal: Any, from_ms: int, to_ms: int) -> dict[str, Any]:
    sinks = await journal.confirmations()
    all_gaps = [g for g in await journal.ledger_gaps(0, 1 << 62) if _gap_overlaps(g, from_ms, to_ms)]
    quarantined = await journal.quarantined_in(from_ms / 1000, to_ms / 1000)
    dead_letters = [d for d in await journal.dead_letters() if from_ms <= d.record.time_ms < to_ms]
    runs = await journal.evidence_runs()
    streams = []
    for source, organization in await journal.ledger_streams():
        rows = await journal.ledger(source, organization, from_ms, to_ms)
        gaps = [g for g in all_gaps if (g.source, g.organization) == (source, organization)]
        held = quarantined.get((source, organization), [])
        dead = [d for d in dead_letters if (d.record.source, d.record.organization) == (source, organization)]
        head = await journal.chain_head(source, organization)
        days = Counter(format_ms(r.time_ms // DAY_MS * DAY_MS)[:10] for r in rows)
        by_chain = sorted(rows, key=lambda r: r.chain_seq)
        delivered: dict[str, dict[str, int]] = {}
        for sink in sinks:
            states = Counter(sink.state(r.seq) for r in rows)
            delivered[sink.sink] = {
                "confirmed": states["confirmed"],
                "dead_lettered": states["dead-lettered"],
                "not_confirmed": states["not confirmed"],
                "not_sent": states["not sent (the sink was added later)"],
            }
        reconciles = [r for r in runs if r.kind == "reconcile" and r.scope == f"{source}/{organization}"]
        streams.append(
            {
                "source": source,
                "organization": organization,
                "events": len(rows),
                "gap_events": len(gaps),
                "first_time": format_ms(min(r.time_ms for r in rows)) if rows else None,
                "last_time": format_ms(max(r.time_ms for r in rows)) if rows else None,
                "chain": {
                    "first_seq": by_chain[0].chain_seq if by_chain else None,
                    "last_seq": by_chain[-1].chain_seq if by_chain else None,
                    "last_hash": by_chain[-1].hash if by_chain else None,
                    "head_seq": head.seq,
                    "head_hash": head.hash,
                },
                "delivered": delivered,
                "per_day": dict(sorted(days.items())),
                "gaps": [
                    {
                        "noticed": format_ms(g.time_ms),
                        "chain_seq": g.chain_seq,
                        "from": None if g.from_ms is None else format_ms(g.from_ms),
                        "to": None if g.to_ms is None else format_ms(g.to_ms),
                        "reason": g.reason,
                    }
                    for g in gaps
                ],
                "quarantined": {"count": len(held), "reasons": dict(Counter(held).most_common(10))},
                "dead_letters": [
                    {"sink": d.sink, "id": d.record.event_id, "time": format_ms(d.record.time_ms), "reason": d.reason}
                    for d in dead
                ],
                "last_reconcile": _run(reconciles[-1]) if reconciles else None,
            }
        )
    return {
        "title": "Audit log forwarding evidence",
        "from": format_ms(from_ms),
        "to": format_ms(to_ms),
        "generated": format_ms(int(time.time() * 1000)),
        "sinks": [{"sink": s.sink, "offset": s.offset, "started_after": s.start} for s in sinks],
        "streams": streams,
        "runs": [_run(r) for r in runs],
    }


def _run(run: Any) -> dict[str, Any]:
    summary = dict(run.summary)
    summary.pop("findings", None)
    summary.pop("lines", None)
    return {"kind": run.kind, "scope": run.scope, "at": format_ms(int(run.at * 1000)), "ok": run.ok, "summary": summary}
