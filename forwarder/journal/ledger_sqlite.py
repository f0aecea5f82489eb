"""The evidence ledger's SQLite side (``forwarder.journal.ledger`` has what it stores, and why):
its tables, and each write and question, inside the caller's connection and transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from forwarder.journal.ledger import (
    RUN_MAX_EVENTS,
    TIME_BYTES,
    EvidenceRun,
    LedgerGap,
    LedgerRow,
    LedgerRun,
    SinkConfirmation,
    pack,
    trimmed,
    unpack,
)
from forwarder.journal.transaction import transaction
from forwarder.journal.types import StateError

TABLES = """
CREATE TABLE IF NOT EXISTS ledger_streams (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, organization TEXT NOT NULL, UNIQUE (source, organization));
CREATE TABLE IF NOT EXISTS ledger_runs (
    first_seq INTEGER PRIMARY KEY, stream INTEGER NOT NULL, min_time INTEGER NOT NULL, max_time INTEGER NOT NULL,
    first_chain_seq INTEGER NOT NULL, times BLOB NOT NULL, hashes BLOB NOT NULL, ids BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_runs_by_end ON ledger_runs (stream, max_time, min_time);
CREATE INDEX IF NOT EXISTS ledger_runs_by_start ON ledger_runs (stream, min_time);
CREATE TABLE IF NOT EXISTS ledger_gaps (
    stream INTEGER NOT NULL, chain_seq INTEGER NOT NULL, time_ms INTEGER NOT NULL, from_ms INTEGER,
    to_ms INTEGER, reason TEXT NOT NULL, PRIMARY KEY (stream, chain_seq));
CREATE TABLE IF NOT EXISTS ledger_dead (sink TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (sink, seq))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sink_starts (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS evidence_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, at REAL NOT NULL, scope TEXT NOT NULL,
    ok INTEGER NOT NULL, summary BLOB NOT NULL);
"""


def _stream(db: sqlite3.Connection, source: str, organization: str) -> int:
    row = db.execute(
        "INSERT INTO ledger_streams (source, organization) VALUES (?, ?) ON CONFLICT (source, organization) "
        "DO UPDATE SET source=excluded.source RETURNING id",
        (source, organization),
    ).fetchone()
    return int(row[0])


_INSERT_RUN = (  # LedgerRun's fields, after the stream
    "INSERT INTO ledger_runs (stream, first_seq, first_chain_seq, min_time, max_time, times, hashes, ids) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert(
    db: sqlite3.Connection, source: str, organization: str, runs: list[LedgerRun], gaps: list[LedgerGap]
) -> None:
    """Inside the append's transaction: the ledger commits with the events it notes. A plain
    INSERT: a run's first seq is the journal's next seq, never used before (the head is kept
    in ``meta`` past pruning, in this same transaction)."""
    if not runs:
        return
    stream = _stream(db, source, organization)
    db.executemany(
        _INSERT_RUN,
        [(stream, *run) for run in runs],
    )
    if gaps:
        db.executemany(
            "INSERT OR REPLACE INTO ledger_gaps VALUES (?, ?, ?, ?, ?, ?)",
            [(stream, g.chain_seq, g.time_ms, g.from_ms, g.to_ms, g.reason) for g in gaps],
        )


def fold_legacy(db: sqlite3.Connection) -> int:
    """Migration of a state of version 2: the rows of the one-row-per-event ``ledger`` table
    (this layout's predecessor) become runs, in one transaction; the table is dropped. The
    number of rows folded."""
    try:
        return _fold_legacy(db)
    except sqlite3.Error as exc:  # the transaction rolled back: the old table is intact
        raise StateError(
            f"cannot convert the evidence ledger to runs ({exc}); the state file is unchanged. The conversion "
            "needs about as much free space as the ledger; free some and start again"
        ) from None


def _fold_legacy(db: sqlite3.Connection) -> int:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='ledger'").fetchone() is None:
        return 0
    folded = 0
    with transaction(db):
        stream: int | None = None
        rows: list[tuple[int, int, str, int, bytes]] = []

        def flush() -> None:
            db.executemany(_INSERT_RUN, [(stream, *run) for run in pack(rows)])
            rows.clear()

        # streamed, a run's worth at a time: a year of rows does not fit in memory
        for s, seq, chain_seq, event_id, time_ms, digest in db.execute(
            "SELECT stream, seq, chain_seq, event_id, time_ms, hash FROM ledger ORDER BY stream, seq"
        ):
            if rows and (s != stream or len(rows) >= RUN_MAX_EVENTS):
                flush()
            stream = s
            rows.append((int(seq), int(chain_seq), str(event_id), int(time_ms), bytes(digest)))
            folded += 1
        if rows:
            flush()
        db.execute("DROP TABLE ledger")
    return folded


def mark_dead(db: sqlite3.Connection, sink: str, seqs: Iterable[int]) -> None:
    """Inside the commit's transaction, with the dead letters and the offset passing them."""
    db.executemany("INSERT OR IGNORE INTO ledger_dead VALUES (?, ?)", [(sink, s) for s in seqs])


def unmark_dead(db: sqlite3.Connection, dead_letter_ids: Sequence[int]) -> None:
    """Inside the caller's transaction, before the dead letters themselves are deleted: a
    replay's receiver confirmed them, so the ledger counts them confirmed, no longer dead."""
    db.executemany(
        "DELETE FROM ledger_dead WHERE EXISTS (SELECT 1 FROM dead_letters d"
        " WHERE d.id = ? AND d.sink = ledger_dead.sink AND d.seq = ledger_dead.seq)",
        [(i,) for i in dead_letter_ids],
    )


def note_start(db: sqlite3.Connection, sink: str, seq: int) -> None:
    """A sink registered now starts after ``seq``: the events at or before it never went to it."""
    db.execute("INSERT OR REPLACE INTO sink_starts VALUES (?, ?)", (sink, seq))


def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


def listing(db: sqlite3.Connection, source: str, organization: str, from_ms: int, to_ms: int) -> list[LedgerRow]:
    """The stream's rows with an event time in ``[from_ms, to_ms)``, by journal seq: the runs
    whose time span meets the period, unpacked and filtered."""
    found: list[LedgerRow] = []
    try:
        for run in db.execute(
            "SELECT first_seq, first_chain_seq, min_time, max_time, times, hashes, ids FROM ledger_runs WHERE "
            "stream = (SELECT id FROM ledger_streams WHERE source=? AND organization=?) AND max_time >= ? "
            "AND min_time < ? ORDER BY first_seq",
            (source, organization, from_ms, to_ms),
        ):
            found.extend(unpack(LedgerRun(*run), from_ms, to_ms))
    except sqlite3.OperationalError as exc:  # a state file of a release without the ledger
        if not _missing_table(exc):
            raise
    return found


def streams(db: sqlite3.Connection) -> list[tuple[str, str]]:
    try:
        return [
            (str(a), str(b)) for a, b in db.execute("SELECT source, organization FROM ledger_streams ORDER BY 1, 2")
        ]
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return []
        raise


def gaps(db: sqlite3.Connection, from_ms: int, to_ms: int) -> list[LedgerGap]:
    try:
        rows = db.execute(
            "SELECT s.source, s.organization, g.chain_seq, g.time_ms, g.from_ms, g.to_ms, g.reason FROM ledger_gaps g "
            "JOIN ledger_streams s ON s.id = g.stream WHERE g.time_ms >= ? AND g.time_ms < ? ORDER BY 1, 2, 3",
            (from_ms, to_ms),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return []
        raise
    return [LedgerGap(*r) for r in rows]


def confirmations(db: sqlite3.Connection) -> list[SinkConfirmation]:
    try:
        starts = dict(db.execute("SELECT sink, seq FROM sink_starts").fetchall())
        dead: dict[str, set[int]] = {}
        for sink, seq in db.execute("SELECT sink, seq FROM ledger_dead"):
            dead.setdefault(sink, set()).add(int(seq))
    except sqlite3.OperationalError as exc:
        if not _missing_table(exc):
            raise
        starts, dead = {}, {}
    return [
        SinkConfirmation(sink, int(starts.get(sink, 0)), int(seq), frozenset(dead.get(sink, ())))
        for sink, seq in db.execute("SELECT sink, seq FROM sink_offsets ORDER BY sink")
    ]


def prune(db: sqlite3.Connection, cutoffs: Mapping[str, int], default_cutoff: int) -> int:
    """Inside the caller's transaction: the events with an event time before their source's
    cutoff (ms), and dead-letter notes below the oldest seq still in the ledger. The runs wholly
    before the cutoff go; the few spanning it are written again without those events. Each seek
    is by an index: a prune with nothing to delete reads a few pages. The number of events."""
    deleted = 0
    for stream, source in db.execute("SELECT id, source FROM ledger_streams").fetchall():
        cutoff = cutoffs.get(source, default_cutoff)
        gone = db.execute(
            "DELETE FROM ledger_runs WHERE stream=? AND max_time < ? RETURNING length(times)", (stream, cutoff)
        ).fetchall()
        deleted += sum(int(n) for (n,) in gone) // TIME_BYTES
        spanning = db.execute(  # after the delete, the runs starting before the cutoff are those spanning it
            "DELETE FROM ledger_runs WHERE stream=? AND min_time < ? "
            "RETURNING first_seq, first_chain_seq, min_time, max_time, times, hashes, ids",
            (stream, cutoff),
        ).fetchall()
        for row in spanning:
            runs, lost = trimmed(LedgerRun(*row), cutoff)
            db.executemany(_INSERT_RUN, [(stream, *r) for r in runs])
            deleted += lost
        db.execute("DELETE FROM ledger_gaps WHERE stream=? AND time_ms < ?", (stream, cutoff))
    if deleted:
        oldest = db.execute("SELECT MIN(first_seq) FROM ledger_runs").fetchone()[0]
        db.execute("DELETE FROM ledger_dead WHERE seq < ?", (oldest if oldest is not None else 1 << 62,))
    return int(deleted)


def record_run(db: sqlite3.Connection, kind: str, scope: str, ok: bool, summary: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO evidence_runs (kind, at, scope, ok, summary) VALUES (?, ?, ?, ?, ?)",
        (kind, time.time(), scope, int(ok), orjson.dumps(summary)),
    )


def last_runs(db: sqlite3.Connection) -> list[EvidenceRun]:
    """The newest run of each kind and scope."""
    try:
        rows = db.execute(
            "SELECT kind, at, scope, ok, summary FROM evidence_runs WHERE id IN "
            "(SELECT MAX(id) FROM evidence_runs GROUP BY kind, scope) ORDER BY kind, scope"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return []
        raise
    return [EvidenceRun(str(k), float(a), str(s), bool(o), orjson.loads(m)) for k, a, s, o, m in rows]


def quarantined(db: sqlite3.Connection, from_s: float, to_s: float) -> dict[tuple[str, str], list[str]]:
    """Reasons of the entries quarantined in the period (by when they were), per stream."""
    out: dict[tuple[str, str], list[str]] = {}
    for source, organization, reason in db.execute(
        "SELECT source, organization, reason FROM quarantine WHERE at >= ? AND at < ? ORDER BY id", (from_s, to_s)
    ):
        out.setdefault((source, organization), []).append(str(reason))
    return out
