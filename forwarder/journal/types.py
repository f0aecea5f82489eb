"""What the journal hands out, whatever its backend: errors, statistics, dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forwarder.record import Record


class StateError(Exception):
    """The state database cannot be used as it is; the daemon refuses to start rather than
    silently resetting cursors (that would re-send or lose history)."""


class FencedError(Exception):
    """A write under a lease this replica no longer holds was refused; the work unit is dropped.
    Here, not beside the PostgreSQL journal, so the poller and the sink workers can catch it
    without importing the driver."""


def unreachable(exc: BaseException) -> bool:
    """A PostgreSQL state out of reach (server down or restarting, network cut, pool exhausted
    waiting for it): the work waits for the database, with a one-line reason, no traceback.
    By module, so that the SQLite-only install needs no driver."""
    return type(exc).__module__.split(".")[0] in ("psycopg", "psycopg_pool")


class DiskFullError(Exception):
    """Writing the journal failed for lack of space: nothing was committed, the cursor did not move."""


@dataclass(frozen=True)
class SinkLag:
    sink: str
    offset: int
    events: int
    oldest_ms: int | None


@dataclass(frozen=True)
class JournalStats:
    events: int
    bytes: int
    head_seq: int
    cursors: list[tuple[str, str, dict[str, Any], float]]
    sinks: list[SinkLag]
    quarantined: dict[tuple[str, str], int]
    dead_letters: dict[str, int]


@dataclass(frozen=True)
class DeadLetter:
    """A record a sink gave up on, with why and when; ``record`` is what the sink was sent."""

    id: int
    sink: str
    reason: str
    at: float
    record: Record
