"""``audit-forwarder state migrate --to DSN``: a SQLite state copied into an empty PostgreSQL one.

Everything the journal holds moves, with its numbers unchanged: the event chunks (their seqs,
so every sink's offset and in-flight note still points where it did), the head, cursors and
the head of each stream's hash chain (``forwarder.evidence.chain``: the next page links on),
the evidence ledger (``forwarder.journal.ledger``: ``reconcile`` and ``report`` read it),
offsets, in-flight notes, quarantine and dead letters (their ids, so ``dlq replay --id``
still names the same letter). The copy is one PostgreSQL transaction: a failure leaves the
target as empty as it was. Both states are locked while it runs: the SQLite one by its flock
(the daemon must be stopped), the PostgreSQL one by the replicas' advisory lock, exclusively
(no replica may run on it yet). A target that holds anything is refused: merging two journals
would interleave their seqs. Counts are compared after the copy, and printed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from forwarder.journal import SqliteJournal, StateError
from forwarder.journal.factory import JOURNAL_FILE, dsn_secrets, postgres_conninfo
from forwarder.journal.segments import SegmentStore
from forwarder.journal.settings import StateSettings
from forwarder.redaction import register_secrets, scrub
from forwarder.settings import Settings
from forwarder.tools.common import lock_state

BATCH = 256  # chunk rows per round trip: at most 256 x ~1 MB in memory
TABLES = (
    "cursors", "chain_heads", "chunks", "sink_offsets", "sink_inflight", "quarantine", "dead_letters",
    "ledger_streams", "ledger_runs", "ledger_gaps", "ledger_dead", "sink_starts", "evidence_runs",
)  # fmt: skip
_COLUMNS = {  # fixed names, the only text ever put into a query here
    "cursors": "source, organization, state, updated_at",
    "chain_heads": "source, organization, seq, hash",  # each stream's chain goes on where it stood
    "chunks": "first_seq, last_seq, source, organization, journaled_at, bytes, meta, data",
    "sink_offsets": "sink, seq",
    "sink_inflight": "sink, last_seq",
    "quarantine": "id, source, organization, reason, raw, at",
    "dead_letters": "id, sink, seq, event_id, source, organization, vendor, time_ms, reason, data, at",
    # the evidence ledger (forwarder.journal.ledger): reconcile and report read the same history
    "ledger_streams": "id, source, organization",
    "ledger_runs": "first_seq, stream, min_time, max_time, first_chain_seq, times, hashes, ids",
    "ledger_gaps": "stream, chain_seq, time_ms, from_ms, to_ms, reason",
    "ledger_dead": "sink, seq",
    "sink_starts": "sink, seq",
    "evidence_runs": "id, kind, at, scope, ok, summary",
}
_BLOBS = {"cursors": (2,), "chunks": (6, 7), "quarantine": (4,), "dead_letters": (9,), "ledger_runs": (5, 6, 7),
          "evidence_runs": (5,)}  # fmt: skip
_BOOLS = {"evidence_runs": (4,)}  # SQLite's 0/1


def target_state(settings: Settings, dsn: str) -> StateSettings:
    """The target as a state setting; the configured password applies if the DSN has none."""
    password = settings.state.password if settings.state.backend == "postgresql" else None
    return StateSettings(backend="postgresql", dsn=SecretStr(dsn), password=password)


async def migrate_state(settings: Settings, dsn: str, echo: Callable[[str], None]) -> dict[str, int]:
    """Copies, verifies and returns the counts; raises ``StateError`` (scrubbed) on any problem."""
    target = target_state(settings, dsn)
    register_secrets({dsn} | dsn_secrets(target))
    path = settings.state_dir / JOURNAL_FILE
    if not path.exists():
        raise StateError(f"no state database at {path}: nothing to migrate (check state_dir)")
    try:
        return await _migrate(settings, target, echo)
    except StateError as exc:
        raise StateError(scrub(str(exc))) from None
    except Exception as exc:  # the driver's errors name host and user; scrubbed all the same
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise StateError(scrub(f"migration failed, the target is unchanged: {type(exc).__name__}: {first}")) from None


async def _migrate(settings: Settings, target: StateSettings, echo: Callable[[str], None]) -> dict[str, int]:
    from forwarder.journal.postgres.advisory_lock import AdvisoryLock
    from forwarder.journal.postgres.journal import PostgresJournal

    conninfo, where = postgres_conninfo(target)
    lock = lock_state(settings)
    guard = AdvisoryLock(conninfo, where)
    source = SqliteJournal(settings.state_dir / JOURNAL_FILE)
    journal = PostgresJournal(conninfo, migrate=True, where=where)
    try:
        await guard.exclusive()
        await source.open()
        await journal.open()
        expected = await asyncio.to_thread(_counts_sqlite, source.db)
        async with journal.pool.connection() as conn:
            found = await _counts_postgres(conn)
            if any(found.values()):
                held = ", ".join(f"{n} {k}" for k, n in found.items() if n)
                raise StateError(
                    f"the PostgreSQL state at {where} is not empty ({held}); migrate only into an empty state "
                    "(a new database, or one whose af_ tables were dropped)"
                )
            echo(f"copying {source.path} into {where} ...")
            async with conn.transaction():
                for table in TABLES:
                    await _copy(source.db, conn, table, source.state.events.segments)
                await conn.execute(
                    "UPDATE af_head SET seq = %s, events = %s, bytes = %s WHERE id = 1",
                    (expected["head_seq"], expected["events"], expected["bytes"]),
                )
                for table in ("quarantine", "dead_letters", "ledger_streams", "evidence_runs"):
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('af_{table}', 'id'), "  # noqa: S608  # fixed names
                        f"GREATEST((SELECT MAX(id) FROM af_{table}), 1), (SELECT COUNT(*) > 0 FROM af_{table}))"
                    )
            copied = await _counts_postgres(conn)
        if copied != expected:
            wrong = ", ".join(f"{k}: {expected[k]} in SQLite, {copied.get(k)} in PostgreSQL"
                              for k in expected if copied.get(k) != expected[k])  # fmt: skip
            raise StateError(f"the copy does not match its source ({wrong}); do not start replicas on it")
        return copied
    finally:
        await journal.close()
        await source.close()
        await guard.close()
        lock.release()


def _counts_sqlite(db: sqlite3.Connection) -> dict[str, int]:
    counts = {table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in TABLES}  # noqa: S608
    events, size = db.execute(
        "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0), COALESCE(SUM(bytes), 0) FROM chunks"
    ).fetchone()
    head = db.execute("SELECT COALESCE(MAX(last_seq), 0) FROM chunks").fetchone()[0]
    row = db.execute("SELECT value FROM meta WHERE key = 'head_seq'").fetchone()
    return {**counts, "events": int(events), "bytes": int(size), "head_seq": max(int(head), int(row[0]) if row else 0)}


async def _counts_postgres(conn: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES:
        row = await (await conn.execute(f"SELECT COUNT(*) FROM af_{table}")).fetchone()  # noqa: S608
        counts[table] = int(row[0])
    events, size = await (await conn.execute(
        "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0), COALESCE(SUM(bytes), 0) FROM af_chunks"
    )).fetchone()  # fmt: skip
    head = await (await conn.execute("SELECT seq FROM af_head WHERE id = 1")).fetchone()
    return {**counts, "events": int(events), "bytes": int(size), "head_seq": int(head[0]) if head else 0}


async def _copy(db: sqlite3.Connection, conn: Any, table: str, segments: SegmentStore) -> None:
    columns = _COLUMNS[table]
    blobs = _BLOBS.get(table, ())
    marks = ", ".join(["%s"] * len(columns.split(",")))
    order = columns.split(",")[0]
    selected = columns + (", segment, segment_offset" if table == "chunks" else "")
    cursor = await asyncio.to_thread(db.execute, f"SELECT {selected} FROM {table} ORDER BY {order}")  # noqa: S608
    while True:
        rows = await asyncio.to_thread(cursor.fetchmany, BATCH)
        if not rows:
            return
        if table == "chunks":  # a chunk's bytes from its segment file, where state version 3 keeps them
            rows = await asyncio.to_thread(_with_segment_bytes, rows, segments)
        bools = _BOOLS.get(table, ())
        rows = [
            tuple(_bytes(v) if i in blobs else bool(v) if i in bools else v for i, v in enumerate(row)) for row in rows
        ]
        async with conn.cursor() as cur:
            await cur.executemany(f"INSERT INTO af_{table} ({columns}) VALUES ({marks})", rows)  # noqa: S608


def _with_segment_bytes(rows: list[Any], segments: SegmentStore) -> list[Any]:
    return [(*row[:7], row[7] if row[8] is None else segments.read(row[8], row[9], row[5])) for row in rows]


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
