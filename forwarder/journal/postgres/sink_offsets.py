"""Which sinks the PostgreSQL state keeps an offset for, when several replicas share it.

A replica registers the sinks it configures: a new one gets an offset at the oldest journaled
event, and the offsets of the others are dropped, but not of a sink another live replica
configures (``af_replicas.sinks``). In a rolling configuration change (a sink added on one
replica, the next not reloaded yet, or restarted on the old file), dropping it made its
holder's offset commits update nothing and pruning ignore it, so the new sink lost what was
pruned before it caught up.
"""

from __future__ import annotations

from forwarder.journal.postgres import ledger as pg_ledger
from forwarder.journal.postgres.sql import Conn
from forwarder.journal.postgres.sql import row as _row


async def register(conn: Conn, wanted: list[str], replica: str | None, lease_ttl_s: float) -> list[str]:
    """In the caller's transaction; the sinks whose offsets were dropped. The registering replica
    counts as alive from now (for ``lease_ttl_s``; its lease renewals keep it so), so its sinks
    count before its first renewal."""
    row = await _row(conn, "SELECT COALESCE(MIN(first_seq), (SELECT seq + 1 FROM af_head)) FROM af_chunks")
    first = int(row[0]) if row and row[0] is not None else 1
    for name in wanted:
        cur = await conn.execute(
            "INSERT INTO af_sink_offsets VALUES (%s, %s) ON CONFLICT (sink) DO NOTHING", (name, first - 1)
        )
        if cur.rowcount:  # a new sink: what was pruned before it never went to it
            await pg_ledger.note_start(conn, name, first - 1)
    if replica is not None:
        await conn.execute(
            "INSERT INTO af_replicas (replica, expires_at, sinks) VALUES (%s, now() + %s::interval, %s) "
            "ON CONFLICT (replica) DO UPDATE SET sinks = excluded.sinks, "
            "expires_at = GREATEST(af_replicas.expires_at, excluded.expires_at)",
            (replica, f"{lease_ttl_s} seconds", wanted),
        )
    cur = await conn.execute(
        "DELETE FROM af_sink_offsets o WHERE NOT (o.sink = ANY(%s)) AND NOT EXISTS (SELECT 1 "
        "FROM af_replicas r WHERE r.replica <> %s AND r.expires_at > now() AND o.sink = ANY(r.sinks)) "
        "RETURNING o.sink",
        (wanted, replica or ""),
    )
    dropped = sorted(str(r[0]) for r in await cur.fetchall())
    await conn.execute("DELETE FROM af_sink_inflight WHERE sink NOT IN (SELECT sink FROM af_sink_offsets)")
    return dropped
