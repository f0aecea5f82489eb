"""Each sink's place in the journal: the last seq its receiver confirmed, and the batch it was
sending when the process stopped."""

from __future__ import annotations

import sqlite3

from forwarder.journal import ledger_sqlite
from forwarder.journal.transaction import transaction


def register(db: sqlite3.Connection, names: list[str], first_seq: int) -> list[str]:
    """A new sink starts at ``first_seq`` (the oldest event still journaled); a sink no longer
    configured loses its offset so it stops holding back pruning. Returns the sinks dropped.
    The evidence ledger notes where a new sink started: what was pruned before (up to
    ``first_seq - 1``) never went to it, whatever its offset says."""
    known = {row[0] for row in db.execute("SELECT sink FROM sink_offsets")}
    dropped = sorted(known - set(names))
    with transaction(db):
        for name in names:
            if name not in known:
                db.execute("INSERT INTO sink_offsets VALUES (?, ?)", (name, first_seq - 1))
                ledger_sqlite.note_start(db, name, first_seq - 1)
        for name in dropped:
            db.execute("DELETE FROM sink_offsets WHERE sink=?", (name,))
            db.execute("DELETE FROM sink_inflight WHERE sink=?", (name,))
    return dropped


def get(db: sqlite3.Connection, sink: str) -> int:
    row = db.execute("SELECT seq FROM sink_offsets WHERE sink=?", (sink,)).fetchone()
    return int(row[0]) if row else 0


def listing(db: sqlite3.Connection) -> list[tuple[str, int]]:
    return [(sink, int(seq)) for sink, seq in db.execute("SELECT sink, seq FROM sink_offsets ORDER BY sink")]


def floor(db: sqlite3.Connection) -> int | None:
    """The smallest offset of all sinks: everything up to it may be pruned."""
    row = db.execute("SELECT MIN(seq) FROM sink_offsets").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def inflight(db: sqlite3.Connection, sink: str) -> int | None:
    """The last seq of the batch the sink was sending when the process stopped, if it never
    got to commit it: the batch to send first, with exactly those members."""
    try:
        row = db.execute("SELECT last_seq FROM sink_inflight WHERE sink=?", (sink,)).fetchone()
    except sqlite3.OperationalError:  # opened read-only on a state written before the table existed
        return None
    return int(row[0]) if row else None


def begin(db: sqlite3.Connection, sink: str, last_seq: int) -> None:
    """Noted before a batch is sent, so that after a crash the same batch is sent again rather
    than a bigger one: an idempotent receiver (S3's create-only objects, named after the
    batch's ids) then stores it once. No fsync: lost in a power cut, only that is lost."""
    with transaction(db, durable=False):
        db.execute("INSERT OR REPLACE INTO sink_inflight VALUES (?, ?)", (sink, last_seq))


def advance(db: sqlite3.Connection, sink: str, seq: int) -> None:
    """Inside the caller's transaction, with the batch's dead letters."""
    db.execute("UPDATE sink_offsets SET seq=? WHERE sink=? AND seq < ?", (seq, sink, seq))
    db.execute("DELETE FROM sink_inflight WHERE sink=? AND last_seq <= ?", (sink, seq))
