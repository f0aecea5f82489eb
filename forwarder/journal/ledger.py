"""The evidence ledger: what was journaled, kept after the journal prunes the events.

``reconcile`` and ``report`` must answer, months later, "did the forwarder collect this vendor
entry, and did every sink confirm it?". The events themselves are pruned once every sink has
them, so at append time, in the page's own transaction, each event leaves one compact row:
its journal seq, its stream, its chain seq, its id, its event time and its chain hash. A sink's
confirmation needs no row per event: offsets only grow, so a sink's offset says every journal
seq at or below it was confirmed or dead-lettered; the dead letters are noted by seq (kept
even after ``dlq purge``), and each sink's starting seq (a sink added later never had the
events before it). Gap events also leave a row in ``ledger_gaps`` with the interval lost.

Rows are kept ``evidence.ledger_retention_days`` (default: each source's vendor retention, past
which the vendor cannot be asked again anyway), pruned by event time by the daemon's pruner.

This module holds what both backends share (rows built from a page) and the SQLite side.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from forwarder.chunks import Chunks
from forwarder.evidence.chain import Head, fields
from forwarder.record import Record

GAP_ACTION = "forwarder.gap"
_HASH_KEY = b',"hash":"'


class LedgerRow(NamedTuple):
    seq: int  # the journal seq (what sink offsets count)
    chain_seq: int
    event_id: str
    time_ms: int
    hash: str


class LedgerGap(NamedTuple):
    source: str
    organization: str
    chain_seq: int
    time_ms: int  # when the gap was noticed (the gap event's time)
    from_ms: int | None
    to_ms: int | None
    reason: str


class SinkConfirmation(NamedTuple):
    """A sink's word on the journal: seqs in ``(start, offset]`` were confirmed, except ``dead``."""

    sink: str
    start: int
    offset: int
    dead: frozenset[int]

    def state(self, seq: int) -> str:
        if seq <= self.start:
            return "not sent (the sink was added later)"
        if seq > self.offset:
            return "not confirmed"
        return "dead-lettered" if seq in self.dead else "confirmed"


class EvidenceRun(NamedTuple):
    kind: str  # verify, reconcile
    at: float
    scope: str
    ok: bool
    summary: dict[str, Any]


def hash_of(data: bytes, parse: bool = False) -> tuple[int, str] | None:
    """``(chain seq or 0, hash)`` of an event's JSON. The chain is the event's last key as
    serialized (``chain.link`` adds it last), so unless ``parse`` the hash is read off the tail
    without parsing the whole event (seq 0: the caller knows it); anything else is parsed."""
    if not parse and data[-76:-67] == _HASH_KEY and data[-3:] == b'"}}':
        return 0, data[-67:-3].decode()
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    found = fields(event) if isinstance(event, dict) else None
    return None if found is None else (found[0], found[2])


def rows_of(
    chunks: Chunks, first_seq: int, source: str, organization: str, chain: tuple[Head, Head] | None
) -> tuple[list[LedgerRow], list[LedgerGap]]:
    """The ledger rows of a page about to be journaled from ``first_seq``. With ``chain`` (the
    poller's heads before and after) the chain seqs follow from the order; without it (a
    caller that links nothing) each event's own chain fields are read, and an event without
    any leaves no row: it has no place a reconcile could check."""
    rows: list[LedgerRow] = []
    gaps: list[LedgerGap] = []
    ordered = chain is not None and chain[1].seq - chain[0].seq == chunks.count
    if not ordered:
        for i, entry in enumerate(chunks):
            found = hash_of(entry.data, parse=True)
            if found is not None:
                rows.append(LedgerRow(first_seq + i, found[0], entry.event_id, entry.time_ms, found[1]))
                if entry.action == GAP_ACTION:
                    gaps.append(_gap(source, organization, found[0], entry.time_ms, entry.data))
        return rows, gaps
    assert chain is not None
    chunks.cut()
    seq, chain_seq = first_seq, chain[0].seq + 1
    new = tuple.__new__
    for (ids, _, times, actions, _, _), data in chunks.done:  # the columns as stored: no per-event tuple
        lines = data.split(b"\n")
        for event_id, time_ms, action, line in zip(ids, times, actions, lines, strict=True):
            if line[-76:-67] == _HASH_KEY and line[-3:] == b'"}}':
                digest = line[-67:-3].decode()
            else:
                found = hash_of(line, parse=True)
                if found is None:
                    seq += 1
                    chain_seq += 1
                    continue
                digest = found[1]
            rows.append(new(LedgerRow, (seq, chain_seq, event_id, time_ms, digest)))
            if action == GAP_ACTION:
                gaps.append(_gap(source, organization, chain_seq, time_ms, line))
            seq += 1
            chain_seq += 1
    return rows, gaps


