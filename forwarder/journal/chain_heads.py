"""The head of each stream's hash chain (``forwarder.evidence.chain``), one row per source x
organization, written in the append transaction of the page whose events it ends.

Kept apart from the cursor: the cursor is each source's own opaque document and is reset by
operators (``cursors reset``, a backfill keeps its own); a stream's chain must go on across
both, never restarting at seq 1 for a stream that already has events out in the world.
"""

from __future__ import annotations

import sqlite3

from forwarder.evidence.chain import START, Head
from forwarder.journal.types import StateError


class ChainConflict(StateError):
    """Another writer moved the stream's head since this poll read it: the page is not journaled."""


def conflict(source: str, organization: str, before: Head, current: Head) -> ChainConflict:
    return ChainConflict(
        f"hash chain of {source}/{organization} moved from seq {before.seq} to {current.seq} meanwhile; "
        "the page is fetched again"
    )


def get(db: sqlite3.Connection, source: str, organization: str) -> Head:
    row = db.execute(
        "SELECT seq, hash FROM chain_heads WHERE source=? AND organization=?", (source, organization)
    ).fetchone()
    return START if row is None else Head(int(row[0]), str(row[1]))


def advance(db: sqlite3.Connection, source: str, organization: str, before: Head, after: Head) -> None:
    """Inside the caller's transaction: refuses (``ChainConflict``) unless the head is still ``before``."""
    if after == before:
        return
    current = get(db, source, organization)
    if current != before:
        raise conflict(source, organization, before, current)
    db.execute(
        "INSERT INTO chain_heads VALUES (?, ?, ?, ?) ON CONFLICT (source, organization) "
        "DO UPDATE SET seq=excluded.seq, hash=excluded.hash",
        (source, organization, after.seq, after.hash),
    )
