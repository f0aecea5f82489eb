"""Entries that could not be normalized, kept with their reason instead of blocking the cursor."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from forwarder.event import json_safe


def insert(
    db: sqlite3.Connection, source: str, organization: str, entries: Sequence[tuple[str, Any]], now: float
) -> None:
    """Inside the caller's transaction: quarantined entries commit with their page."""
    db.executemany(
        "INSERT INTO quarantine (source, organization, reason, raw, at) VALUES (?, ?, ?, ?, ?)",
        [(source, organization, reason, as_json(raw), now) for reason, raw in entries],
    )


def counts(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
    return {
        (s, o): int(n) for s, o, n in db.execute("SELECT source, organization, COUNT(*) FROM quarantine GROUP BY 1, 2")
    }


def as_json(raw: Any) -> bytes:
    """Whatever made the entry fail (too deep, a value orjson cannot write) must not also fail
    the page's transaction, cursor and all."""
    try:
        return orjson.dumps(raw, default=str)
    except orjson.JSONEncodeError:
        return orjson.dumps(json_safe(raw), default=str)