def _gap(source: str, organization: str, chain_seq: int, time_ms: int, data: bytes) -> LedgerGap:
    from forwarder.event import parse_ms

    event = orjson.loads(data)
    details = event.get("details") if isinstance(event.get("details"), dict) else {}

    def ms(key: str) -> int | None:
        try:
            return parse_ms(details[key])
        except Exception:
            return None

    reason = str(event.get("message") or "history lost")
    return LedgerGap(source, organization, chain_seq, time_ms, ms("from"), ms("to"), reason)


def dead_seqs(dead: Sequence[tuple[Record, str]]) -> list[int]:
    return [record.seq for record, _ in dead]


# --- SQLite ---------------------------------------------------------------------------------

TABLES = """
CREATE TABLE IF NOT EXISTS ledger_streams (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, organization TEXT NOT NULL, UNIQUE (source, organization));
CREATE TABLE IF NOT EXISTS ledger (
    stream INTEGER NOT NULL, time_ms INTEGER NOT NULL, seq INTEGER NOT NULL, chain_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (stream, time_ms, seq)) WITHOUT ROWID;
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


def insert(
    db: sqlite3.Connection, source: str, organization: str, rows: list[LedgerRow], gaps: list[LedgerGap]
) -> None:
    """Inside the append's transaction: the ledger commits with the events it notes."""
    if not rows:
        return
    stream = _stream(db, source, organization)
    db.executemany(
        "INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?, ?, ?)",
        [(stream, r.time_ms, r.seq, r.chain_seq, r.event_id, bytes.fromhex(r.hash)) for r in rows],
    )
    db.executemany(
        "INSERT OR REPLACE INTO ledger_gaps VALUES (?, ?, ?, ?, ?, ?)",
        [(stream, g.chain_seq, g.time_ms, g.from_ms, g.to_ms, g.reason) for g in gaps],
    )


def mark_dead(db: sqlite3.Connection, sink: str, seqs: Iterable[int]) -> None:
    """Inside the commit's transaction, with the dead letters and the offset passing them."""
    db.executemany("INSERT OR IGNORE INTO ledger_dead VALUES (?, ?)", [(sink, s) for s in seqs])


def note_start(db: sqlite3.Connection, sink: str, seq: int) -> None:
    """A sink registered now starts after ``seq``: the events at or before it never went to it."""
    db.execute("INSERT OR REPLACE INTO sink_starts VALUES (?, ?)", (sink, seq))


def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


def listing(db: sqlite3.Connection, source: str, organization: str, from_ms: int, to_ms: int) -> list[LedgerRow]:
    """The stream's rows with an event time in ``[from_ms, to_ms)``, by journal seq."""
    try:
        rows = db.execute(
            "SELECT l.seq, l.chain_seq, l.event_id, l.time_ms, l.hash FROM ledger l JOIN ledger_streams s "
            "ON s.id = l.stream WHERE s.source=? AND s.organization=? AND l.time_ms >= ? AND l.time_ms < ? "
            "ORDER BY l.seq",
            (source, organization, from_ms, to_ms),
        ).fetchall()
    except sqlite3.OperationalError as exc:  # a state file of a release without the ledger
        if _missing_table(exc):
            return []
        raise
    return [LedgerRow(int(a), int(b), str(c), int(d), bytes(e).hex()) for a, b, c, d, e in rows]


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
    """Inside the caller's transaction: rows with an event time before their source's cutoff
    (ms), and dead-letter notes below the oldest seq still in the ledger. Seeks by the
    primary key, stream by stream: a prune with nothing to delete reads a few pages."""
    deleted = 0
    for stream, source in db.execute("SELECT id, source FROM ledger_streams").fetchall():
        cutoff = cutoffs.get(source, default_cutoff)
        deleted += db.execute("DELETE FROM ledger WHERE stream=? AND time_ms < ?", (stream, cutoff)).rowcount
        db.execute("DELETE FROM ledger_gaps WHERE stream=? AND time_ms < ?", (stream, cutoff))
    if deleted:
        oldest = db.execute("SELECT MIN(seq) FROM ledger").fetchone()[0]
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
