"""Replicas sharing one PostgreSQL state: the daemon's side of the leases.

With ``state.backend: postgresql`` any number of ``audit-forwarder run`` processes with the
same configuration divide the work units (each source x organization, each sink) through
``forwarder.journal.postgres.leases``. This module wires that into the daemon: the poller
polls only the organizations whose lease this replica holds, a sink worker delivers only
while it holds its sink's lease, and the journal fences every write with the same leases
(``ReplicaFence``), so a replica that lost a lease can never commit under it.

psycopg is an optional dependency: this module imports it only where the configuration names
PostgreSQL, so the daemon holds its state through ``StateOwner`` whatever the backend.

The SQLite state's flock (``forwarder.state_lock``) cannot span hosts; its place is taken by a
PostgreSQL advisory lock held on a dedicated connection
(``forwarder.journal.postgres.advisory_lock``): every replica
holds it shared, and a state-changing tool (``state set-cursor``, ``state reset``,
``backfill``, ``dlq replay``/``purge``, ``state migrate``) takes it exclusively without
waiting, refused as the SQLite lock refuses while any replica runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from forwarder.journal.postgres.advisory_lock import AdvisoryLock
from forwarder.journal.postgres.connection import cannot_connect, first_line
from forwarder.journal.protocols import StateJournal
from forwarder.journal.settings import StateSettings
from forwarder.journal.types import sink_unit, source_unit
from forwarder.state_lock import StateLock

if TYPE_CHECKING:
    from forwarder.delivery import SinkWorker
    from forwarder.journal.postgres.journal import PostgresJournal
    from forwarder.journal.postgres.leases import Leases
    from forwarder.polling import Poller

log = structlog.get_logger("forwarder.replicas")


class Replicas:
    """This replica's leases, kept current in the background, and the journal's fence."""

    def __init__(
        self, state: StateSettings, journal: PostgresJournal, on_gain: Callable[[set[str]], None] = lambda _: None,
        *, exclusive: bool = False,
    ) -> None:  # fmt: skip
        """``exclusive``: a state-changing tool that runs the daemon's machinery (``backfill``):
        it takes the advisory lock exclusively, so no replica runs beside it, and needs no lease."""
        from forwarder.journal.factory import postgres_conninfo
        from forwarder.journal.postgres.leases import Leases

        conninfo, where = postgres_conninfo(state)
        self.journal = journal
        self.replica = state.replica_id
        self.lock = AdvisoryLock(conninfo, where)
        self.locked = False
        self.leases: Leases = Leases(journal.pool, state.replica_id, state.lease_ttl_s, on_change=self._changed)
        self.handover_s = state.sink_handover_s
        self.on_gain = on_gain
        self.exclusive = exclusive
        self._owned: set[str] = set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- the fence the journal consults -------------------------------------------------------
    def holding(self, unit: str) -> tuple[str, int] | None:
        return self.leases.holding(unit) if self.locked else None

    def owns(self, unit: str) -> bool:
        return self.exclusive or self.holding(unit) is not None

    def fenced(self, unit: str) -> None:
        self.leases.fenced(unit)

    def source_owner(self, source: str) -> Callable[[str], bool]:
        def owns(organization: str) -> bool:
            unit = source_unit(source, organization)
            if unit not in self.leases.units:  # discovered since the start (forwarder.sources.tenants)
                self.leases.units = sorted({*self.leases.units, unit})  # taken at the next renewal
            return self.owns(unit)

        return owns

    def sink_owner(self, sink: str) -> SinkLease:
        return SinkLease(self, sink_unit(sink))

    def hand_over(self, unit: str, failing_s: float | None) -> None:
        """A sink this replica cannot deliver: failing for ``sink_handover_s`` (its receiver out of
        this host's reach, maybe not of another's), or stopped (``failing_s`` None: an error
        retrying cannot fix here, such as a directory this host may not create) is handed to
        another live replica instead of being held, undelivered, for as long as this one runs.
        A stopped sink is not taken again until a reload (which starts it again) or a restart."""
        if self.handover_s == 0:
            return
        if failing_s is None:
            self.leases.bench(unit, float("inf"), "the sink stopped on this replica")
        elif self.handover_s <= failing_s:  # not back before another replica could take it (``_adopt``)
            away = max(self.handover_s, 2 * self.leases.ttl_s)
            self.leases.bench(unit, away, f"the sink has been failing here for {failing_s:.0f}s")

    # --- lifecycle ----------------------------------------------------------------------------
    async def reachable(self, stopping: asyncio.Event) -> bool:
        """Until the database accepts a connection, or ``stopping`` is set (False). A replica
        started while its database is down (a host rebooted before it, a database failover, a
        rolling restart of both) exited at once with 'cannot connect', and came back only if a
        supervisor restarted it: Docker Compose without a restart policy, or a Kubernetes pod in
        its crash back-off (up to 5 minutes), left it down long after the database was back,
        where a replica already running rides the same outage out by itself. It now waits the
        same way: one error line per distinct cause, a new attempt every ``lease_ttl_s / 4``."""
        import psycopg

        last: str | None = None
        while not stopping.is_set():
            try:
                conn = await self.lock.connect()
            except psycopg.OperationalError as exc:
                error = f"{type(exc).__name__}: {first_line(exc)}"
                if error != last:
                    log.error("the PostgreSQL state cannot be reached; this replica starts when it answers",
                              state=self.lock.where, error=error)  # fmt: skip
                last = error
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=self.leases.renew_every_s)
                continue
            await conn.close()
            if last is not None:
                log.info("the PostgreSQL state answers; this replica starts", state=self.lock.where)
            return True
        return False

    async def acquire_lock(self) -> None:
        """Before anything changes the state: refused while a state-changing tool runs."""
        await (self.lock.exclusive() if self.exclusive else self.lock.shared())
        self.locked = True

    async def start(self, units: Iterable[str]) -> None:
        """Takes this replica's share at once (the first polls then have work), then keeps the
        leases renewed every ``lease_ttl_s / 4`` until ``stop``."""
        self.leases.units = sorted(units)
        if self.exclusive:  # alone on the state: nothing to share, nothing to fence
            return
        self.journal.fence = self
        await self.leases.tick()
        log.info("replica started", replica=self.replica, units=len(self.leases.units), held=len(self.leases.held),
                 lease_ttl_s=self.leases.ttl_s)  # fmt: skip
        self._task = asyncio.create_task(self._run(), name="leases")

    def set_units(self, units: Iterable[str], stopped: Iterable[str] = ()) -> None:
        """After a reload: units no longer configured are released at the next renewal; units
        handed over may be taken again (a reload starts stopped sinks again), but not ``stopped``
        ones, whose sink the reload did not start again (a secret rotation rebuilds only what
        uses the secret): taken back, nothing here would deliver them."""
        self.leases.units = sorted(units)
        kept = set(stopped)
        self.leases.benched = {u: until for u, until in self.leases.benched.items() if u in kept}

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.leases.tick()
                self.locked = await self.lock.keep_shared(self.leases.renew_every_s)
            except Exception:  # the balancer must outlive any surprise: work stops when leases lapse
                log.exception("lease renewal failed unexpectedly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.leases.renew_every_s)

    async def stop(self) -> None:
        """At a clean stop, after the sinks finished their batches: the units are released, so
        the other replicas take them at their next renewal instead of after the TTL."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.leases.release_all()
        self.locked = False
        await self.lock.close()

    def _changed(self) -> None:
        owned = {unit for unit in self.leases.held if self.owns(unit)}
        gained = owned - self._owned
        self._owned = owned
        self.on_gain(gained)

    # --- what operators see --------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        counters = self.leases.counters
        return {
            "replica": self.replica,
            "units": len(self.leases.units),
            "held": sorted(unit for unit in self.leases.held if self.owns(unit)),
            "unheld": list(self.leases.unheld),  # no live holder anywhere for over 2 x TTL (not this replica's fault)
            "takeovers": counters.takeovers,
            "fenced_writes": counters.fenced,
            "released": counters.released,
            "advisory_lock": self.locked,
            "error": self.leases.last_error,
        }

    def problems(self) -> list[str]:
        if self.leases.last_error is not None:
            return [f"cannot renew leases on the PostgreSQL state: {self.leases.last_error}"]
        if not self.locked:
            return ["the PostgreSQL state's advisory lock is not held (a state-changing command runs)"]
        return []


