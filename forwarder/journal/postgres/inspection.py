"""What ``state show``, ``dlq`` and the metrics read from the PostgreSQL state: the journal's
counts and lags, and the dead letters (listed, deleted). Reads on the caller's connection;
nothing here is on the delivery path."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from forwarder.journal.dead_letters import event_summary
from forwarder.journal.postgres.sql import Conn, row, rows
from forwarder.journal.types import DeadLetter, JournalStats, SinkLag
from forwarder.record import Record


async def stats(conn: Conn, events: int, size: int, head: int) -> JournalStats:
    """``events``, ``size`` and ``head`` as the caller just loaded them from ``af_head``."""
    cursors = [
        (str(s), str(o), dict(orjson.loads(state)), float(at))
        for s, o, state, at in await rows(
            conn, "SELECT source, organization, state, updated_at FROM af_cursors ORDER BY 1, 2"
        )
    ]
    sinks = []
    for sink, seq in await rows(conn, "SELECT sink, seq FROM af_sink_offsets ORDER BY 1"):
        count, oldest = await row(
            conn,
            "SELECT COALESCE(SUM(last_seq - GREATEST(first_seq, %s) + 1), 0), MIN(journaled_at) "
            "FROM af_chunks WHERE last_seq > %s",
            (int(seq) + 1, int(seq)),
        ) or (0, None)
        sinks.append(SinkLag(str(sink), int(seq), int(count), None if oldest is None else int(oldest * 1000)))
    quarantined = {
        (str(s), str(o)): int(n)
        for s, o, n in await rows(conn, "SELECT source, organization, COUNT(*) FROM af_quarantine GROUP BY 1, 2")
    }
    dead = {str(s): int(n) for s, n in await rows(conn, "SELECT sink, COUNT(*) FROM af_dead_letters GROUP BY 1")}
    return JournalStats(events, size, head, cursors, sinks, quarantined, dead)


async def dead_letters(conn: Conn, sink: str | None = None, ids: Sequence[int] = ()) -> list[DeadLetter]:
    found = await rows(
        conn,
        "SELECT id, sink, reason, at, seq, event_id, source, organization, time_ms, data, vendor "
        "FROM af_dead_letters WHERE (%s::text IS NULL OR sink = %s) ORDER BY id",
        (sink, sink),
    )
    wanted = set(ids)
    return [
        DeadLetter(int(r[0]), r[1], r[2], float(r[3]), Record(*r[4:])._replace(**event_summary(bytes(r[9]))))
        for r in found
        if not wanted or r[0] in wanted
    ]


async def delete_dead_letters(conn: Conn, ids: Sequence[int], *, delivered: bool = False) -> int:
    """``delivered`` (in the caller's transaction): the ledger's dead notes of a replay's
    confirmed letters go with them, as in ``ledger_sqlite.unmark_dead``."""
    if delivered:
        await conn.execute(
            "DELETE FROM af_ledger_dead l USING af_dead_letters d"
            " WHERE d.id = ANY(%s) AND d.sink = l.sink AND d.seq = l.seq",
            (list(ids),),
        )
    cur = await conn.execute("DELETE FROM af_dead_letters WHERE id = ANY(%s)", (list(ids),))
    return cur.rowcount
