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


def source_unit(source: str, organization: str) -> str:
    """A work unit a replica leases (``forwarder.replicas``): one organization of a source..."""
    return f"source/{source}/{organization}"


def sink_unit(sink: str) -> str:
    """...or one sink's delivery."""
    return f"sink/{sink}"


def unreachable(exc: BaseException) -> bool:
    """A PostgreSQL state out of reach (server down or restarting, network cut, pool exhausted
    waiting for it): the work waits for the database, with a one-line reason, no traceback.
    Only the driver's connection-class errors (``OperationalError``, ``InterfaceError``, and
    the pool's timeout beneath them): a refused grant or a bad query is a fault to show whole.
    By name, so that the SQLite-only install needs no driver."""
    return any(
        kind.__module__.split(".")[0] == "psycopg" and kind.__name__ in ("OperationalError", "InterfaceError")
        for kind in type(exc).__mro__
    )


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
