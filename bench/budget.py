"""``python -m bench.budget [--events N]``: where the forwarder's CPU goes, stage by stage.

``bench.run`` measures the whole daemon per sink; this splits the same work into the stages
of the hot path and runs each one on its own, in one thread, over the same pages of the same
Codacy backlog, with the real code of each stage (the Codacy source's identification and
normalizer, the poller's serialization, the journal, each sink's encoder). CPU is
``time.thread_time()`` of that thread (user + system), so the emulator serving the pages
from another thread never counts. Each stage runs ``--repeat`` times and keeps its fastest
run: the machine's noise only ever adds time. The orjson floor (parse each page, serialize
each entry) is measured the same way, and every stage is also given as a multiple of it.

What the stages leave out: asyncio and thread hand-offs between them, start-up, and the
sinks' I/O (sockets, S3 requests); the run's total minus the stages' sum is that overhead.
The file sink's rotation (compressing each rotated file, which ``bench.run`` turns off) is
given apart, at level 1 (the default) and 9, and is not in the sum; so is the journal's
append-and-prune cycle with pruned events zeroed (``secure_delete=ON``, as it runs) and
without (``FAST``, as before), the cost of making pruned events unrecoverable.
Writes ``bench/results/budget.json``.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from bench.baselines import fetch_pages
from bench.emulators import CountingHecReceiver, FastCodacyEmulator
from bench.run import ORG, RESULTS, SPAN_S, windows
from forwarder.chunks import Chunks
from forwarder.emulators.base import start_in_thread
from forwarder.event import content_ids, parse_ms
from forwarder.evidence.chain import StreamChain
from forwarder.formats import get_formatter
from forwarder.journal import SqliteState
from forwarder.polling import Poller
from forwarder.sources.codacy import normalize_entry
from forwarder.sources.window import with_occurrence
from sinks.base import gzip_compress, gzip_file
from sinks.splunk_hec import SplunkHecSink, SplunkHecSinkConfig
from sinks.syslog.config import SyslogSinkConfig
from sinks.syslog.encoding import SyslogEncoder


def per_page(work: Callable[[Any], Any], inputs: Callable[[int], Any], pages: int, repeat: int) -> float:
    """Thread CPU seconds of ``work`` over every page, fastest of ``repeat`` runs. Each page's
    input is built outside the timing and each result dropped before the next page, as in
    the daemon, which holds one page at a time (holding a whole backlog of objects made the
    cycle collector the largest cost)."""
    best = float("inf")
    for _ in range(repeat):
        total = 0.0
        for i in range(pages):
            arg = inputs(i)
            started = time.thread_time()
            work(arg)
            total += time.thread_time() - started
            del arg
        best = min(best, total)
    return best


def stages(url: str, token: str, events: int, listening_ms: int, repeat: int, work: Path) -> dict[str, float]:
    """CPU seconds of each stage over the whole backlog."""
    spans = windows(events, listening_ms)
    n = len(spans)
    audit = f"{url}/api/v3/organizations/{ORG}/audit"
    fetch_cpu = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        bodies = fetch_pages(audit, token, spans)
        fetch_cpu = min(fetch_cpu, time.thread_time() - started)
    gc.collect()
    gc.freeze()  # as the daemon does after start-up: the emulator's backlog is not ours
    observed = datetime.now(UTC)

    def parsed(i: int) -> list[Any]:
        page: list[Any] = orjson.loads(bodies[i])
        return page

    def keyed(i: int) -> tuple[list[Any], list[str]]:
        page = parsed(i)
        return page, with_occurrence(content_ids("codacy", ORG, page))

    def normalized(i: int) -> list[dict[str, Any]]:
        page, keys = keyed(i)
        return [normalize_entry("codacy", ORG, item, key, observed) for item, key in zip(page, keys, strict=True)]

    poller = Poller.__new__(Poller)  # ``_add`` reads only ``keep``: no source, no journal
    poller.keep = None

    def chunks(i: int) -> Chunks:
        out, chain = Chunks(), StreamChain()
        for event in normalized(i):
            poller._add(out, event, chain)
        out.cut()
        return out

    cpu: dict[str, float] = {}
    cpu["fetch (httpx, client side)"] = fetch_cpu
    cpu["parse pages (orjson.loads)"] = per_page(orjson.loads, lambda i: bodies[i], n, repeat)
    cpu["floor: orjson loads + dumps each"] = per_page(
        lambda body: [orjson.dumps(e) for e in orjson.loads(body)], lambda i: bodies[i], n, repeat
    )
    cpu["identify (content hash)"] = per_page(
        lambda page: with_occurrence(content_ids("codacy", ORG, page)), parsed, n, repeat
    )
    cpu["order (parse timestamps)"] = per_page(
        lambda page: [parse_ms(str(item.get("timestamp"))) for item in page], parsed, n, repeat
    )
    cpu["normalize (Codacy)"] = per_page(
        lambda pk: [normalize_entry("codacy", ORG, i, k, observed) for i, k in zip(*pk, strict=True)], keyed, n, repeat
    )

    def serialize(events: list[dict[str, Any]]) -> None:
        out, chain = Chunks(), StreamChain()
        for event in events:
            poller._add(out, event, chain)
        out.cut()

    def link(events: list[dict[str, Any]]) -> None:
        chain = StreamChain()
        for event in events:
            chain.link(event)
            chain.keep()

    cpu["serialize (orjson.dumps, time, chunk, chain)"] = per_page(serialize, normalized, n, repeat)
    cpu["chain link (canonical JSON + SHA-256; in serialize)"] = per_page(link, normalized, n, repeat)
    shutil.rmtree(work / "state", ignore_errors=True)
    journal = SqliteState(work / "state" / "journal.sqlite3")
    journal.open()
    journal.register_sinks(["out"])
    cpu["journal append (SQLite, fsync)"] = per_page(
        lambda page: journal.append("codacy", ORG, page, {"watermark_ms": 0}), chunks, n, 1
    )  # appended once: a second run would append the backlog again
    batches = [(offset, min(offset + 500, journal.events.head)) for offset in range(0, journal.events.head, 500)]

    def read(batch: tuple[int, int]) -> None:
        journal.read(batch[0], 500, 1 << 20)

    journal.events.forget_decoded()
    cpu["journal read (decode records)"] = per_page(read, lambda i: batches[i], len(batches), 1)

    def records(i: int) -> list[Any]:
        return journal.read(batches[i][0], 500, 1 << 20)

    as_json = get_formatter("json")
    syslog = SyslogEncoder(SyslogSinkConfig(type="syslog", host="127.0.0.1"))
    hec_config = SplunkHecSinkConfig(type="splunk_hec", url="http://127.0.0.1:9", token=CountingHecReceiver().tokens[0])
    hec = SplunkHecSink("hec", hec_config)
    sinks: dict[str, Callable[[list[Any]], Any]] = {
        "sink: file (json lines)": lambda batch: b"\n".join([as_json(r) for r in batch]),
        "sink: syslog (RFC 5424 encode)": lambda batch: [syslog.encode(r) for r in batch],
        "sink: HEC (envelopes)": lambda batch: b"".join([hec._envelope(r) for r in batch]),
        "sink: S3 (NDJSON + gzip -1)": lambda batch: gzip_compress(b"\n".join([as_json(r) for r in batch]), 1),
    }
    for name, encode in sinks.items():
        cpu[name] = per_page(encode, records, len(batches), repeat)
    # The benchmark's file sink never rotates (its output is counted in one file); with the
    # defaults, each 100 MB it writes is compressed once more when it rotates.
    rotated = work / "rotated.ndjson"
    with rotated.open("wb") as out:
        for i in range(len(batches)):
            out.write(b"\n".join([as_json(r) for r in records(i)]) + b"\n")
    compress = partial(gzip_file, rotated, work / "rotated.ndjson.gz")
    for level in (1, 9):
        cpu[f"file rotation (gzip_file, level {level})"] = per_page(compress, [level].__getitem__, 1, repeat)
    journal.close()
    pages = [chunks(i) for i in range(n)]
    for secure in (True, False):
        setting = "ON, WAL cut" if secure else "FAST, WAL reused"
        cpu[f"secure_delete {setting} (append + prune)"] = min(
            append_and_prune(work, pages, secure) for _ in range(repeat)
        )
    return cpu


def append_and_prune(work: Path, pages: list[Chunks], secure: bool) -> float:
    """Thread CPU of journaling every page, its sink confirming it and the prune deleting it, the
    steady state of a daemon that keeps up. ``secure`` is the journal as it opens (pruned pages
    zeroed, the WAL cut after each checkpoint); otherwise the settings before that (FAST, the
    WAL reused), to give what keeping pruned events unrecoverable costs in the same run."""
    shutil.rmtree(work / "prune", ignore_errors=True)
    journal = SqliteState(work / "prune" / "journal.sqlite3")
    journal.open()
    if not secure:
        journal.db.execute("PRAGMA secure_delete=FAST")
        journal.db.execute("PRAGMA journal_size_limit=-1")
    journal.register_sinks(["out"])
    gc.collect()
    started = time.thread_time()
    for page in pages:
        journal.append("codacy", ORG, page, {"watermark_ms": 0})
        journal.commit("out", journal.events.head)
        journal.prune()
    used = time.thread_time() - started
    journal.close()
    return used


def report(cpu: dict[str, float], events: int) -> dict[str, Any]:
    floor = cpu["floor: orjson loads + dumps each"]
    other = ("floor", "sink: syslog", "sink: HEC", "sink: S3", "file rotation", "secure_delete", "chain link")
    to_file = sum(seconds for name, seconds in cpu.items() if not name.startswith(other))
    return {
        "events": events,
        "stages": {
            name: {
                "us_per_event": round(seconds / events * 1e6, 2),
                "cpu_s_per_100k": round(seconds / events * 100_000, 3),
                "x_floor": round(seconds / floor, 2),
            }
            for name, seconds in cpu.items()
        },
        "pipeline_to_file_s_per_100k": round(to_file / events * 100_000, 3),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    emulator = FastCodacyEmulator()
    emulator.generate(args.events, orgs=[ORG], span_s=SPAN_S)
    server, url = start_in_thread(emulator)
    listening_ms = int(time.time() * 1000)
    try:
        with tempfile.TemporaryDirectory(prefix="af-budget-") as tmp:
            result = report(stages(url, emulator.token, args.events, listening_ms, args.repeat, Path(tmp)), args.events)
    finally:
        server.shutdown()
    print(f"{'stage':40} {'us/event':>9} {'CPU s/100k':>11} {'x floor':>8}")
    for name, stage in result["stages"].items():
        print(f"{name:40} {stage['us_per_event']:>9.2f} {stage['cpu_s_per_100k']:>11.3f} {stage['x_floor']:>8.2f}")
    print(f"{'sum of the stages to the file sink':40} {'':>9} {result['pipeline_to_file_s_per_100k']:>11.3f}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "budget.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