@dataclass(frozen=True)
class SinkLease:
    """What a sink worker asks of its lease (``forwarder.delivery.SinkLease``): whether this
    replica holds it, and to hand it over when the sink cannot be delivered from here."""

    replicas: Replicas
    unit: str

    def __call__(self) -> bool:
        return self.replicas.owns(self.unit)

    def hand_over(self, failing_s: float | None) -> None:
        self.replicas.hand_over(self.unit, failing_s)


def units_of(pollers: Mapping[str, Poller], sinks: Iterable[str]) -> list[str]:
    """Every work unit of a configuration: each organization of each source, each sink."""
    organizations = [source_unit(n, org) for n, poller in pollers.items() for org in poller.source.organizations()]
    return organizations + [sink_unit(s) for s in sinks]


class StateOwner:
    """How a daemon holds its state, whatever the backend: a SQLite state by its flock (one
    process); a PostgreSQL state by the advisory lock, shared, and the leases (``Replicas``).
    The daemon calls the same five steps either way, so it knows nothing of leases."""

    def __init__(
        self, state: StateSettings, state_dir: Path, journal: StateJournal, on_gain: Callable[[set[str]], None],
        *, exclusive: bool,
    ) -> None:  # fmt: skip
        self.lock = StateLock(state_dir) if state.backend == "sqlite" else None
        self.replicas: Replicas | None = None
        if state.backend == "postgresql":
            from forwarder.journal.postgres.journal import PostgresJournal

            assert isinstance(journal, PostgresJournal)
            self.replicas = Replicas(state, journal, on_gain, exclusive=exclusive)

    async def reachable(self, stopping: asyncio.Event) -> bool:
        """``run`` waits here for a PostgreSQL state out of reach (``Replicas.reachable``); False:
        stopped meanwhile, nothing started. ``once`` and the tools fail at once instead."""
        return self.replicas is None or self.replicas.exclusive or await self.replicas.reachable(stopping)

    async def acquire(self) -> None:
        """Before the journal opens: a refused start migrates nothing."""
        if self.lock is not None:
            self.lock.acquire()
        if self.replicas is not None:
            await self.replicas.acquire_lock()

    async def start(self, pollers: Mapping[str, Poller], workers: Mapping[str, SinkWorker]) -> None:
        if self.replicas is not None:
            await self.replicas.start(units_of(pollers, workers))

    def reconfigured(self, pollers: Mapping[str, Poller], workers: Mapping[str, SinkWorker]) -> None:
        """After a reload: units no longer configured are released at the next renewal."""
        if self.replicas is not None:
            stopped = [sink_unit(name) for name, worker in workers.items() if worker.status.state == "stopped"]
            self.replicas.set_units(units_of(pollers, workers), stopped)

    def source_owner(self, source: str) -> Callable[[str], bool] | None:
        """None: one process owns the state, every organization is polled."""
        return None if self.replicas is None else self.replicas.source_owner(source)

    def sink_owner(self, sink: str) -> SinkLease | None:
        return None if self.replicas is None else self.replicas.sink_owner(sink)

    async def stop(self) -> None:
        """After the sinks finished their batches, before the journal closes: leases released."""
        if self.replicas is not None:
            await self.replicas.stop()

    def release(self) -> None:
        """After the journal closed."""
        if self.lock is not None:
            self.lock.release()


