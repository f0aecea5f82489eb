"""``python -m bench.ledger [--events N]``: what the evidence ledger costs (SQLite).

The ledger (``forwarder.journal.ledger``) notes every event after the journal prunes the
events. This journals N events (default 100,000) the way the poller does (Codacy-shaped events
with Codacy's content ids, the longest of the vendors': ``codacy:`` and 64 hex digits; linked
into the hash chain; pages of 1,000; one append per page), lets one sink confirm them all,
prunes the journal, and measures:

- the state file's growth per event once the events are pruned and the file vacuumed: the
  ledger's size (bytes per event, and per million events extrapolated linearly: it grows a
  run of up to a chunk's events at a time);
- the CPU of the appends with the ledger and without it (``ledger.rows_of`` giving no rows), i.e. what
  the ledger adds to the append path (fsync included in both).

Writes ``bench/results/ledger.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import orjson

from forwarder.chunks import Chunks
from forwarder.event import content_id, format_ms, make_event, parse_ms
from forwarder.evidence.chain import START, Head, link
from forwarder.journal import ledger
from forwarder.journal.sqlite import SqliteState
from forwarder.record import summary

RESULTS = Path(__file__).parent / "results"
PAGE = 1000
ORGS = ("gh/acme", "gh/globex")


def pages(events: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    start = int(time.time() * 1000) - events * 1000
    for first in range(0, events, PAGE):
        org = ORGS[(first // PAGE) % len(ORGS)]
        out = []
        for n in range(first, min(first + PAGE, events)):
            raw = {"n": n, "action": "repositories.settings.update", "actor": {"email": f"user{n % 50}@acme.example"}}
            out.append(
                make_event(
                    id=content_id("codacy", org, raw),
                    time=format_ms(start + n * 1000),
                    observed_time=format_ms(start),
                    vendor="codacy",
                    source="codacy",
                    organization=org,
                    action="repositories.settings.update",
                    activity="update",
                    category="configuration",
                    outcome="success",
                    raw=raw,
                )
            )
        yield org, out


def journal_all(path: Path, events: int) -> float:
    """Appends every page as the poller would; the CPU spent in the appends (thread time)."""
    state = SqliteState(path)
    state.open()
    state.register_sinks(["out"])
    heads: dict[str, Head] = {}
    spent = 0.0
    for org, page in pages(events):
        head = before = heads.get(org, START)
        chunks = Chunks()
        for event in page:
            head = link(event, head)
            fields = (event["id"], event["vendor"], parse_ms(event["time"]), *summary(event))
            chunks.add(fields, orjson.dumps(event), head.hash)  # as the poller does: the ledger needs no search
        heads[org] = head
        started = time.thread_time()
        state.append("codacy", org, chunks, {"watermark_ms": 0}, chain=(before, head))
        spent += time.thread_time() - started
    state.commit("out", state.events.head)
    state.prune()
    state.db.execute("VACUUM")
    state.close()
    return spent


def run(events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        work = Path(tmp)
        empty = SqliteState(work / "empty" / "journal.sqlite3")
        empty.open()
        empty.db.execute("VACUUM")
        empty.close()
        baseline = os.path.getsize(work / "empty" / "journal.sqlite3")
        with_cpu = journal_all(work / "with" / "journal.sqlite3", events)
        size = os.path.getsize(work / "with" / "journal.sqlite3") - baseline
        with mock.patch.object(ledger, "rows_of", lambda *args: ([], [])):
            without_cpu = journal_all(work / "without" / "journal.sqlite3", events)
        without = os.path.getsize(work / "without" / "journal.sqlite3") - baseline
    per_event = (size - without) / events
    return {
        "events": events,
        "ledger_bytes": size - without,
        "bytes_per_event": round(per_event, 1),
        "mb_per_million_events": round(per_event * 1_000_000 / 1e6, 1),
        "append_cpu_s_with_ledger": round(with_cpu, 3),
        "append_cpu_s_without_ledger": round(without_cpu, 3),
        "append_cpu_us_per_event_added": round((with_cpu - without_cpu) / events * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    result = run(args.events)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ledger.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
