"""The fence: every write made under a lease (a source's page and cursor, a sink's in-flight
note and offset) checks the lease in its own transaction.

The holder and the token must still be the row's and the lease unexpired by the database's
clock. The check locks the lease row (``FOR SHARE``), so a takeover waits for the write or the
write sees the takeover; a replica that lost its lease can never commit (``FencedError``).
Without a ``Fence`` (one process on the state) nothing is checked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from psycopg_pool import AsyncConnectionPool

from forwarder.journal.postgres.sql import Conn
from forwarder.journal.types import FencedError


class Fence(Protocol):
    """The leases a replica holds: ``holding(unit)`` is (holder, token), or None if not held."""

    def holding(self, unit: str) -> tuple[str, int] | None: ...

    def fenced(self, unit: str) -> None:
        """Called when the database refused a write under ``unit``: count it, drop the unit."""
        ...


@asynccontextmanager
async def under_lease(
    pool: AsyncConnectionPool[Conn], fence: Fence | None, unit: str, durable: bool = True
) -> AsyncIterator[Conn]:
    """A transaction whose writes commit only while this replica holds ``unit``'s lease;
    ``durable=False`` (offsets, in-flight notes) commits without waiting for the WAL flush."""
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                if not durable:
                    await conn.execute("SET LOCAL synchronous_commit = off")
                await check_lease(conn, fence, unit)
                yield conn
        except FencedError:
            await conn.execute(
                "INSERT INTO af_counters VALUES ('fenced_writes', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = af_counters.value + 1"
            )
            raise


async def check_lease(conn: Conn, fence: Fence | None, unit: str) -> None:
    if fence is None:
        return
    held = fence.holding(unit)
    if held is not None:
        cur = await conn.execute(
            "SELECT 1 FROM af_leases WHERE unit = %s AND holder = %s AND token = %s AND expires_at > now() FOR SHARE",
            (unit, held[0], held[1]),
        )
        if await cur.fetchone() is not None:
            return
    fence.fenced(unit)
    raise FencedError(f"this replica no longer holds the lease on {unit}; its write was refused")
