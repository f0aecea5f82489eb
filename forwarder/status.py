"""What the running parts record about themselves, and the read-only view of it that
``/metrics``, ``/healthz`` and ``/readyz`` are given.

The poller writes an ``OrgStatus`` per organization and a sink worker a ``SinkState``; the
daemon passes itself to the health server as a ``StatusView``. The readers (``forwarder.metrics``,
``forwarder.health``) depend on these protocols only, never on the daemon, so any number of
daemons may live in one process (``backfill`` builds its own) without one's endpoints
reading another's state, and a second state backend only has to offer ``JournalView`` (its
``problems`` replaces the file's writable check; a PostgreSQL state's reachability is its
replica's, ``ReplicasView``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass
class OrgStatus:
    state: str = "idle"  # idle, polling, ok, failed, paused
    error: str | None = None
    last_success: float | None = None
    events: int = 0
    pages: int = 0
    quarantined: int = 0
    failures: int = 0
    failing_since: float | None = None


@dataclass
class SinkState:
    state: str = "starting"  # starting, running, retrying, stopped
    error: str | None = None
    delivered: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    batches: int = 0
    retries: int = 0
    last_delivery: float | None = None  # wall time of the last confirmed batch
    # monotonic time of the first failure since the last confirmed batch: how long a receiver
    # has been refusing or out of reach, which the retry loop's own state forgets at every
    # attempt. Monotonic, as the pollers' ``failing_since``: a clock step must not make a sink
    # that failed a second ago look failing for an hour (``wall_failing_since`` shows it)
    failing_since: float | None = None

    def failed(self, error: str, state: str = "retrying") -> None:
        self.state = state
        self.error = error
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def failing_for(self) -> float | None:
        return None if self.failing_since is None else time.monotonic() - self.failing_since

    def wall_failing_since(self) -> float | None:
        failing = self.failing_for()
        return None if failing is None else time.time() - failing

    def confirmed(self, at: float) -> None:
        self.state = "running"
        self.error = None
        self.failing_since = None
        self.last_delivery = at


class PollerView(Protocol):
    @property
    def status(self) -> Mapping[str, OrgStatus]:
        """Per organization."""
        ...


class WorkerView(Protocol):
    @property
    def status(self) -> SinkState: ...

    @property
    def offset(self) -> int: ...

    @property
    def caught_up(self) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


class JournalView(Protocol):
    @property
    def path(self) -> Path | str:
        """The SQLite file, or how a PostgreSQL state is named (host, port, database)."""
        ...

    def problems(self) -> list[str]:
        """What keeps this state from taking writes, for ``/readyz`` (an unwritable file)."""
        ...

    @property
    def head(self) -> int: ...

    @property
    def size(self) -> tuple[int, int]:
        """Events and bytes held."""
        ...

    def is_full(self) -> bool: ...

    async def get_cursor(self, source: str, organization: str) -> dict[str, Any] | None: ...

    async def journaled_at(self, seq: int) -> float | None: ...


class ReplicasView(Protocol):
    """A replica's leases on a PostgreSQL state (``forwarder.replicas.Replicas``)."""

    def describe(self) -> dict[str, Any]:
        """``held`` (units), ``unheld`` (units nobody holds), ``takeovers``, ``fenced_writes``, ``error``, ..."""
        ...

    def problems(self) -> list[str]:
        """Why this replica cannot work now (leases not renewed, advisory lock not held)."""
        ...


class MetricsView(Protocol):
    @property
    def host_port(self) -> tuple[str, int]: ...

    @property
    def source_failing_threshold_s(self) -> float: ...

    @property
    def sink_failing_threshold_s(self) -> float: ...


class SettingsView(Protocol):
    """Of the settings, what the endpoints read (``metrics`` is restart-only)."""

    @property
    def metrics(self) -> MetricsView: ...


class StatusView(Protocol):
    """The daemon as its endpoints see it; they read and never change it."""

    @property
    def settings(self) -> SettingsView: ...

    @property
    def started(self) -> bool: ...

    @property
    def started_at(self) -> float:
        """Unix time."""
        ...

    @property
    def config_path(self) -> Path | None: ...

    @property
    def pollers(self) -> Mapping[str, PollerView]: ...

    @property
    def workers(self) -> Mapping[str, WorkerView]: ...

    @property
    def journal(self) -> JournalView: ...

    @property
    def replicas(self) -> ReplicasView | None:
        """None on a SQLite state: one process, no leases."""
        ...

    def wall_time(self, loop_time: float | None) -> float | None:
        """Unix time of an event-loop (monotonic) timestamp, as pollers record them."""
        ...
