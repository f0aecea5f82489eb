"""The journal: the one durable place between polling and delivery.

Rules that carry the delivery guarantee (``docs/guarantees.md``):

* A page's events and its source's new cursor are written in ONE transaction. A crash keeps
  both or neither, so a cursor never moves past events that are not on disk.
* Each sink has its own offset (the last ``seq`` its receiver confirmed). It moves only after
  confirmation, so a restart resumes every sink where it stopped.
* An event is deleted only once every configured sink's offset is past it.

Events are stored in chunks (``forwarder.chunks``): one row holds up to a thousand consecutive
events of one page, so writing, reading and pruning cost one SQLite row per chunk instead of
one per event (a row per event was a third of the forwarder's CPU). Sinks still confirm per
event: an offset may point into a chunk, and a chunk is deleted once every sink's offset is
past its last event.

SQLite in WAL mode with ``synchronous=FULL``: a committed append survives a crash and a power
cut. Offset commits and prunes skip the fsync (``_transaction(durable=False)``): losing one
only repeats work, and WAL recovery replays an in-order prefix, so neither can survive without
the appends before it. All access goes through one worker thread, so the event loop never
blocks on disk and the connection is never shared between threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from forwarder.chunks import CHUNK_MAX_EVENTS, Chunks, JournalEntry
from forwarder.event import json_safe
from forwarder.state_files import StateFileError, make_state_dir, secure_state_file
from sinks.base import Record, summary

STATE_VERSION = 2
T = TypeVar("T")
_DECODED_CHUNKS = 4  # chunks kept parsed for the sinks that read them next (a few MB)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT NOT NULL, organization TEXT NOT NULL, state BLOB NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (source, organization));
CREATE TABLE IF NOT EXISTS chunks (
    first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, source TEXT NOT NULL,
    organization TEXT NOT NULL, journaled_at REAL NOT NULL, bytes INTEGER NOT NULL,
    meta BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sink_offsets (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sink_inflight (sink TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, organization TEXT NOT NULL,
    reason TEXT NOT NULL, raw BLOB NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, seq INTEGER NOT NULL,
    event_id TEXT NOT NULL, source TEXT NOT NULL, organization TEXT NOT NULL, vendor TEXT NOT NULL,
    time_ms INTEGER NOT NULL, reason TEXT NOT NULL, data BLOB NOT NULL, at REAL NOT NULL);
"""


class StateError(Exception):
    """The state database cannot be used as it is; the daemon refuses to start rather than
    silently resetting cursors (that would re-send or lose history)."""


class DiskFullError(Exception):
    """Writing the journal failed for lack of space: nothing was committed, the cursor did not move."""


@dataclass(frozen=True)
class SinkLag:
    sink: str
    offset: int
    events: int
    oldest_ms: int | None


@dataclass(frozen=True)
class JournalStats:
    events: int
    bytes: int
    head_seq: int
    cursors: list[tuple[str, str, dict[str, Any], float]]
    sinks: list[SinkLag]
    quarantined: dict[tuple[str, str], int]
    dead_letters: dict[str, int]


