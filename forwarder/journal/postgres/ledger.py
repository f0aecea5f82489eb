"""The evidence ledger (``forwarder.journal.ledger``) in PostgreSQL: the same runs and rules as
the SQLite side, in the ``af_ledger*`` tables of schema version 3 (the runs: version 4). Every
write runs inside the caller's transaction (the page's, the commit's, the registration's). ``LedgerAccess`` is
``PostgresJournal``'s face of it (the ``EvidenceLedger`` protocol), one connection per call."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from forwarder.journal.ledger import (
    TIME_BYTES,
    EvidenceRun,
    LedgerGap,
    LedgerRow,
    LedgerRun,
    SinkConfirmation,
    trimmed,
    unpack,
)
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


# Version 4: one row per run of events (``LedgerRun``) instead of one per event; the rows of
# version 3 folded into runs in SQL (consecutive seqs and chain seqs, hashes of one width, at
# most 1,000 each: the RUN_MAX_EVENTS of its time, a migration is fixed; times packed big-endian
# by int8send, ids as a JSON array), in the migration's transaction.
MIGRATION_RUNS = [
    "CREATE TABLE af_ledger_runs (first_seq bigint PRIMARY KEY, stream bigint NOT NULL, min_time bigint NOT NULL,"
    " max_time bigint NOT NULL, first_chain_seq bigint NOT NULL, times bytea NOT NULL, hashes bytea NOT NULL,"
    " ids bytea NOT NULL)",
    "CREATE INDEX af_ledger_runs_by_end ON af_ledger_runs (stream, max_time, min_time)",
    "CREATE INDEX af_ledger_runs_by_start ON af_ledger_runs (stream, min_time)",
    "INSERT INTO af_ledger_runs SELECT MIN(seq), stream, MIN(time_ms), MAX(time_ms), MIN(chain_seq),"
    " string_agg(int8send(time_ms), ''::bytea ORDER BY seq), string_agg(hash, ''::bytea ORDER BY seq),"
    " convert_to(json_agg(event_id ORDER BY seq)::text, 'UTF8')"
    " FROM (SELECT *, (ROW_NUMBER() OVER (PARTITION BY stream, run ORDER BY seq) - 1) / 1000 AS part"
    " FROM (SELECT *, SUM(starts) OVER (PARTITION BY stream ORDER BY seq) AS run"
    " FROM (SELECT *, CASE WHEN LAG(seq) OVER w = seq - 1 AND LAG(chain_seq) OVER w = chain_seq - 1"
    " AND LAG(length(hash)) OVER w = length(hash) THEN 0 ELSE 1 END AS starts"
    " FROM af_ledger WINDOW w AS (PARTITION BY stream ORDER BY seq)) marked) numbered) parted"
    " GROUP BY stream, run, part",
    "DROP TABLE af_ledger",
]
_INSERT_RUN = (
    "INSERT INTO af_ledger_runs (stream, first_seq, first_chain_seq, min_time, max_time, times, hashes, ids)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def _run(row: tuple[Any, ...]) -> LedgerRun:
    a, b, c, d, times, hashes, ids = row
    return LedgerRun(int(a), int(b), int(c), int(d), bytes(times), bytes(hashes), bytes(ids))


async def insert(conn: Conn, source: str, organization: str, runs: list[LedgerRun], gaps: list[LedgerGap]) -> None:
    """A plain INSERT: a run's first seq is the journal's next (``af_head``, moved in the same
    transaction), never used before."""
    if not runs:
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
        await c.executemany(_INSERT_RUN, [(stream, *run) for run in runs])
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
        "SELECT first_seq, first_chain_seq, min_time, max_time, times, hashes, ids FROM af_ledger_runs WHERE"
        " stream = (SELECT id FROM af_ledger_streams WHERE source = %s AND organization = %s) AND max_time >= %s"
        " AND min_time < %s ORDER BY first_seq",
        (source, organization, from_ms, to_ms),
    )
    found: list[LedgerRow] = []
    for row in await cur.fetchall():
        found.extend(unpack(_run(row), from_ms, to_ms))
    return found


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
        cur = await conn.execute(
            "DELETE FROM af_ledger_runs WHERE stream = %s AND max_time < %s RETURNING length(times)", (stream, cutoff)
        )
        deleted += sum(int(n) for (n,) in await cur.fetchall()) // TIME_BYTES
        cur = await conn.execute(  # after the delete, the runs starting before the cutoff are those spanning it
            "DELETE FROM af_ledger_runs WHERE stream = %s AND min_time < %s"
            " RETURNING first_seq, first_chain_seq, min_time, max_time, times, hashes, ids",
            (stream, cutoff),
        )
        for row in await cur.fetchall():
            runs, lost = trimmed(_run(row), cutoff)
            async with conn.cursor() as c:
                await c.executemany(_INSERT_RUN, [(stream, *r) for r in runs])
            deleted += lost
        await conn.execute("DELETE FROM af_ledger_gaps WHERE stream = %s AND time_ms < %s", (stream, cutoff))
    if deleted:
        await conn.execute(
            "DELETE FROM af_ledger_dead WHERE seq < COALESCE((SELECT MIN(first_seq) FROM af_ledger_runs), %s)",
            (1 << 62,),
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
