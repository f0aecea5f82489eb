"""The evidence ledger (``forwarder.journal.ledger``) in PostgreSQL: the same rows and rules as
the SQLite side, in the ``af_ledger*`` tables of schema version 3. Every write runs inside the
caller's transaction (the page's, the commit's, the registration's). ``LedgerAccess`` is
``PostgresJournal``'s face of it (the ``EvidenceLedger`` protocol), one connection per call."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from forwarder.journal.ledger import EvidenceRun, LedgerGap, LedgerRow, SinkConfirmation
from forwarder.journal.postgres.sql import Conn

MIGRATION = [
    "CREATE TABLE af_ledger_streams (id bigserial PRIMARY KEY, source text NOT NULL, organization text NOT NULL,"
    " UNIQUE (source, organization))",
    "CREATE TABLE af_ledger (stream bigint NOT NULL, time_ms bigint NOT NULL, seq bigint NOT NULL,"
    " chain_seq bigint NOT NULL, event_id text NOT NULL, hash bytea NOT NULL, PRIMARY KEY (stream, time_ms, seq))",
    "CREATE TABLE af_ledger_gaps (stream bigint NOT NULL, chain_seq bigint NOT NULL, time_ms bigint NOT NULL,"
    " from_ms bigint, to_ms bigint, reason text NOT NULL, PRIMARY KEY (stream, chain_seq))",
    "CREATE TABLE af_ledger_dead (sink text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (sink, seq))",
    "CREATE TABLE af_sink_starts (sink text PRIMARY KEY, seq bigint NOT NULL)",
    "CREATE TABLE af_evidence_runs (id bigserial PRIMARY KEY, kind text NOT NULL, at double precision NOT NULL,"
    " scope text NOT NULL, ok boolean NOT NULL, summary bytea NOT NULL)",
]


async def insert(conn: Conn, source: str, organization: str, rows: list[LedgerRow], gaps: list[LedgerGap]) -> None:
    if not rows:
        return
    cur = await conn.execute(
        "INSERT INTO af_ledger_streams (source, organization) VALUES (%s, %s) ON CONFLICT (source, organization) "
        "DO UPDATE SET source = excluded.source RETURNING id",
        (source, organization),
    )
    found = await cur.fetchone()
    assert found is not None
    stream = int(found[0])
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO af_ledger VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(stream, r.time_ms, r.seq, r.chain_seq, r.event_id, bytes.fromhex(r.hash)) for r in rows],
        )
        if gaps:
            await c.executemany(
                "INSERT INTO af_ledger_gaps VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(stream, g.chain_seq, g.time_ms, g.from_ms, g.to_ms, g.reason) for g in gaps],
            )


async def mark_dead(conn: Conn, sink: str, seqs: Iterable[int]) -> None:
    params = [(sink, s) for s in seqs]
    if params:
        async with conn.cursor() as c:
            await c.executemany("INSERT INTO af_ledger_dead VALUES (%s, %s) ON CONFLICT DO NOTHING", params)


async def note_start(conn: Conn, sink: str, seq: int) -> None:
    await conn.execute(
        "INSERT INTO af_sink_starts VALUES (%s, %s) ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq", (sink, seq)
    )


async def listing(conn: Conn, source: str, organization: str, from_ms: int, to_ms: int) -> list[LedgerRow]:
    cur = await conn.execute(
        "SELECT l.seq, l.chain_seq, l.event_id, l.time_ms, l.hash FROM af_ledger l JOIN af_ledger_streams s "
        "ON s.id = l.stream WHERE s.source = %s AND s.organization = %s AND l.time_ms >= %s AND l.time_ms < %s "
        "ORDER BY l.seq",
        (source, organization, from_ms, to_ms),
    )
    return [LedgerRow(int(a), int(b), str(c), int(d), bytes(e).hex()) for a, b, c, d, e in await cur.fetchall()]


async def streams(conn: Conn) -> list[tuple[str, str]]:
    cur = await conn.execute("SELECT source, organization FROM af_ledger_streams ORDER BY 1, 2")
    return [(str(a), str(b)) for a, b in await cur.fetchall()]


async def gaps(conn: Conn, from_ms: int, to_ms: int) -> list[LedgerGap]:
    cur = await conn.execute(
        "SELECT s.source, s.organization, g.chain_seq, g.time_ms, g.from_ms, g.to_ms, g.reason FROM af_ledger_gaps g "
        "JOIN af_ledger_streams s ON s.id = g.stream WHERE g.time_ms >= %s AND g.time_ms < %s ORDER BY 1, 2, 3",
        (from_ms, to_ms),
    )
    return [LedgerGap(*r) for r in await cur.fetchall()]


async def confirmations(conn: Conn) -> list[SinkConfirmation]:
    starts = {str(s): int(q) for s, q in await (await conn.execute("SELECT sink, seq FROM af_sink_starts")).fetchall()}
    dead: dict[str, set[int]] = {}
    for sink, seq in await (await conn.execute("SELECT sink, seq FROM af_ledger_dead")).fetchall():
        dead.setdefault(str(sink), set()).add(int(seq))
    offsets = await (await conn.execute("SELECT sink, seq FROM af_sink_offsets ORDER BY sink")).fetchall()
    return [
        SinkConfirmation(str(s), starts.get(str(s), 0), int(q), frozenset(dead.get(str(s), ()))) for s, q in offsets
    ]


async def quarantined(conn: Conn, from_s: float, to_s: float) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    cur = await conn.execute(
        "SELECT source, organization, reason FROM af_quarantine WHERE at >= %s AND at < %s ORDER BY id", (from_s, to_s)
    )
    for source, organization, reason in await cur.fetchall():
        out.setdefault((str(source), str(organization)), []).append(str(reason))
    return out


async def prune(conn: Conn, cutoffs: Mapping[str, int], default_cutoff: int) -> int:
    deleted = 0
    for stream, source in await (await conn.execute("SELECT id, source FROM af_ledger_streams")).fetchall():
        cutoff = cutoffs.get(str(source), default_cutoff)
        cur = await conn.execute("DELETE FROM af_ledger WHERE stream = %s AND time_ms < %s", (stream, cutoff))
        deleted += cur.rowcount
        await conn.execute("DELETE FROM af_ledger_gaps WHERE stream = %s AND time_ms < %s", (stream, cutoff))
    if deleted:
        await conn.execute(
            "DELETE FROM af_ledger_dead WHERE seq < COALESCE((SELECT MIN(seq) FROM af_ledger), %s)", (1 << 62,)
        )
    return deleted


async def record_run(conn: Conn, kind: str, scope: str, ok: bool, summary: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO af_evidence_runs (kind, at, scope, ok, summary) VALUES (%s, %s, %s, %s, %s)",
        (kind, time.time(), scope, ok, orjson.dumps(summary)),
    )


async def last_runs(conn: Conn) -> list[EvidenceRun]:
    cur = await conn.execute(
        "SELECT kind, at, scope, ok, summary FROM af_evidence_runs WHERE id IN "
        "(SELECT MAX(id) FROM af_evidence_runs GROUP BY kind, scope) ORDER BY kind, scope"
    )
    return [
        EvidenceRun(str(k), float(a), str(s), bool(o), orjson.loads(bytes(m))) for k, a, s, o, m in await cur.fetchall()
    ]


class LedgerAccess:
    """``forwarder.journal.protocols.EvidenceLedger`` over the pool of ``PostgresJournal``
    (which inherits it): the functions above, each on a connection of its own."""

    pool: AsyncConnectionPool[Conn]

    async def ledger(self, source: str, organization: str, from_ms: int, to_ms: int) -> list[LedgerRow]:
        async with self.pool.connection() as conn:
            return await listing(conn, source, organization, from_ms, to_ms)

    async def ledger_streams(self) -> list[tuple[str, str]]:
        async with self.pool.connection() as conn:
            return await streams(conn)

    async def ledger_gaps(self, from_ms: int, to_ms: int) -> list[LedgerGap]:
        async with self.pool.connection() as conn:
            return await gaps(conn, from_ms, to_ms)

    async def confirmations(self) -> list[SinkConfirmation]:
        async with self.pool.connection() as conn:
            return await confirmations(conn)

    async def quarantined_in(self, from_s: float, to_s: float) -> dict[tuple[str, str], list[str]]:
        async with self.pool.connection() as conn:
            return await quarantined(conn, from_s, to_s)

    async def prune_ledger(self, cutoffs: dict[str, int], default_cutoff: int) -> int:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            return await prune(conn, cutoffs, default_cutoff)

    async def record_run(self, kind: str, scope: str, ok: bool, summary: dict[str, Any]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await record_run(conn, kind, scope, ok, summary)

    async def evidence_runs(self) -> list[EvidenceRun]:
        async with self.pool.connection() as conn:
            return await last_runs(conn)
