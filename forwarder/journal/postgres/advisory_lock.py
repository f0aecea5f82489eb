"""The PostgreSQL state's lock for the replicas and the state-changing tools: a session-level
advisory lock every replica holds shared and a tool (``state set-cursor``, ``state reset``,
``backfill``, ``dlq replay``/``purge``, ``state migrate``) takes exclusively without waiting,
in place of the SQLite state's flock (``forwarder.state_lock``), which cannot span hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from forwarder.journal.postgres.connection import cannot_connect, first_line
from forwarder.journal.types import StateError

if TYPE_CHECKING:
    import psycopg

log = structlog.get_logger("forwarder.replicas")
LOCK_NAME = "audit-forwarder state"  # hashtext() of it is the advisory lock's key


def refusal(where: str) -> str:
    """The SQLite lock's wording (``forwarder.state_lock``), for the PostgreSQL state."""
    return (
        f"the daemon (or another state-changing command) is running on {where} and holds its advisory lock "
        f"'{LOCK_NAME}'; stop it first (every replica), then run this command again (read-only commands such "
        "as `state show` and `dlq list` work while it runs)"
    )


class AdvisoryLock:
    """A session-level advisory lock on its own connection (a pooled one would hand the lock
    to whatever borrowed the connection next, and lose it when the pool recycles it)."""

    def __init__(self, conninfo: str, where: str, connect_timeout_s: float = 10.0) -> None:
        self.conninfo = conninfo
        self.where = where
        self.connect_timeout_s = connect_timeout_s
        self.conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self.last_error: str | None = None

    async def connect(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """A connection of its own (psycopg's errors as they are)."""
        import psycopg

        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s))
        )

    async def _try(self, function: str) -> bool:
        import psycopg

        try:
            conn = await self.connect()
        except psycopg.Error as exc:
            raise cannot_connect(self.where, f"{type(exc).__name__}: {first_line(exc)}") from None
        query = f"SELECT {function}(hashtext(%s))"  # one of two fixed function names
        row = await (await conn.execute(query, (LOCK_NAME,))).fetchone()
        if not (row and row[0]):
            await conn.close()
            return False
        self.conn = conn
        return True

    async def exclusive(self) -> None:
        """For a state-changing tool: refused at once while any replica (or tool) holds it."""
        if not await self._try("pg_try_advisory_lock"):
            raise StateError(refusal(self.where))

    async def shared(self) -> None:
        """For a replica: refused only while a state-changing tool holds it exclusively."""
        if not await self._try("pg_try_advisory_lock_shared"):
            raise StateError(
                f"a state-changing command (state set-cursor, state reset, backfill, dlq replay or purge, state "
                f"migrate) is running on {self.where} and holds its advisory lock '{LOCK_NAME}'; let it finish, "
                "then start this replica again"
            )

    async def keep_shared(self, timeout_s: float) -> bool:
        """True while the shared lock is held. A connection the server dropped (a restart, a
        terminated backend) took the lock with it: it is taken again on a new connection.
        Bounded by ``timeout_s``: a cut network must not hold up the lease renewals."""
        try:
            if self.conn is not None:
                try:
                    await asyncio.wait_for(self.conn.execute("SELECT 1"), timeout=timeout_s)
                    return True
                except Exception:
                    with contextlib.suppress(Exception):
                        await self.conn.close()
                    self.conn = None
            await asyncio.wait_for(self.shared(), timeout=timeout_s)
        except (StateError, TimeoutError) as exc:
            error = str(exc) or "no answer in time"
            if error != self.last_error:
                log.error("the state's advisory lock is not held; this replica works on nothing until it is",
                          error=error)  # fmt: skip
            self.last_error = error
            return False
        if self.last_error is not None:
            log.info("the state's advisory lock is held again")
            self.last_error = None
        return True

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
            self.conn = None
