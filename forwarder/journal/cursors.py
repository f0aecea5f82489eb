"""Where each source resumes, per organization: one opaque JSON document per row."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson


def get(db: sqlite3.Connection, source: str, organization: str) -> dict[str, Any] | None:
    row = db.execute("SELECT state FROM cursors WHERE source=? AND organization=?", (source, organization)).fetchone()
    return None if row is None else dict(orjson.loads(row[0]))


def put(db: sqlite3.Connection, source: str, organization: str, cursor: dict[str, Any], now: float) -> None:
    """Inside the caller's transaction: the cursor commits with the page it follows."""
    db.execute(
        "INSERT INTO cursors VALUES (?, ?, ?, ?) ON CONFLICT (source, organization) "
        "DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
        (source, organization, orjson.dumps(cursor), now),
    )


def delete(db: sqlite3.Connection, source: str | None, organization: str | None) -> int:
    """None matches any: the next poll of each affected organization starts from initial_lookback."""
    cur = db.execute(
        "DELETE FROM cursors WHERE (? IS NULL OR source=?) AND (? IS NULL OR organization=?)",
        (source, source, organization, organization),
    )
    return int(cur.rowcount)


def listing(db: sqlite3.Connection) -> list[tuple[str, str, dict[str, Any], float]]:
    return [
        (s, o, dict(orjson.loads(state)), float(at))
        for s, o, state, at in db.execute("SELECT source, organization, state, updated_at FROM cursors ORDER BY 1, 2")
    ]
