"""The journaled events, stored in chunks (``forwarder.chunks``): one row holds up to a thousand
consecutive events of one page, so writing, reading and pruning cost one SQLite row per chunk
instead of one per event (a row per event was a third of the forwarder's CPU). Sinks still
confirm per event: an offset may point into a chunk, and a chunk is deleted once every sink's
offset is past its last event.

A chunk's bytes live in a segment file (``forwarder.journal.segments``), its row keeps where;
rows written by releases before state version 3 keep theirs in ``data``, and are read alike."""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from typing import NamedTuple

import orjson

from forwarder.chunks import Chunks
from forwarder.journal.segments import SegmentStore
from forwarder.record import Record

_COLUMNS = "first_seq, last_seq, source, organization, journaled_at, bytes, meta, data, segment, segment_offset"
_INSERT = f"INSERT INTO chunks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608  # fixed text


class Added(NamedTuple):
    """What an insert adds to the counts once its transaction committed."""

    events: int
    bytes: int
    head: int
    chunks: int


class EventStore:
    """The chunk rows of one connection, with the counts the journal's cap reads at every poll
    (kept in memory: a ``COUNT`` per poll would scan the backlog) and the last chunks parsed."""

    def __init__(self, segments: SegmentStore) -> None:
        self.segments = segments
        self.events = 0
        self.bytes = 0
        self.head = 0
        self._pruned_to = -1  # the floor of the last prune; -1: not pruned since opening
        self._cache: OrderedDict[int, tuple[float, list[Record]]] = OrderedDict()
        self.decoded_chunks = 1  # how many parsed chunks are kept: one per sink (``keep_decoded``)

    def load(self, db: sqlite3.Connection, writer: bool) -> None:
        referenced = db.execute(
            "SELECT segment, segment_offset, bytes FROM chunks WHERE segment IS NOT NULL "
            "ORDER BY segment, segment_offset"
        )
        self.segments.load(referenced, writer)
        row = db.execute(
            "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0), COALESCE(SUM(bytes), 0), "
            "COALESCE(MAX(last_seq), 0) FROM chunks"
        )
        self.events, self.bytes, self.head = row.fetchone()
        head_row = db.execute("SELECT value FROM meta WHERE key='head_seq'").fetchone()
        if head_row:  # the head outlives pruning everything
            self.head = max(self.head, int(head_row[0]))

    def insert(self, db: sqlite3.Connection, chunks: Chunks, source: str, organization: str, now: float) -> Added:
        """Inside the caller's transaction, which must commit (then ``added``) after the chunks'
        bytes are synced to their segment here."""
        rows = chunks.rows(self.head + 1, source, organization, now)
        head = self.head + chunks.count
        if rows:
            places = self.segments.write(self.head + 1, [row[7] for row in rows])
            db.executemany(_INSERT, [(*row[:7], b"", *place) for row, place in zip(rows, places, strict=True)])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('head_seq', ?)", (str(head),))
        return Added(chunks.count, sum(row[5] for row in rows), head, len(rows))

    def added(self, added: Added) -> None:
        self.events += added.events
        self.bytes += added.bytes
        self.head = added.head
        if added.chunks:
            self.segments.committed(added.chunks)

    def uncommitted(self, rolled_back: bool) -> None:
        """The transaction of an ``insert`` did not commit; ``rolled_back``: it failed before its ``COMMIT``."""
        self.segments.uncommitted(rolled_back)

    def first_seq(self, db: sqlite3.Connection) -> int:
        """The oldest seq still journaled (the next one when none is)."""
        return int(db.execute("SELECT COALESCE(MIN(first_seq), ?) FROM chunks", (self.head + 1,)).fetchone()[0])

    def read(self, db: sqlite3.Connection, after_seq: int, max_events: int, max_bytes: int) -> list[Record]:
        """The events after ``after_seq`` in order, at most ``max_events`` and ``max_bytes`` (but at
        least one)."""
        batch = Batch(max_events, max_bytes)
        last_first = self._chunk_holding(db, after_seq + 1) - 1
        while True:
            chunks = db.execute(
                "SELECT first_seq, last_seq FROM chunks WHERE first_seq > ? ORDER BY first_seq LIMIT 16", (last_first,)
            ).fetchall()
            if not chunks:
                return batch.records
            for first, last in chunks:
                last_first = first
                if last <= after_seq:  # the chunk before a gap, or a caught-up sink's last one
                    continue
                if not batch.take(self._decoded(db, first)[1][max(0, after_seq + 1 - first) :]):
                    return batch.records

    def journaled_at(self, db: sqlite3.Connection, seq: int) -> float | None:
        row = db.execute(
            "SELECT journaled_at FROM chunks WHERE first_seq = ? AND last_seq >= ?", (self._chunk_holding(db, seq), seq)
        ).fetchone()
        return None if row is None else float(row[0])

    def pending(self, db: sqlite3.Connection, offset: int) -> tuple[int, int | None]:
        """How many events lie after ``offset``, and when the oldest of them was journaled (ms)."""
        count, oldest = db.execute(
            "SELECT COALESCE(SUM(last_seq - MAX(first_seq, ?) + 1), 0), MIN(journaled_at) FROM chunks "
            "WHERE first_seq >= ? AND last_seq > ?",
            (offset + 1, self._chunk_holding(db, offset + 1), offset),
        ).fetchone()
        return int(count), None if oldest is None else int(oldest * 1000)

    def prune(self, db: sqlite3.Connection, floor: int) -> list[tuple[int, int, int, int | None, int | None]] | None:
        """Inside the caller's transaction: deletes the chunks wholly at or below ``floor``;
        ``pruned`` once it committed. None when nothing new lies behind every sink (no
        statement, no scan)."""
        if floor <= self._pruned_to:
            return None
        return db.execute(
            "DELETE FROM chunks WHERE first_seq <= ? AND last_seq <= ? "
            "RETURNING last_seq - first_seq + 1, bytes, first_seq, segment, segment_offset",
            (floor, floor),
        ).fetchall()

    def pruned(self, floor: int, freed: list[tuple[int, int, int, int | None, int | None]]) -> int:
        """Once the prune committed durably: the events pruned; their bytes are let go."""
        self._pruned_to = floor
        for _, _, first, _, _ in freed:
            self._cache.pop(first, None)
        events = int(sum(n for n, _, _, _, _ in freed))
        self.events -= events
        self.bytes -= sum(size for _, size, _, _, _ in freed)
        self.segments.released([(s, at, size) for _, size, _, s, at in freed if s is not None and at is not None])
        return events

    def forget_decoded(self) -> None:
        self._cache.clear()

    def keep_decoded(self, sinks: int) -> None:
        """Keeps one parsed chunk per sink. A sink reads the journal in order, so the chunk its
        next batch starts in is the one its last batch ended in: one chunk each spares every
        re-parse while the sinks read within a chunk of each other (one that lags further behind
        parses its chunks again, as it did past the four kept before). A parsed chunk is ~1 MiB
        of small allocations (a bytes object and a record per event) in the malloc heap; the
        four kept before, whatever the sinks, held a 100,000-event file-sink
        drain's peak RSS 2-3 MB higher."""
        self.decoded_chunks = max(1, sinks)
        while len(self._cache) > self.decoded_chunks:
            self._cache.popitem(last=False)

    def _chunk_holding(self, db: sqlite3.Connection, seq: int) -> int:
        """The first seq of the chunk that holds ``seq`` (or of the last one before it; 0 if none).
        Every query seeks by ``first_seq``, the primary key: a filter on ``last_seq`` scanned
        every chunk not yet pruned, which grew with the backlog."""
        row = db.execute("SELECT MAX(first_seq) FROM chunks WHERE first_seq <= ?", (seq,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _decoded(self, db: sqlite3.Connection, first_seq: int) -> tuple[float, list[Record]]:
        """A chunk's journaled_at and records. The last one per sink is kept (``keep_decoded``): a
        sink batch smaller than a chunk reads it several times."""
        cached = self._cache.get(first_seq)
        if cached is not None:
            self._cache.move_to_end(first_seq)
            return cached
        source, organization, journaled_at, meta, data, segment, offset, size = db.execute(
            "SELECT source, organization, journaled_at, meta, data, segment, segment_offset, bytes FROM chunks "
            "WHERE first_seq=?",
            (first_seq,),
        ).fetchone()
        if segment is not None:
            data = self.segments.read(segment, offset, size)
        decoded = (float(journaled_at), decode(first_seq, source, organization, meta, data))
        self._cache[first_seq] = decoded
        while len(self._cache) > self.decoded_chunks:
            self._cache.popitem(last=False)
        return decoded


class Batch:
    """The records one read gathers, in seq order, up to its limits (but at least one)."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.records: list[Record] = []
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._bytes = 0

    def take(self, records: list[Record]) -> bool:
        """Adds ``records`` in order; False once the batch is full."""
        for record in records:
            self._bytes += len(record.data)
            if self.records and self._bytes > self.max_bytes:
                return False
            self.records.append(record)
            if len(self.records) >= self.max_events:
                return False
        return True


def decode(first_seq: int, source: str, organization: str, meta: bytes, data: bytes) -> list[Record]:
    """A chunk row's records: the columns from ``meta``, one JSON line each from ``data``."""
    ids, vendors, times, actions, categories, outcomes = orjson.loads(meta)
    new = tuple.__new__
    return [
        new(Record, (seq, event_id, source, organization, time_ms, line, vendor, action, category, outcome))
        for seq, event_id, time_ms, line, vendor, action, category, outcome in zip(
            range(first_seq, first_seq + len(ids)),
            ids,
            times,
            data.split(b"\n"),
            vendors,
            actions,
            categories,
            outcomes,
            strict=True,
        )
    ]