async def schema_version(conninfo: str, where: str) -> int | None:
    """The state's schema version, or None for a database without the state's tables yet."""
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            row = await (await conn.execute("SELECT to_regclass('af_meta') IS NOT NULL")).fetchone()
            if not (row and row[0]):
                return None
            found = await (await conn.execute("SELECT value FROM af_meta WHERE key = 'schema_version'")).fetchone()
    except psycopg.Error as exc:
        raise cannot_connect(where, f"{type(exc).__name__}: {first_line(exc)}") from None
    return int(str(found[0])) if found else 0


async def create_refusal(conninfo: str) -> str | None:
    """Why this role could not create the state's tables (``check`` on an empty database, before
    a replica's first start fails on it), or None when it can."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        row = await (
            await conn.execute("SELECT current_schema(), has_schema_privilege(current_schema(), 'CREATE')")
        ).fetchone()
    if row is None or row[0] is None:
        return "no schema of its search_path exists to create the tables in"
    if not row[1]:
        return f"this role may not create tables in schema {row[0]}"
    return None


async def lease_rows(journal: StateJournal) -> list[dict[str, Any]]:
    """Every lease of a PostgreSQL state, for ``state show``: read-only, safe while replicas run.
    A unit whose lease has expired shows its last holder with ``expired``."""
    from forwarder.journal.postgres.journal import PostgresJournal

    assert isinstance(journal, PostgresJournal)
    async with journal.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT unit, holder, CASE WHEN isfinite(expires_at) THEN expires_at END, token, takeovers, "
                "expires_at > now() FROM af_leases ORDER BY unit"
            )
        ).fetchall()
    return [
        {
            "unit": unit, "holder": holder,
            "expires_at": None if holder is None or expires is None else expires.isoformat(),
            "token": int(token), "takeovers": int(takeovers), "expired": holder is not None and not live,
        }
        for unit, holder, expires, token, takeovers, live in rows
    ]  # fmt: skip
