"""The shared backend: the journal in PostgreSQL, for several replicas or a database the
operators already run highly available.

The same rules as the SQLite journal, in PostgreSQL's terms: a page, its quarantined entries
and its cursor are one transaction, committed durably (``synchronous_commit`` as the server
has it, ``on`` by default); offsets, in-flight notes and prunes commit with
``synchronous_commit = off``, since losing one only repeats work.

Seqs are taken from the one ``af_head`` row, locked until the append commits: appends from
several replicas then commit in seq order, so a sink can never read seq N+1 before seq N is
visible (it would move its offset past N for good).

Every write made under a lease (a source's page and cursor, a sink's in-flight note and
offset) checks the lease in the same transaction when a ``Fence`` is given
(``forwarder.journal.postgres.fencing``). This module keeps the writes and the reads of
delivery; the inspection reads are in ``inspection.py``, the evidence ledger in ``ledger.py``
(``LedgerAccess``, inherited), the schema in ``schema.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Unpack

import orjson
import psycopg

from forwarder.chunks import Chunks, JournalEntry
from forwarder.evidence.chain import START, Head
from forwarder.journal import chain_heads, ledger
from forwarder.journal.events import Batch, decode
from forwarder.journal.postgres import inspection, sink_offsets
from forwarder.journal.postgres import ledger as pg_ledger
from forwarder.journal.postgres.connection import cannot_connect, first_line, make_pool, why_not_connected
from forwarder.journal.postgres.fencing import Fence, under_lease
from forwarder.journal.postgres.schema import check_version, migrate
from forwarder.journal.postgres.sql import Conn
from forwarder.journal.postgres.sql import row as _row
from forwarder.journal.postgres.sql import rows as _rows
from forwarder.journal.protocols import PageParts
from forwarder.journal.quarantine import as_json
from forwarder.journal.types import DeadLetter, FencedError, JournalStats, StateError, sink_unit, source_unit
from forwarder.record import Record

__all__ = ["Conn", "Fence", "FencedError", "PostgresJournal", "sink_unit", "source_unit"]
_READ_CHUNKS = 16


class PostgresJournal(pg_ledger.LedgerAccess):
    """``forwarder.journal.protocols.StateJournal`` on PostgreSQL."""

    def __init__(
        self,
        conninfo: str,
        max_events: int = 1_000_000,
        max_bytes: int = 1 << 30,
        migrate: bool = True,
        fence: Fence | None = None,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
        where: str = "PostgreSQL",
        replica: str | None = None,
        lease_ttl_s: float = 30.0,
        stalled_transaction_s: float = 15.0,
        reconnect_s: float = 7.5,
    ) -> None:
        """``where`` names the database in messages (host and database name, never the
        password that ``conninfo`` may hold). ``stalled_transaction_s``: the server aborts a
        transaction whose client stopped talking mid-way (a replica paused or cut off) after
        this long, so the row locks it holds (the head row, lease rows) do not stop the other
        replicas for longer than that; the factory sets half the lease TTL. ``reconnect_s``: how
        long the pool retries a lost connection in the background (backing off 1, 2, 4 ... s)
        before it gives up and leaves the next request (a renewal at the latest) to try again at
        once. The pool's default, 5 minutes, meant that after a minute's database outage a
        replica waited up to another minute before it noticed the database was back; the
        factory sets a renewal interval, a quarter of the lease TTL. ``replica``: this replica's
        id, under which ``register_sinks`` notes the sinks it configures, alive for ``lease_ttl_s``
        from then (its lease renewals keep it so)."""
        self.path = where
        self.replica = replica
        self.lease_ttl_s = lease_ttl_s
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.migrate = migrate
        self.fence = fence
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_s = reconnect_s
        self._conninfo = conninfo
        self.pool, self._connect_kwargs = make_pool(
            conninfo,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            reconnect_s=reconnect_s,
            stalled_transaction_s=stalled_transaction_s,
        )
        self._head = 0
        self._events = 0
        self._bytes = 0
        self._pruned_to = -1

    # --- open and close -------------------------------------------------------------------
    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=self._connect_timeout_s)
        except Exception as exc:  # psycopg_pool.PoolTimeout names no cause: one direct attempt finds it
            await self.pool.close()
            cause = await why_not_connected(self._conninfo, self._connect_kwargs) or type(exc).__name__
            raise cannot_connect(self.path, cause, f" within {self._connect_timeout_s:.0f}s") from None
        self.pool.reconnect_timeout = self._reconnect_s
        try:
            async with self.pool.connection() as conn:
                if self.migrate:
                    await migrate(conn)
                else:
                    await check_version(conn)
                await self._load_head(conn)
        except psycopg.Error as exc:  # a role without the rights the schema needs, most often
            await self.pool.close()
            advice = (
                "the tables are created (and upgraded) by the owner role, the replicas' role needs the grants "
                "of docs/high-availability.md"
                if isinstance(exc, psycopg.errors.InsufficientPrivilege)
                else "check the server and the network"
            )
            raise StateError(
                f"the PostgreSQL state at {self.path} could not be opened: {type(exc).__name__}: {first_line(exc)}; "
                f"{advice}"
            ) from None

    async def close(self) -> None:
        await self.pool.close()

    async def _load_head(self, conn: Conn) -> None:
        row = await _row(conn, "SELECT seq, events, bytes FROM af_head WHERE id = 1")
        if row is not None:
            self._head, self._events, self._bytes = int(row[0]), int(row[1]), int(row[2])

    # --- the cap and the head, as last seen ----------------------------------------------------
    def problems(self) -> list[str]:
        """Nothing to check locally: whether the database is reachable is the replica's to say
        (its lease renewals, ``forwarder.replicas``), asked without a query here."""
        return []

    def is_full(self) -> bool:
        return self._events >= self.max_events or self._bytes >= self.max_bytes

    @property
    def size(self) -> tuple[int, int]:
        return self._events, self._bytes

    @property
    def head(self) -> int:
        """As of this replica's last append or read: other replicas' appends show at the next
        read, which a sink worker makes at least every second."""
        return self._head

    # --- cursors and appends ----------------------------------------------------------------
    async def get_cursor(self, source: str, organization: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT state FROM af_cursors WHERE source = %s AND organization = %s", (source, organization)
            )
            row = await cur.fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def append(
        self, source: str, organization: str, entries: Sequence[JournalEntry] | Chunks, cursor: dict[str, Any],
        **page: Unpack[PageParts],
    ) -> None:  # fmt: skip
        chain, cursor_source = page.get("chain"), page.get("cursor_source")
        quarantined = page.get("quarantined", ())
        now = time.time()
        chunks = entries if isinstance(entries, Chunks) else Chunks.of(entries)
        async with under_lease(self.pool, self.fence, source_unit(cursor_source or source, organization)) as conn:
            if chain is not None:
                await self._advance_chain(conn, source, organization, *chain)
            await self._write_page(conn, chunks, source, organization, cursor, quarantined, cursor_source, now, chain)

    async def chain_head(self, source: str, organization: str) -> Head:
        async with self.pool.connection() as conn:
            row = await _row(
                conn,
                "SELECT seq, hash FROM af_chain_heads WHERE source = %s AND organization = %s",
                (source, organization),
            )
        return START if row is None else Head(int(row[0]), str(row[1]))

    async def _advance_chain(self, conn: Conn, source: str, organization: str, before: Head, after: Head) -> None:
        """In the page's transaction, the row locked: a replica whose lease lapsed mid-page cannot
        chain onto a head another replica moved meanwhile."""
        if after == before:
            return
        row = await _row(
            conn,
            "SELECT seq, hash FROM af_chain_heads WHERE source = %s AND organization = %s FOR UPDATE",
            (source, organization),
        )
        current = START if row is None else Head(int(row[0]), str(row[1]))
        if current != before:
            raise chain_heads.conflict(source, organization, before, current)
        await conn.execute(
            "INSERT INTO af_chain_heads VALUES (%s, %s, %s, %s) ON CONFLICT (source, organization) "
            "DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (source, organization, after.seq, after.hash),
        )

    async def _write_page(
        self,
        conn: Conn,
        chunks: Chunks,
        source: str,
        organization: str,
        cursor: dict[str, Any],
        quarantined: Sequence[tuple[str, Any]],
        cursor_source: str | None,
        now: float,
        chain: tuple[Head, Head] | None = None,
    ) -> None:
        row = await _row(conn, "SELECT seq FROM af_head WHERE id = 1 FOR UPDATE")
        assert row is not None  # created with the schema
        rows = chunks.rows(int(row[0]) + 1, source, organization, now)
        await pg_ledger.insert(
            conn, source, organization, *ledger.rows_of(chunks, int(row[0]) + 1, source, organization, chain)
        )
        async with conn.cursor() as cur:
            if rows:
                await cur.executemany("INSERT INTO af_chunks VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
            if quarantined:
                await cur.executemany(
                    "INSERT INTO af_quarantine (source, organization, reason, raw, at) VALUES (%s, %s, %s, %s, %s)",
                    [(source, organization, reason, as_json(raw), now) for reason, raw in quarantined],
                )
        await conn.execute(
            "INSERT INTO af_cursors VALUES (%s, %s, %s, %s) ON CONFLICT (source, organization) "
            "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            (cursor_source or source, organization, orjson.dumps(cursor), now),
        )
        head = await _row(
            conn,
            "UPDATE af_head SET seq = seq + %s, events = events + %s, bytes = bytes + %s WHERE id = 1 "
            "RETURNING seq, events, bytes",
            (chunks.count, chunks.count, sum(r[5] for r in rows)),
        )
        assert head is not None
        self._head, self._events, self._bytes = int(head[0]), int(head[1]), int(head[2])

    async def set_cursor(self, source: str, organization: str, cursor: dict[str, Any] | None) -> None:
        if cursor is None:
            await self.delete_cursors(source, organization)
        else:
            await self.append(source, organization, [], cursor)

    async def delete_cursors(self, source: str | None, organization: str | None) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM af_cursors WHERE (%s::text IS NULL OR source = %s) "
                "AND (%s::text IS NULL OR organization = %s)",
                (source, source, organization, organization),
            )
            return cur.rowcount

    # --- sinks ------------------------------------------------------------------------------
    async def register_sinks(self, names: Iterable[str]) -> list[str]:
        async with self.pool.connection() as conn, conn.transaction():
            return await sink_offsets.register(conn, list(names), self.replica, self.lease_ttl_s)

    async def offset(self, sink: str) -> int:
        """With the head read on the same connection: a replica that neither appends nor reads
        (a sink delivered by another) computes the sink's lag from a head as fresh as the offset."""
        async with self.pool.connection() as conn:
            await self._load_head(conn)
            row = await _row(conn, "SELECT seq FROM af_sink_offsets WHERE sink = %s", (sink,))
        return int(row[0]) if row else 0

    async def inflight(self, sink: str) -> int | None:
        async with self.pool.connection() as conn:
            row = await _row(conn, "SELECT last_seq FROM af_sink_inflight WHERE sink = %s", (sink,))
        return int(row[0]) if row else None

    async def begin(self, sink: str, last_seq: int) -> None:
        async with under_lease(self.pool, self.fence, sink_unit(sink), durable=False) as conn:
            await conn.execute(
                "INSERT INTO af_sink_inflight VALUES (%s, %s) "
                "ON CONFLICT (sink) DO UPDATE SET last_seq = excluded.last_seq",
                (sink, last_seq),
            )

    async def read(self, after_seq: int, max_events: int, max_bytes: int) -> list[Record]:
        batch = Batch(max_events, max_bytes)
        async with self.pool.connection() as conn:
            await self._load_head(conn)
            start = await _row(
                conn, "SELECT COALESCE(MAX(first_seq), 0) FROM af_chunks WHERE first_seq <= %s", (after_seq + 1,)
            )
            last_first = (int(start[0]) if start else 0) - 1
            while True:
                rows = await _rows(
                    conn,
                    "SELECT first_seq, last_seq, source, organization, meta, data FROM af_chunks "
                    "WHERE first_seq > %s ORDER BY first_seq LIMIT %s",
                    (last_first, _READ_CHUNKS),
                )
                if not rows:
                    return batch.records
                for first, last, source, organization, meta, data in rows:
                    last_first = first
                    if last <= after_seq:
                        continue
                    if not batch.take(decode(first, source, organization, meta, data)[max(0, after_seq + 1 - first) :]):
                        return batch.records

    async def journaled_at(self, seq: int) -> float | None:
        async with self.pool.connection() as conn:
            row = await _row(
                conn,
                "SELECT journaled_at FROM af_chunks WHERE first_seq <= %s AND last_seq >= %s "
                "ORDER BY first_seq DESC LIMIT 1",
                (seq, seq),
            )
        return None if row is None else float(row[0])

    async def commit(self, sink: str, seq: int, dead: Sequence[tuple[Record, str]] = ()) -> None:
        now = time.time()
        async with under_lease(self.pool, self.fence, sink_unit(sink), durable=False) as conn:
            if dead:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO af_dead_letters (sink, seq, event_id, source, organization, vendor, time_ms, "
                        "reason, data, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            (
                                sink,
                                r.seq,
                                r.event_id,
                                r.source,
                                r.organization,
                                r.vendor,
                                r.time_ms,
                                reason,
                                r.data,
                                now,
                            )
                            for r, reason in dead
                        ],
                    )
                await pg_ledger.mark_dead(conn, sink, ledger.dead_seqs(dead))
            await conn.execute("UPDATE af_sink_offsets SET seq = %s WHERE sink = %s AND seq < %s", (seq, sink, seq))
            await conn.execute("DELETE FROM af_sink_inflight WHERE sink = %s AND last_seq <= %s", (sink, seq))

    async def prune(self) -> int:
        async with self.pool.connection() as conn:
            row = await _row(conn, "SELECT MIN(seq) FROM af_sink_offsets")
            if row is None or row[0] is None or int(row[0]) <= self._pruned_to:
                return 0
            floor = int(row[0])
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                freed = await _rows(
                    conn,
                    "DELETE FROM af_chunks WHERE first_seq <= %s AND last_seq <= %s "
                    "RETURNING last_seq - first_seq + 1, bytes",
                    (floor, floor),
                )
                events, size = sum(int(r[0]) for r in freed), sum(int(r[1]) for r in freed)
                if freed:
                    await conn.execute(
                        "UPDATE af_head SET events = events - %s, bytes = bytes - %s WHERE id = 1", (events, size)
                    )
            await self._load_head(conn)
        self._pruned_to = floor
        return events

    # --- inspection (``inspection.py``) ------------------------------------------------------
    async def stats(self) -> JournalStats:
        async with self.pool.connection() as conn:
            await self._load_head(conn)
            return await inspection.stats(conn, self._events, self._bytes, self._head)

    async def dead_letters(self, sink: str | None = None, ids: Sequence[int] = ()) -> list[DeadLetter]:
        async with self.pool.connection() as conn:
            return await inspection.dead_letters(conn, sink, ids)

    async def delete_dead_letters(self, ids: Sequence[int], *, delivered: bool = False) -> int:
        async with self.pool.connection() as conn, conn.transaction():
            return await inspection.delete_dead_letters(conn, ids, delivered=delivered)
