"""`reconcile` against the vendor emulators, after a real collection (`once`): nothing missing;
then each defect made behind the forwarder's back is named exactly (a ledger row deleted, an
entry the vendor holds that was never collected, a sink whose offset is behind)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.event import format_ms, parse_ms
from forwarder.journal import ledger, ledger_sqlite
from forwarder.journal.ledger import LedgerRow, LedgerRun
from tests.support.config import file_sink, make_config
from tests.support.daemon import cli
from tests.support.emulators import running
from tests.support.vendors import ORGS, VENDORS, entry_keys

DAY_MS = 86_400_000


def reconcile(cfg: Path, source: str, *extra: str) -> tuple[int, dict[str, Any]]:
    now = int(time.time() * 1000)
    result = cli(
        cfg,
        "reconcile",
        "--source",
        source,
        "--from",
        format_ms(now - 4 * DAY_MS),
        "--to",
        format_ms(now + DAY_MS),
        *extra,
        "--output",
        "json",
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, orjson.loads(result.stdout)


def findings(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((f["kind"], f["id"], f["sink"]) for s in answer["streams"] for f in s["findings"])


def collect(tmp_path: Path, vendor: str, url: str) -> Path:
    sinks = {"out": file_sink(tmp_path / "out"), "archive": file_sink(tmp_path / "archive")}
    cfg = make_config(tmp_path, {vendor: VENDORS[vendor].source(url)}, sinks)
    once = cli(cfg, "once", timeout=180)
    assert once.returncode == 0, once.stderr
    return cfg


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_nothing_missing_after_a_real_collection(tmp_path: Path, vendor: str) -> None:
    emulator = running(vendor, entries=15, options=VENDORS[vendor].options)
    try:
        cfg = collect(tmp_path, vendor, emulator.url)
        code, answer = reconcile(cfg, vendor)
        assert code == 0 and answer["ok"] and findings(answer) == []
        held = sum(s["vendor_entries"] for s in answer["streams"])
        assert held == len(entry_keys(emulator, vendor)) > 0
        for stream in answer["streams"]:
            assert stream["journaled"] >= stream["vendor_entries"]
            assert stream["confirmed"] == {"archive": stream["vendor_entries"], "out": stream["vendor_entries"]}
    finally:
        emulator.stop()


def noted(db: sqlite3.Connection) -> list[LedgerRow]:
    """Every event the ledger notes, by seq."""
    return sorted(row for stream in ledger_sqlite.streams(db) for row in ledger_sqlite.listing(db, *stream, 0, 1 << 62))


def forget(db: sqlite3.Connection, event_id: str) -> None:
    """One event's note removed from its run, behind the forwarder's back."""
    for stream, *fields in db.execute(
        "SELECT stream, first_seq, first_chain_seq, min_time, max_time, times, hashes, ids FROM ledger_runs"
    ).fetchall():
        rows = list(ledger.unpack(LedgerRun(*fields)))
        kept = [
            (r.seq, r.chain_seq, r.event_id, r.time_ms, bytes.fromhex(r.hash)) for r in rows if r.event_id != event_id
        ]
        if len(kept) < len(rows):
            db.execute("DELETE FROM ledger_runs WHERE first_seq = ?", (fields[0],))
            db.executemany(
                "INSERT INTO ledger_runs (stream, first_seq, first_chain_seq, min_time, max_time, times, hashes, ids) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(stream, *run) for run in ledger.pack(kept)],
            )
    db.commit()


def test_each_defect_is_named_exactly(tmp_path: Path) -> None:
    emulator = running("codacy", entries=12, options=VENDORS["codacy"].options)
    try:
        cfg = collect(tmp_path, "codacy", emulator.url)
        assert reconcile(cfg, "codacy")[0] == 0
        db = sqlite3.connect(tmp_path / "state" / "journal.sqlite3")

        # 1. one entry's record removed behind the forwarder's back: named, and only it
        removed = ledger_sqlite.listing(db, "codacy", ORGS[0], 0, 1 << 62)[5].event_id
        forget(db, removed)
        assert removed not in {r.event_id for r in noted(db)}
        code, answer = reconcile(cfg, "codacy")
        assert code == 1 and not answer["ok"]
        assert findings(answer) == [("never_collected", removed, "-")]

        # 2. an entry the vendor holds (inside the period, behind the cursor) that was never collected
        template = dict(emulator.entries()[0])
        late = {
            **template,
            "_org": ORGS[1],
            "timestamp": format_ms(int(time.time() * 1000) - DAY_MS),
            "details": {"requestId": "0123456789abcdef"},
        }
        emulator.control("POST", "entries", [late])
        (late_id,) = entry_keys(emulator, "codacy") - {r.event_id for r in noted(db)} - {removed}
        code, answer = reconcile(cfg, "codacy", "--organization", ORGS[1])
        assert code == 1 and [s["organization"] for s in answer["streams"]] == [ORGS[1]]
        assert findings(answer) == [("never_collected", late_id, "-")]

        # 3. a sink whose offset is behind: what it has not confirmed is named for it alone
        (offset,) = db.execute("SELECT seq FROM sink_offsets WHERE sink='archive'").fetchone()
        db.execute("UPDATE sink_offsets SET seq = ? WHERE sink='archive'", (offset - 3,))
        db.commit()
        behind = [r.event_id for r in noted(db) if r.seq > offset - 3]
        assert len(behind) == 3
        code, answer = reconcile(cfg, "codacy")
        expected = [("never_collected", removed, "-"), ("never_collected", late_id, "-")]
        expected += [("not_confirmed", i, "archive") for i in behind]
        assert code == 1 and findings(answer) == sorted(expected)
        db.close()

        now = int(time.time() * 1000)
        period = ("--from", format_ms(now - 4 * DAY_MS), "--to", format_ms(now + DAY_MS))
        table = cli(cfg, "reconcile", "--source", "codacy", *period)
        assert table.returncode == 1 and removed in table.stdout and "FAILED: 5 missing" in table.stdout
    finally:
        emulator.stop()


def test_entries_the_vendor_no_longer_returns_are_listed_apart_and_counts_share_a_basis(tmp_path: Path) -> None:
    """After collection the vendor drops its older entries (its retention): reconcile finds
    nothing missing, lists the journaled entries the vendor no longer returns (the forwarder's
    copy is the one left), and its counts say "of the vendor's N" so that "journaled" beside a
    smaller "confirmed" does not read as events a sink never got."""
    emulator = running("configcat", entries=20, options=VENDORS["configcat"].options)
    try:
        cfg = collect(tmp_path, "configcat", emulator.url)
        now = int(time.time() * 1000)
        kept_after = now - DAY_MS
        dropped = [e for e in emulator.entries() if parse_ms(str(e["auditLogDateTime"])) < kept_after]
        assert dropped, "the emulator spreads its entries over two days"
        emulator.control("POST", "config", {"retention_days": 1})
        code, answer = reconcile(cfg, "configcat")
        assert code == 0 and answer["ok"] and findings(answer) == [], answer
        (stream,) = answer["streams"]
        gone = {g["id"] for g in stream["gone_at_vendor"]}
        assert len(gone) == len(dropped) and stream["journaled"] == stream["vendor_entries"] + len(gone)
        assert stream["confirmed"] == {"archive": stream["vendor_entries"], "out": stream["vendor_entries"]}
        period = ("--from", format_ms(now - 4 * DAY_MS), "--to", format_ms(now + DAY_MS))
        text = cli(cfg, "reconcile", "--source", "configcat", *period).stdout
        assert f"of the vendor's {stream['vendor_entries']}, confirmed per sink" in text
        assert f"{len(gone)} journaled entr(ies) the vendor no longer returns" in text
    finally:
        emulator.stop()
