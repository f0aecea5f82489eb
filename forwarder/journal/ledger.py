"""The evidence ledger: what was journaled, kept after the journal prunes the events.

``reconcile`` and ``report`` must answer, months later, "did the forwarder collect this vendor
entry, and did every sink confirm it?". The events themselves are pruned once every sink has
them, so at append time, in the page's own transaction, each event is noted: its journal seq,
its stream, its chain seq, its id, its event time and its chain hash. The notes are stored a
run at a time (``LedgerRun``: up to a chunk of consecutive events, their journal and chain seqs
both stepping by one, the other fields packed in three arrays): one row per chunk instead of
one per event made the ledger's share of an append a few percent of what it was, and every
question asked of it is by stream and event time, which a run's time span answers. A sink's
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
import struct
import time
from binascii import unhexlify
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from forwarder.chunks import CHUNK_MAX_EVENTS, Chunks
from forwarder.evidence.chain import Head, fields
from forwarder.journal.transaction import transaction
from forwarder.journal.types import StateError
from forwarder.record import Record

GAP_ACTION = "forwarder.gap"
_HASH_KEY = b',"hash":"'
TIME_BYTES = 8
RUN_MAX_EVENTS = CHUNK_MAX_EVENTS  # what a listing unpacks at most to answer for one event


class LedgerRow(NamedTuple):
    seq: int  # the journal seq (what sink offsets count)
    chain_seq: int
    event_id: str
    time_ms: int
    hash: str


class LedgerRun(NamedTuple):
    """Consecutive events of one stream: journal seqs ``first_seq``.. and chain seqs
    ``first_chain_seq``.. both step by one. ``times``: big-endian int64 each (PostgreSQL's
    ``int8send``, so its migration packs them in SQL); ``hashes``: one width each (32 bytes from
    the chain; a hash read from an event written otherwise keeps its own, in a run of that
    width); ``ids``: a JSON array (an id may hold any character)."""

    first_seq: int
    first_chain_seq: int
    min_time: int
    max_time: int
    times: bytes
    hashes: bytes
    ids: bytes

    @property
    def events(self) -> int:
        return len(self.times) // TIME_BYTES


def unpack(run: LedgerRun, from_ms: int = -(1 << 63), to_ms: int = 1 << 63) -> Iterator[LedgerRow]:
    """The run's rows with an event time in ``[from_ms, to_ms)``, by seq."""
    ids = orjson.loads(run.ids)
    times = struct.unpack(f">{len(ids)}q", run.times)
    hashes = run.hashes
    width = len(hashes) // len(ids)
    for i, (event_id, time_ms) in enumerate(zip(ids, times, strict=True)):
        if from_ms <= time_ms < to_ms:
            digest = hashes[i * width : (i + 1) * width].hex()
            yield LedgerRow(run.first_seq + i, run.first_chain_seq + i, event_id, time_ms, digest)


def trimmed(run: LedgerRun, cutoff: int) -> tuple[list[LedgerRun], int]:
    """A run spanning a prune's ``cutoff`` without its events before it: the runs to write
    again in its place, and how many events it lost (both backends' prunes)."""
    kept = [(r.seq, r.chain_seq, r.event_id, r.time_ms, bytes.fromhex(r.hash)) for r in unpack(run, cutoff)]
    return pack(kept), run.events - len(kept)


