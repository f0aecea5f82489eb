"""The connection type of the PostgreSQL state and the two query shorthands its modules share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


async def rows(conn: Conn, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    return await (await conn.execute(query, params)).fetchall()


async def row(conn: Conn, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    return await (await conn.execute(query, params)).fetchone()