class Journal:
    def __init__(
        self, path: Path, max_events: int = 1_000_000, max_bytes: int = 1 << 30, migrate: bool = True
    ) -> None:
        """``migrate=False`` for openers without the state lock (``state show``, ``dlq list``): they
        must not rewrite a journal that a daemon of the previous release may be using."""
        self.path = path
        self.migrate = migrate
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        self._events = 0
        self._bytes = 0
        self._head = 0
        self._pruned_to = -1  # the floor of the last prune; -1: not pruned since opening
        self._chunk_cache: OrderedDict[int, tuple[float, list[Record]]] = OrderedDict()

    # --- threading --------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    # --- open and close ---------------------------------------------------------------------
    async def open(self) -> None:
        await self._run(self.open_sync)

    def open_sync(self) -> None:
        existed = self.path.exists() and self.path.stat().st_size > 0
        self._secure_files()
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            version = self._verify(db) if existed else STATE_VERSION
            if version == 1 and not self.migrate:
                db.close()
                raise StateError(
                    f"state database {self.path} has state version 1 and is migrated to version {STATE_VERSION} "
                    "when the daemon (or a state-changing command) next starts; start it once, then run this again"
                )
            if not existed:
                # Chunks are ~1 MB blobs: 16 KiB pages read and write them in a quarter of the
                # system calls of the default 4 KiB (a quarter of the system CPU). Only a new
                # database takes it; an existing one keeps its page size.
                db.execute("PRAGMA page_size=16384")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            # Pruned events, deleted dead letters and quarantined entries must not stay readable
            # in free pages: ON zeroes every freed page (FAST left a chunk's overflow pages, the
            # events themselves, in the file). The cost is measured in docs/performance.md.
            db.execute("PRAGMA secure_delete=ON")
            # A reset WAL is otherwise reused, not cut: the frames beyond the new log's end still
            # held the appended (since pruned) events. 0 cuts it at the first commit after each
            # checkpoint that reset it.
            db.execute("PRAGMA journal_size_limit=0")
            if self.migrate or not existed:  # a read-only opener leaves the schema of another release alone
                db.executescript(_SCHEMA)
            if version == 1:
                self._migrate(db)
            elif not existed:
                db.execute("INSERT INTO meta VALUES ('state_version', ?)", (str(STATE_VERSION),))
            row = db.execute(
                "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0), COALESCE(SUM(bytes), 0), "
                "COALESCE(MAX(last_seq), 0) FROM chunks"
            )
            self._events, self._bytes, self._head = row.fetchone()
            head_row = db.execute("SELECT value FROM meta WHERE key='head_seq'").fetchone()
            if head_row:
                self._head = max(self._head, int(head_row[0]))
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state database {self.path} is unreadable ({exc}); restore it from a backup or move it "
                "aside to start over (cursors would restart from initial_lookback)"
            ) from None
        self._db = db

    def _secure_files(self) -> None:
        """state_dir 0700, the database and the ``-wal`` and ``-shm`` SQLite makes beside it 0600,
        none of them a symlink or another user's file (``forwarder.state_files``). The database is
        created here, empty, so that SQLite, which gives its ``-wal`` and ``-shm`` the database's
        mode, creates them 0600 too, then and after every checkpoint that deletes them."""
        directory, name = self.path.parent, self.path.name
        try:
            make_state_dir(directory)
            for suffix in ("", "-wal", "-shm"):
                secure_state_file(directory, name + suffix, create=not suffix)
        except StateFileError as exc:
            raise StateError(str(exc)) from None
        except OSError as exc:
            raise StateError(
                f"cannot open state database {self.path}: {exc.strerror}; run audit-forwarder and its tools as "
                f"the user that owns {directory}"
            ) from None

    def _migrate(self, db: sqlite3.Connection) -> None:
        try:
            _migrate_from_v1(db)
        except sqlite3.Error as exc:  # the transaction rolled back: version 1 is intact
            raise StateError(
                f"cannot migrate state database {self.path} from state version 1 ({exc}); the file is unchanged. "
                "The migration needs about as much free space as the journal; free some and start again"
            ) from None

    def _verify(self, db: sqlite3.Connection) -> int:
        """The state version of a database that passes the checks."""
        try:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise StateError(f"state database {self.path} is damaged: {result}")
            row = db.execute("SELECT value FROM meta WHERE key='state_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state database {self.path} is not a valid audit-forwarder state file ({exc}); "
                "restore it from a backup or move it aside to start over"
            ) from None
        if row is None:
            raise StateError(
                f"state database {self.path} has no state_version: not an audit-forwarder state file"
            )
        if int(row[0]) not in (1, STATE_VERSION):
            raise StateError(
                f"state database {self.path} has state version {row[0]}, this build reads versions 1 "
                f"and {STATE_VERSION}; use the matching audit-forwarder release"
            )
        return int(row[0])

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    # --- cursors and appends ----------------------------------------------------------------
    async def get_cursor(self, source: str, organization: str) -> dict[str, Any] | None:
        return await self._run(self.get_cursor_sync, source, organization)

    def get_cursor_sync(self, source: str, organization: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT state FROM cursors WHERE source=? AND organization=?", (source, organization)
        ).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def is_full(self) -> bool:
        return self._events >= self.max_events or self._bytes >= self.max_bytes

    @property
    def size(self) -> tuple[int, int]:
        return self._events, self._bytes

    @property
    def head(self) -> int:
        return self._head

    async def append(
        self,
        source: str,
        organization: str,
        entries: Sequence[JournalEntry] | Chunks,
        cursor: dict[str, Any],
        quarantined: Sequence[tuple[str, Any]] = (),
        cursor_source: str | None = None,
    ) -> None:
        await self._run(self.append_sync, source, organization, entries, cursor, quarantined, cursor_source)

    def append_sync(
        self,
        source: str,
        organization: str,
        entries: Sequence[JournalEntry] | Chunks,
        cursor: dict[str, Any],
        quarantined: Sequence[tuple[str, Any]] = (),
        cursor_source: str | None = None,
    ) -> None:
        """One transaction: events, quarantined entries and the cursor, or none of them.

        ``cursor_source`` stores the cursor under another key than the events' source: a backfill
        journals ordinary events while its progress lives apart from the live cursor."""
        now = time.time()
        db = self.db
        chunks = entries if isinstance(entries, Chunks) else Chunks.of(entries)
        rows = chunks.rows(self._head + 1, source, organization, now)
        head = self._head + chunks.count
        try:
            with _transaction(db):
                db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.executemany(
                    "INSERT INTO quarantine (source, organization, reason, raw, at) VALUES (?, ?, ?, ?, ?)",
                    [
                        (source, organization, reason, _quarantine_json(raw), now)
                        for reason, raw in quarantined
                    ],
                )
                db.execute(
                    "INSERT INTO cursors VALUES (?, ?, ?, ?) ON CONFLICT (source, organization) "
                    "DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
                    (cursor_source or source, organization, orjson.dumps(cursor), now),
                )
                if rows:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('head_seq', ?)", (str(head),))
        except sqlite3.OperationalError as exc:
            if "full" in str(exc).lower() or "disk i/o" in str(exc).lower():
                raise DiskFullError(f"cannot write the journal {self.path}: {exc}") from None
            raise
        self._events += chunks.count
        self._bytes += sum(row[5] for row in rows)
        self._head = head

    def set_cursor_sync(self, source: str, organization: str, cursor: dict[str, Any] | None) -> None:
        if cursor is None:
            self.db.execute("DELETE FROM cursors WHERE source=? AND organization=?", (source, organization))
        else:
            self.append_sync(source, organization, [], cursor)

    # --- sinks ------------------------------------------------------------------------------
    async def register_sinks(self, names: Iterable[str]) -> list[str]:
        return await self._run(self.register_sinks_sync, list(names))

    def register_sinks_sync(self, names: list[str]) -> list[str]:
        """A new sink starts at the oldest event still journaled; a sink no longer configured
        loses its offset so it stops holding back pruning. Returns the sinks dropped."""
        db = self.db
        known = {row[0] for row in db.execute("SELECT sink FROM sink_offsets")}
        first = db.execute("SELECT COALESCE(MIN(first_seq), ?) FROM chunks", (self._head + 1,)).fetchone()[0]
        dropped = sorted(known - set(names))
        with _transaction(db):
            for name in names:
                if name not in known:
                    db.execute("INSERT INTO sink_offsets VALUES (?, ?)", (name, first - 1))
            for name in dropped:
                db.execute("DELETE FROM sink_offsets WHERE sink=?", (name,))
                db.execute("DELETE FROM sink_inflight WHERE sink=?", (name,))
        return dropped

    async def offset(self, sink: str) -> int:
        return await self._run(self.offset_sync, sink)

    def offset_sync(self, sink: str) -> int:
        row = self.db.execute("SELECT seq FROM sink_offsets WHERE sink=?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    async def inflight(self, sink: str) -> int | None:
        return await self._run(self.inflight_sync, sink)

    def inflight_sync(self, sink: str) -> int | None:
        """The last seq of the batch the sink was sending when the process stopped, if it never
        got to commit it: the batch to send first, with exactly those members."""
        try:
            row = self.db.execute("SELECT last_seq FROM sink_inflight WHERE sink=?", (sink,)).fetchone()
        except sqlite3.OperationalError:  # opened read-only on a state written before the table existed
            return None
        return int(row[0]) if row else None

    async def begin(self, sink: str, last_seq: int) -> None:
        await self._run(self.begin_sync, sink, last_seq)

    def begin_sync(self, sink: str, last_seq: int) -> None:
        """Noted before a batch is sent, so that after a crash the same batch is sent again rather
        than a bigger one: an idempotent receiver (S3's create-only objects, named after the
        batch's ids) then stores it once. No fsync: lost in a power cut, only that is lost."""
        with _transaction(self.db, durable=False):
            self.db.execute("INSERT OR REPLACE INTO sink_inflight VALUES (?, ?)", (sink, last_seq))

    async def read(self, after_seq: int, max_events: int, max_bytes: int) -> list[Record]:
        return await self._run(self.read_sync, after_seq, max_events, max_bytes)

    def read_sync(self, after_seq: int, max_events: int, max_bytes: int) -> list[Record]:
        """The events after ``after_seq`` in order, at most ``max_events`` and ``max_bytes`` (but at
        least one)."""
        out: list[Record] = []
        total = 0
        last_first = self._chunk_holding(after_seq + 1) - 1
        while True:
            chunks = self.db.execute(
                "SELECT first_seq, last_seq FROM chunks WHERE first_seq > ? ORDER BY first_seq LIMIT 16", (last_first,)
            ).fetchall()
            if not chunks:
                return out
            for first, last in chunks:
                last_first = first
                if last <= after_seq:  # the chunk before a gap, or a caught-up sink's last one
                    continue
                for record in self._decoded(first)[1][max(0, after_seq + 1 - first) :]:
                    total += len(record.data)
                    if out and total > max_bytes:
                        return out
                    out.append(record)
                    if len(out) >= max_events:
                        return out

    def _chunk_holding(self, seq: int) -> int:
        """The first seq of the chunk that holds ``seq`` (or of the last one before it; 0 if none).
        Every query seeks by ``first_seq``, the primary key: a filter on ``last_seq`` scanned
        every chunk not yet pruned, which grew with the backlog."""
        row = self.db.execute("SELECT MAX(first_seq) FROM chunks WHERE first_seq <= ?", (seq,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _decoded(self, first_seq: int) -> tuple[float, list[Record]]:
        """A chunk's journaled_at and records. The last few are kept: every sink reads each chunk
        once or more (a sink batch smaller than a chunk reads it several times)."""
        cached = self._chunk_cache.get(first_seq)
        if cached is not None:
            self._chunk_cache.move_to_end(first_seq)
            return cached
        source, organization, journaled_at, meta, data = self.db.execute(
            "SELECT source, organization, journaled_at, meta, data FROM chunks WHERE first_seq=?", (first_seq,)
        ).fetchone()
        ids, vendors, times, actions, categories, outcomes = orjson.loads(meta)
        new = tuple.__new__
        records = [
            new(Record, (seq, event_id, source, organization, time_ms, line, vendor, action, category, outcome))
            for seq, event_id, time_ms, line, vendor, action, category, outcome in zip(
                range(first_seq, first_seq + len(ids)), ids, times, data.split(b"\n"), vendors, actions, categories,
                outcomes, strict=True,
            )
        ]  # fmt: skip
        decoded = (float(journaled_at), records)
        self._chunk_cache[first_seq] = decoded
        if len(self._chunk_cache) > _DECODED_CHUNKS:
            self._chunk_cache.popitem(last=False)
        return decoded

    async def journaled_at(self, seq: int) -> float | None:
        return await self._run(self.journaled_at_sync, seq)

    def journaled_at_sync(self, seq: int) -> float | None:
        row = self.db.execute(
            "SELECT journaled_at FROM chunks WHERE first_seq = ? AND last_seq >= ?", (self._chunk_holding(seq), seq)
        ).fetchone()
        return None if row is None else float(row[0])

    async def commit(self, sink: str, seq: int, dead: Sequence[tuple[Record, str]] = ()) -> None:
        await self._run(self.commit_sync, sink, seq, dead)

    def commit_sync(self, sink: str, seq: int, dead: Sequence[tuple[Record, str]] = ()) -> None:
        """Move a sink's offset (with any dead letters of that batch) in one transaction.

        Without waiting for an fsync: losing this commit in a power cut only sends the batch
        again (duplicates with the same ids are allowed; losses are not). WAL frames replay in
        order, so the next synchronous commit makes it durable, and it can never survive
        without what was written before it."""
        db = self.db
        now = time.time()
        with _transaction(db, durable=False):
            db.executemany(
                "INSERT INTO dead_letters (sink, seq, event_id, source, organization, vendor, time_ms, reason, data,"
                " at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (sink, r.seq, r.event_id, r.source, r.organization, r.vendor, r.time_ms, reason, r.data, now)
                    for r, reason in dead
                ],
            )
            db.execute("UPDATE sink_offsets SET seq=? WHERE sink=? AND seq < ?", (seq, sink, seq))
            db.execute("DELETE FROM sink_inflight WHERE sink=? AND last_seq <= ?", (sink, seq))

    async def prune(self) -> int:
        return await self._run(self.prune_sync)

    def prune_sync(self) -> int:
        db = self.db
        row = db.execute("SELECT MIN(seq) FROM sink_offsets").fetchone()
        if row is None or row[0] is None:
            return 0
        floor = int(row[0])
        if floor <= self._pruned_to:  # nothing new behind every sink: no statement, no scan
            return 0
        # Losing a prune in a crash only deletes those chunks on the next prune.
        with _transaction(db, durable=False):
            freed = db.execute(
                "DELETE FROM chunks WHERE first_seq <= ? AND last_seq <= ? "
                "RETURNING last_seq - first_seq + 1, bytes, first_seq",
                (floor, floor),
            ).fetchall()
        self._pruned_to = floor
        for _, _, first in freed:
            self._chunk_cache.pop(first, None)
        events = int(sum(n for n, _, _ in freed))
        self._events -= events
        self._bytes -= sum(size for _, size, _ in freed)
        return events

    # --- inspection -------------------------------------------------------------------------
    async def stats(self) -> JournalStats:
        return await self._run(self.stats_sync)

    def stats_sync(self) -> JournalStats:
        db = self.db
        cursors = [
            (s, o, dict(orjson.loads(state)), float(at))
            for s, o, state, at in db.execute(
                "SELECT source, organization, state, updated_at FROM cursors ORDER BY 1, 2"
            )
        ]
        sinks = []
        for sink, seq in db.execute("SELECT sink, seq FROM sink_offsets ORDER BY sink").fetchall():
            count, oldest = db.execute(
                "SELECT COALESCE(SUM(last_seq - MAX(first_seq, ?) + 1), 0), MIN(journaled_at) FROM chunks "
                "WHERE first_seq >= ? AND last_seq > ?",
                (seq + 1, self._chunk_holding(seq + 1), seq),
            ).fetchone()
            sinks.append(SinkLag(sink, int(seq), int(count), None if oldest is None else int(oldest * 1000)))
        quarantined = {
            (s, o): int(n)
            for s, o, n in db.execute("SELECT source, organization, COUNT(*) FROM quarantine GROUP BY 1, 2")
        }
        dead = {s: int(n) for s, n in db.execute("SELECT sink, COUNT(*) FROM dead_letters GROUP BY 1")}
        return JournalStats(self._events, self._bytes, self._head, cursors, sinks, quarantined, dead)

    # --- operator tools (``forwarder.tools``) ------------------------------------------------
    async def set_cursor(self, source: str, organization: str, cursor: dict[str, Any] | None) -> None:
        await self._run(self.set_cursor_sync, source, organization, cursor)

    async def delete_cursors(self, source: str | None, organization: str | None) -> int:
        return await self._run(self.delete_cursors_sync, source, organization)

    def delete_cursors_sync(self, source: str | None, organization: str | None) -> int:
        """None matches any: the next poll of each affected organization starts from initial_lookback."""
        cur = self.db.execute(
            "DELETE FROM cursors WHERE (? IS NULL OR source=?) AND (? IS NULL OR organization=?)",
            (source, source, organization, organization),
        )
        return int(cur.rowcount)

    async def dead_letters(self, sink: str | None = None, ids: Sequence[int] = ()) -> list[DeadLetter]:
        return await self._run(self.dead_letters_sync, sink, ids)

    def dead_letters_sync(self, sink: str | None = None, ids: Sequence[int] = ()) -> list[DeadLetter]:
        rows = self.db.execute(
            "SELECT id, sink, reason, at, seq, event_id, source, organization, time_ms, data, vendor "
            "FROM dead_letters WHERE (? IS NULL OR sink=?) ORDER BY id",
            (sink, sink),
        ).fetchall()
        wanted = set(ids)
        return [
            DeadLetter(int(r[0]), r[1], r[2], float(r[3]), Record(*r[4:])._replace(**_summary(r[9])))
            for r in rows
            if not wanted or r[0] in wanted
        ]

    async def delete_dead_letters(self, ids: Sequence[int]) -> int:
        return await self._run(self.delete_dead_letters_sync, ids)

    def delete_dead_letters_sync(self, ids: Sequence[int]) -> int:
        cur = self.db.executemany("DELETE FROM dead_letters WHERE id=?", [(i,) for i in ids])
        return int(cur.rowcount)


def _quarantine_json(raw: Any) -> bytes:
    """The raw entry as kept in quarantine: whatever made it fail (too deep, a value orjson
    cannot write) must not also fail the page's transaction, cursor and all."""
    try:
        return orjson.dumps(raw, default=str)
    except orjson.JSONEncodeError:
        return orjson.dumps(json_safe(raw), default=str)


def _summary(data: bytes) -> dict[str, Any]:
    """``summary`` as ``Record`` fields, from an event's JSON where no column holds them."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        return {}
    return dict(zip(("action", "category", "outcome"), summary(event), strict=True))


def _migrate_from_v1(db: sqlite3.Connection) -> None:
    """State version 1 kept one row per event; version 2 keeps chunks. Same seqs, offsets and
    cursors, in one transaction: a crash during the migration leaves version 1 intact."""
    with _transaction(db):
        rows = db.execute(
            "SELECT seq, event_id, source, organization, vendor, time_ms, journaled_at, data FROM events ORDER BY seq"
        )
        run: list[tuple[Any, ...]] = []

        def flush() -> None:
            first_seq, _, source, organization, _, _, journaled_at, _ = run[0]
            chunks = Chunks.of(JournalEntry(r[1], r[4], r[5], r[7], **_summary(r[7])) for r in run)
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                chunks.rows(first_seq, source, organization, journaled_at),
            )
            run.clear()

        for row in rows:  # streamed: a full journal does not fit in memory
            if run and (row[0] != run[-1][0] + 1 or row[2:4] != run[0][2:4] or row[6] != run[0][6]
                        or len(run) >= CHUNK_MAX_EVENTS):  # fmt: skip
                flush()  # a gap, another source or organization, another page
            run.append(row)
        if run:
            flush()
        head = db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
        if head:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('head_seq', ?)", (str(head[0]),))
        db.execute("DROP TABLE events")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('state_version', ?)", (str(STATE_VERSION),))


@contextmanager
def _transaction(db: sqlite3.Connection, durable: bool = True) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error. ``durable=False`` commits
    without waiting for the fsync, for writes whose loss only repeats work (module docstring)."""
    if not durable:
        db.execute("PRAGMA synchronous=NORMAL")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite already rolled back on SQLITE_FULL/IOERR
                db.execute("ROLLBACK")
            raise
    finally:
        if not durable:
            db.execute("PRAGMA synchronous=FULL")


@dataclass(frozen=True)
class DeadLetter:
    """A record a sink gave up on, with why and when; ``record`` is what the sink was sent."""

    id: int
    sink: str
    reason: str
    at: float
    record: Record
