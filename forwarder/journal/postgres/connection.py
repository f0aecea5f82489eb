"""Connections to the PostgreSQL state: the pool the journal shares, and what an operator is told
when the database cannot be reached. libpq's messages name host, port and user, never the
password; only their first line is shown, and the log scrubs it anyway. Nothing here imports the
driver until a connection is made: a SQLite state never loads it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from forwarder.journal.types import StateError
from forwarder.redaction import clip

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from forwarder.journal.postgres.sql import Conn


def first_line(exc: BaseException) -> str:
    """Scrubbed before it is cut (``clip``): a cut inside a password would leave its beginning
    where the log's scrub no longer recognizes it."""
    return clip((str(exc).strip().splitlines() or [""])[0], 300)


def cannot_connect(where: str, cause: str, within: str = "") -> StateError:
    return StateError(
        f"cannot connect to the PostgreSQL state at {where}{within} ({cause}); "
        "check state.dsn, the password, the server and the network"
    )


def session_options(conninfo: str, ours: str) -> str:
    """The DSN's own ``options`` (or ``PGOPTIONS``), such as ``-c search_path=audit`` for a role
    that owns only its schema, followed by ours: a connection keyword given beside a DSN
    replaces the DSN's value, and the tables would be created in the wrong schema."""
    from psycopg.conninfo import conninfo_to_dict

    theirs = str(conninfo_to_dict(conninfo).get("options") or os.environ.get("PGOPTIONS", "")).strip()
    return f"{theirs} {ours}" if theirs else ours


def make_pool(
    conninfo: str, *, pool_size: int, connect_timeout_s: float, reconnect_s: float, stalled_transaction_s: float
) -> tuple[AsyncConnectionPool[Conn], dict[str, Any]]:
    """The pool, not opened yet, and the keywords each of its connections is made with.
    ``stalled_transaction_s``: the server aborts a transaction whose client stopped talking
    mid-way after this long; ``reconnect_s``: how long the pool retries a lost connection in the
    background once open (``PostgresJournal``'s docstring says why both)."""
    from psycopg_pool import AsyncConnectionPool

    kwargs: dict[str, Any] = {
        "autocommit": True,
        "connect_timeout": max(1, int(connect_timeout_s)),
        "options": session_options(
            conninfo, f"-c idle_in_transaction_session_timeout={max(1000, int(stalled_transaction_s * 1000))}"
        ),
    }
    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=pool_size,
        open=False,
        timeout=connect_timeout_s,
        reconnect_timeout=max(connect_timeout_s, reconnect_s),  # while open() waits; reconnect_s once open
        kwargs=kwargs,
        # An idle connection the server dropped (a restart, pg_terminate_backend, a proxy's idle
        # timeout) is found out when lent, with one round trip, and replaced: lent as it was, it
        # failed whatever borrowed it first, one by one, and a reload (SIGHUP) right after a
        # database restart was refused with a traceback (tests/ha/test_replicas.py, the split).
        check=AsyncConnectionPool.check_connection,
    )
    return pool, kwargs


async def why_not_connected(conninfo: str, kwargs: dict[str, Any]) -> str | None:
    """libpq's reason (a wrong password, a refused port, TLS the server does not offer), which
    the pool only logs."""
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, **kwargs)
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {first_line(exc)}"
    except Exception:  # only a better message is at stake
        return None
    await conn.close()
    return None
