"""The embedded backend: one SQLite file in WAL mode, reached through one worker thread.

``SqliteState`` does the work on its one connection, synchronously; ``SqliteJournal`` is the
async face the daemon sees, running each call on the worker thread, so the event loop never
blocks on disk and the connection is never shared between threads. ``synchronous=FULL``: a
committed append survives a crash and a power cut; offset commits and prunes skip the fsync
(``transaction(durable=False)``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, Unpack

from forwarder.chunks import Chunks, JournalEntry
from forwarder.evidence.chain import Head
from forwarder.journal import chain_heads, cursors, dead_letters, ledger, ledger_sqlite, offsets, quarantine
from forwarder.journal.events import EventStore
from forwarder.journal.ledger import EvidenceRun, LedgerGap, LedgerRow, SinkConfirmation
from forwarder.journal.protocols import PageParts
from forwarder.journal.schema import connect
from forwarder.journal.segments import SegmentStore
from forwarder.journal.transaction import transaction
from forwarder.journal.types import DeadLetter, DiskFullError, JournalStats, SinkLag
from forwarder.record import Record

T = TypeVar("T")
P = ParamSpec("P")


class SqliteState:
    """Every journal operation on one connection. Each method that writes is one transaction,
    so a page, its quarantined entries and its cursor commit together or not at all."""

    def __init__(self, path: Path, migrate: bool = True) -> None:
        self.path = path
        self.migrate = migrate
        self.events = EventStore(SegmentStore(path))
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    def open(self) -> None:
        db = connect(self.path, self.migrate)
        try:
            self.events.load(db, writer=self.migrate)
        except BaseException:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self.events.segments.close()

    def append(
        self, source: str, organization: str, entries: Sequence[JournalEntry] | Chunks, cursor: dict[str, Any],
        **page: Unpack[PageParts],
    ) -> None:  # fmt: skip
        chain = page.get("chain")
        now = time.time()
        db = self.db
        chunks = entries if isinstance(entries, Chunks) else Chunks.of(entries)
        noted = ledger.rows_of(chunks, self.events.head + 1, source, organization, chain)
        committing = False
        try:
            with transaction(db):
                added = self.events.insert(db, chunks, source, organization, now)
                ledger_sqlite.insert(db, source, organization, *noted)
                quarantine.insert(db, source, organization, page.get("quarantined", ()), now)
                cursors.put(db, page.get("cursor_source") or source, organization, cursor, now)
                if chain is not None:  # the stream's chain head, with the events it ends
                    chain_heads.advance(db, source, organization, *chain)
                committing = True
        except BaseException as exc:
            self.events.uncommitted(not committing)  # a failed COMMIT may still be replayed
            if isinstance(exc, sqlite3.OperationalError) and (
                "full" in str(exc).lower() or "disk i/o" in str(exc).lower()
            ):
                raise DiskFullError(f"cannot write the journal {self.path}: {exc}") from None
            raise
        self.events.added(added)

    def get_cursor(self, source: str, organization: str) -> dict[str, Any] | None:
        return cursors.get(self.db, source, organization)

    def chain_head(self, source: str, organization: str) -> Head:
        return chain_heads.get(self.db, source, organization)

    def set_cursor(self, source: str, organization: str, cursor: dict[str, Any] | None) -> None:
        if cursor is None:
            cursors.delete(self.db, source, organization)
        else:
            self.append(source, organization, [], cursor)

    def delete_cursors(self, source: str | None, organization: str | None) -> int:
        return cursors.delete(self.db, source, organization)

    def register_sinks(self, names: Iterable[str]) -> list[str]:
        sinks = list(names)
        self.events.keep_decoded(len(sinks))
        return offsets.register(self.db, sinks, self.events.first_seq(self.db))

    def offset(self, sink: str) -> int:
        return offsets.get(self.db, sink)

    def inflight(self, sink: str) -> int | None:
        return offsets.inflight(self.db, sink)

    def begin(self, sink: str, last_seq: int) -> None:
        offsets.begin(self.db, sink, last_seq)

    def read(self, after_seq: int, max_events: int, max_bytes: int) -> list[Record]:
        return self.events.read(self.db, after_seq, max_events, max_bytes)

    def journaled_at(self, seq: int) -> float | None:
        return self.events.journaled_at(self.db, seq)

    def commit(self, sink: str, seq: int, dead: Sequence[tuple[Record, str]] = ()) -> None:
        """Without waiting for an fsync: losing this commit in a power cut only sends the batch
        again (duplicates with the same ids are allowed; losses are not)."""
        db = self.db
        with transaction(db, durable=False):
            dead_letters.insert(db, sink, dead, time.time())
            ledger_sqlite.mark_dead(db, sink, ledger.dead_seqs(dead))
            offsets.advance(db, sink, seq)

    def prune(self) -> int:
        db = self.db
        floor = offsets.floor(db)
        if floor is None:
            return 0
        # Durable: the pruned chunks' bytes are deleted right after (forwarder.journal.segments);
        # one fsync per prune, which the pruner runs every 2 s at most
        with transaction(db):
            freed = self.events.prune(db, floor)
        return 0 if freed is None else self.events.pruned(floor, freed)

    def stats(self) -> JournalStats:
        db = self.db
        sinks = [SinkLag(sink, seq, *self.events.pending(db, seq)) for sink, seq in offsets.listing(db)]
        return JournalStats(
            self.events.events,
            self.events.bytes,
            self.events.head,
            cursors.listing(db),
            sinks,
            quarantine.counts(db),
            dead_letters.counts(db),
        )

    def dead_letters(self, sink: str | None = None, ids: Sequence[int] = ()) -> list[DeadLetter]:
        return dead_letters.listing(self.db, sink, ids)

    def delete_dead_letters(self, ids: Sequence[int], *, delivered: bool = False) -> int:
        if not delivered:
            return dead_letters.delete(self.db, ids)
        with transaction(self.db):
            ledger_sqlite.unmark_dead(self.db, ids)
            return dead_letters.delete(self.db, ids)

    def ledger(self, source: str, organization: str, from_ms: int, to_ms: int) -> list[LedgerRow]:
        return ledger_sqlite.listing(self.db, source, organization, from_ms, to_ms)

    def ledger_streams(self) -> list[tuple[str, str]]:
        return ledger_sqlite.streams(self.db)

    def ledger_gaps(self, from_ms: int, to_ms: int) -> list[LedgerGap]:
        return ledger_sqlite.gaps(self.db, from_ms, to_ms)

    def confirmations(self) -> list[SinkConfirmation]:
        return ledger_sqlite.confirmations(self.db)

    def quarantined_in(self, from_s: float, to_s: float) -> dict[tuple[str, str], list[str]]:
        return ledger_sqlite.quarantined(self.db, from_s, to_s)

    def prune_ledger(self, cutoffs: dict[str, int], default_cutoff: int) -> int:
        """Rows past their retention; no fsync (a lost prune is done again next time)."""
        db = self.db
        with transaction(db, durable=False):
            return ledger_sqlite.prune(db, cutoffs, default_cutoff)

    def record_run(self, kind: str, scope: str, ok: bool, summary: dict[str, Any]) -> None:
        db = self.db
        with transaction(db):
            ledger_sqlite.record_run(db, kind, scope, ok, summary)

    def evidence_runs(self) -> list[EvidenceRun]:
        return ledger_sqlite.last_runs(self.db)


def on_worker(
    method: Callable[Concatenate[SqliteState, P], T],
) -> Callable[Concatenate[SqliteJournal, P], Coroutine[Any, Any, T]]:
    """``SqliteState``'s method as a coroutine method of ``SqliteJournal``, run on its thread."""

    async def run(self: SqliteJournal, /, *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(method, self.state, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    run.__doc__ = method.__doc__
    return run


class SqliteJournal:
    """The async face of ``SqliteState`` (``forwarder.journal.protocols.StateJournal``): every
    call runs on the journal's one thread."""

    def __init__(self, path: Path, max_events: int = 1_000_000, max_bytes: int = 1 << 30, migrate: bool = True) -> None:
        self.path = path
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.state = SqliteState(path, migrate)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")

    @property
    def db(self) -> sqlite3.Connection:
        return self.state.db

    open = on_worker(SqliteState.open)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.state.close)
        self._executor.shutdown(wait=True)

    def problems(self) -> list[str]:
        """``/readyz``: the file and its directory must stay writable (a remount read-only)."""
        if os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK):
            return []
        return [f"the journal {self.path} is not writable"]

    def is_full(self) -> bool:
        events, size = self.size
        return events >= self.max_events or size >= self.max_bytes

    @property
    def size(self) -> tuple[int, int]:
        return self.state.events.events, self.state.events.bytes

    @property
    def head(self) -> int:
        return self.state.events.head

    get_cursor = on_worker(SqliteState.get_cursor)
    append = on_worker(SqliteState.append)
    chain_head = on_worker(SqliteState.chain_head)
    set_cursor = on_worker(SqliteState.set_cursor)
    delete_cursors = on_worker(SqliteState.delete_cursors)
    register_sinks = on_worker(SqliteState.register_sinks)
    offset = on_worker(SqliteState.offset)
    inflight = on_worker(SqliteState.inflight)
    begin = on_worker(SqliteState.begin)
    read = on_worker(SqliteState.read)
    journaled_at = on_worker(SqliteState.journaled_at)
    commit = on_worker(SqliteState.commit)
    prune = on_worker(SqliteState.prune)
    stats = on_worker(SqliteState.stats)
    dead_letters = on_worker(SqliteState.dead_letters)
    delete_dead_letters = on_worker(SqliteState.delete_dead_letters)
    ledger = on_worker(SqliteState.ledger)
    ledger_streams = on_worker(SqliteState.ledger_streams)
    ledger_gaps = on_worker(SqliteState.ledger_gaps)
    confirmations = on_worker(SqliteState.confirmations)
    quarantined_in = on_worker(SqliteState.quarantined_in)
    prune_ledger = on_worker(SqliteState.prune_ledger)
    record_run = on_worker(SqliteState.record_run)
    evidence_runs = on_worker(SqliteState.evidence_runs)