def pack(rows: Iterable[tuple[int, int, str, int, bytes]]) -> list[LedgerRun]:
    """Rows ``(seq, chain_seq, event id, time_ms, raw hash)`` of one stream, by seq, as runs."""
    runs: list[LedgerRun] = []
    run: list[tuple[int, int, str, int, bytes]] = []

    def flush() -> None:
        times = [r[3] for r in run]
        runs.append(
            LedgerRun(
                run[0][0], run[0][1], min(times), max(times), struct.pack(f">{len(times)}q", *times),
                b"".join(r[4] for r in run), orjson.dumps([r[2] for r in run]),
            )
        )  # fmt: skip
        run.clear()

    for row in rows:
        if run and (
            row[0] != run[-1][0] + 1
            or row[1] != run[-1][1] + 1
            or len(row[4]) != len(run[-1][4])
            or len(run) >= RUN_MAX_EVENTS
        ):
            flush()
        run.append(row)
    if run:
        flush()
    return runs


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
) -> tuple[list[LedgerRun], list[LedgerGap]]:
    """The ledger runs of a page about to be journaled from ``first_seq``. With ``chain`` (the
    poller's heads before and after) the chain seqs follow from the order, and each chunk is one
    run: its columns packed as they are, the hashes the poller handed with the events (else read
    off each event's tail). Without it (a caller that links nothing) each event's own chain
    fields are read, and an event without any is not noted: it has no place a reconcile could
    check."""
    gaps: list[LedgerGap] = []
    ordered = chain is not None and chain[1].seq - chain[0].seq == chunks.count
    if not ordered:
        rows: list[tuple[int, int, str, int, bytes]] = []
        for i, entry in enumerate(chunks):
            found = hash_of(entry.data, parse=True)
            raw = None if found is None else _raw(found[1])
            if found is not None and raw is not None:
                rows.append((first_seq + i, found[0], entry.event_id, entry.time_ms, raw))
                if entry.action == GAP_ACTION:
                    gaps.append(_gap(source, organization, found[0], entry.time_ms, entry.data))
        return pack(rows), gaps
    assert chain is not None
    chunks.cut()
    hashes = chunks.hashes
    if hashes is None or len(hashes) != chunks.count or (hashes and hashes[-1] != chain[1].hash):
        return _searched(chunks, first_seq, source, organization, chain[0].seq + 1)
    runs: list[LedgerRun] = []
    seq, chain_seq, at = first_seq, chain[0].seq + 1, 0
    for (ids, _, times, actions, _, _), data in chunks.done:  # the columns as stored: no per-event work
        n = len(ids)
        runs.append(
            LedgerRun(
                seq, chain_seq, min(times), max(times), struct.pack(f">{n}q", *times),
                unhexlify("".join(hashes[at : at + n])), orjson.dumps(ids),
            )
        )  # fmt: skip
        if GAP_ACTION in actions:
            for i, line in enumerate(data.split(b"\n")):
                if actions[i] == GAP_ACTION:
                    gaps.append(_gap(source, organization, chain_seq + i, times[i], line))
        seq, chain_seq, at = seq + n, chain_seq + n, at + n
    return runs, gaps


def _searched(
    chunks: Chunks, first_seq: int, source: str, organization: str, chain_seq: int
) -> tuple[list[LedgerRun], list[LedgerGap]]:
    """``rows_of`` for linked events whose hashes were not handed over: each read off the
    event's tail (the chain is its last key), parsed only when it is not there."""
    rows: list[tuple[int, int, str, int, bytes]] = []
    gaps: list[LedgerGap] = []
    seq = first_seq
    for (ids, _, times, actions, _, _), data in chunks.done:
        for event_id, time_ms, action, line in zip(ids, times, actions, data.split(b"\n"), strict=True):
            if line[-76:-67] == _HASH_KEY and line[-3:] == b'"}}':
                raw = _raw(line[-67:-3].decode())
            else:
                found = hash_of(line, parse=True)
                raw = None if found is None else _raw(found[1])
            if raw is None:
                seq += 1
                chain_seq += 1
                continue
            rows.append((seq, chain_seq, event_id, time_ms, raw))
            if action == GAP_ACTION:
                gaps.append(_gap(source, organization, chain_seq, time_ms, line))
            seq += 1
            chain_seq += 1
    return pack(rows), gaps


def _raw(digest: str) -> bytes | None:
    """A hash as stored; None for one that is not hex (an event no chain wrote: not noted)."""
    try:
        return bytes.fromhex(digest)
    except ValueError:
        return None


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
