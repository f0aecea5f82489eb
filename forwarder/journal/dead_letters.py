"""Records a sink gave up on, with the receiver's reason, for ``dlq list/replay/purge``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from forwarder.journal.types import DeadLetter
from forwarder.record import Record, summary


def insert(db: sqlite3.Connection, sink: str, dead: Sequence[tuple[Record, str]], now: float) -> None:
    """Inside the caller's transaction: dead letters commit with the offset that passes them."""
    db.executemany(
        "INSERT INTO dead_letters (sink, seq, event_id, source, organization, vendor, time_ms, reason, data,"
        " at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (sink, r.seq, r.event_id, r.source, r.organization, r.vendor, r.time_ms, reason, r.data, now)
            for r, reason in dead
        ],
    )


def listing(db: sqlite3.Connection, sink: str | None, ids: Sequence[int]) -> list[DeadLetter]:
    rows = db.execute(
        "SELECT id, sink, reason, at, seq, event_id, source, organization, time_ms, data, vendor "
        "FROM dead_letters WHERE (? IS NULL OR sink=?) ORDER BY id",
        (sink, sink),
    ).fetchall()
    wanted = set(ids)
    return [
        DeadLetter(int(r[0]), r[1], r[2], float(r[3]), Record(*r[4:])._replace(**event_summary(r[9])))
        for r in rows
        if not wanted or r[0] in wanted
    ]


def delete(db: sqlite3.Connection, ids: Sequence[int]) -> int:
    cur = db.executemany("DELETE FROM dead_letters WHERE id=?", [(i,) for i in ids])
    return int(cur.rowcount)


def counts(db: sqlite3.Connection) -> dict[str, int]:
    return {s: int(n) for s, n in db.execute("SELECT sink, COUNT(*) FROM dead_letters GROUP BY 1")}


def event_summary(data: bytes) -> dict[str, Any]:
    """``summary`` as ``Record`` fields, from an event's JSON where no column holds them."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        return {}
    return dict(zip(("action", "category", "outcome"), summary(event), strict=True))
