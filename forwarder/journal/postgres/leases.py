"""Leases: how replicas sharing one PostgreSQL state divide the work among them.

A work unit is one source-and-organization stream or one sink's delivery. Each has a row in
``af_leases`` with its holder (a replica id), its expiry and a fencing token incremented at
every acquisition. Expiry is always the database's clock (``now()``), never a replica's.

Every ``renew_every_s`` a replica, in one transaction: marks itself alive in ``af_replicas``,
renews the leases it holds (those not renewed were taken over: it drops them), releases what
it holds beyond its fair share (``ceil(units / live replicas)``, so a joining replica gets work
without waiting for an expiry) and acquires free or expired units up to its share, the longest free first.

A free unit's ``expires_at`` is when it became free: when its lease expired, or when it was
released (set to ``now()``, not ``-infinity``); a row still at ``-infinity`` (a unit never held,
or one released by a release before this rule) is stamped ``now()`` by the first renewal that
finds it free. So, with no extra column, each renewal also learns which configured units have
had no live holder for over twice the TTL (``unheld``): a fault of the balance, never a normal
movement (a released or expired unit is taken within a renewal or two), logged once when it
starts and once when it ends, and shown in ``/healthz`` and ``/metrics``.

A replica that cannot reach the database keeps working only until ``valid_until``: the
monotonic time at which it sent its last successful renewal, plus the TTL, less a margin. The
database's lease ends at the earliest TTL after that renewal committed, so the replica stops
before any other can take its units over. Writes are fenced in the journal
(``forwarder.journal.postgres.fencing``) whatever this module believes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from psycopg_pool import AsyncConnectionPool

from forwarder.journal.postgres.sql import Conn
from forwarder.redaction import clip

log = structlog.get_logger("forwarder.leases")
SAFETY = 0.2  # the share of the TTL a replica gives up early, for clock rates and scheduling delays


@dataclass
class LeaseCounters:
    takeovers: int = 0  # expired leases of another replica this one took
    fenced: int = 0  # writes the database refused because the lease was lost
    released: int = 0  # units given up for the balance


@dataclass
class Leases:
    """The fence the journal consults, and the balancer that keeps it current."""

    pool: AsyncConnectionPool[Conn]
    replica: str
    ttl_s: float
    on_change: Callable[[], None] = lambda: None
    held: dict[str, int] = field(default_factory=dict)
    valid_until: float = 0.0
    counters: LeaseCounters = field(default_factory=LeaseCounters)
    units: list[str] = field(default_factory=list)
    unheld: list[str] = field(default_factory=list)  # configured units without a live holder for over 2 x TTL
    last_error: str | None = None
    benched: dict[str, float] = field(default_factory=dict)  # unit -> monotonic time this replica may take it again
    live: int = 1  # live replicas, this one included, as of the last renewal
    adopted: set[str] = field(default_factory=set)  # taken beyond the share (``_adopt``): released last
    _attempt: asyncio.Future[tuple[float, bool]] | None = field(default=None, repr=False)

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 4

    # --- the fence (``forwarder.journal.postgres.fencing.Fence``) ------------------------------
    def holding(self, unit: str) -> tuple[str, int] | None:
        token = self.held.get(unit)
        if token is None or time.monotonic() >= self.valid_until or unit in self.benched:
            return None
        return self.replica, token

    def bench(self, unit: str, seconds: float, why: str) -> None:
        """Hands ``unit`` to another replica: this one stops working on it at once, releases it at
        its next renewal and takes it again no sooner than ``seconds`` from now. Only while
        another replica is live (alone, there is nobody to hand it to) and only once per turn."""
        if self.live <= 1 or unit not in self.held or unit in self.benched:
            return
        self.benched[unit] = time.monotonic() + seconds
        log.warning("handing the unit to another replica", unit=unit, reason=why, for_s=seconds)

    def owns(self, unit: str) -> bool:
        return self.holding(unit) is not None

    def fenced(self, unit: str) -> None:
        self.counters.fenced += 1
        if self.held.pop(unit, None) is not None:
            log.warning("lease lost: a write was refused; this replica drops the unit", unit=unit)
            self.on_change()

    # --- balancing ---------------------------------------------------------------------------
    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.tick()
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self.renew_every_s)
            except TimeoutError:
                pass

    async def tick(self) -> None:
        """One renewal, answered or not within ``renew_every_s``. A silent partition (a route
        dropped, a firewall discarding packets) hangs a query instead of failing it: that
        renewal is left to finish in the background, never doubled, and counted as failed now,
        so ``/readyz`` and the log say so while the leases run out."""
        if self._attempt is None:
            self._attempt = asyncio.ensure_future(self._renew(time.monotonic()))
        done, _ = await asyncio.wait({self._attempt}, timeout=self.renew_every_s)
        if not done:
            self._failed(f"no answer from the database within {self.renew_every_s:g}s")
            return
        attempt, self._attempt = self._attempt, None
        try:
            sent, changed = attempt.result()
        except Exception as exc:  # the database is unreachable or refused: keep what is still valid
            self._failed(f"{type(exc).__name__}: {clip(str(exc), 200)}")
            return
        if self.last_error is not None:
            log.info("leases renewed again", held=len(self.held))
            self.last_error = None
        # from when the renewal was sent: one answered late (a healed partition) may be valid no more
        self.valid_until = sent + self.ttl_s * (1 - SAFETY)
        if changed:
            self.on_change()

    async def _renew(self, sent: float) -> tuple[float, bool]:
        # the pool gives up before ``tick`` does: a database that refuses connections reads as
        # one error, not as that and "no answer" by turns (a log line each)
        async with self.pool.connection(timeout=self.renew_every_s * 0.8) as conn, conn.transaction():
            return sent, await self._balance(conn)

    def _failed(self, error: str) -> None:
        if error != self.last_error:
            left = round(max(0.0, self.valid_until - time.monotonic()), 1)
            log.error("cannot renew leases; work stops when they would expire", error=error, held=len(self.held),
                      seconds_left=left)  # fmt: skip
        self.last_error = error
        if self.held and time.monotonic() >= self.valid_until:
            log.error("leases expired without renewal; this replica stopped its units", units=len(self.held))
            self.held.clear()
            self.on_change()

    async def _balance(self, conn: Conn) -> bool:
        ttl = f"{self.ttl_s} seconds"
        await conn.execute(
            "INSERT INTO af_replicas VALUES (%s, now() + %s::interval) "
            "ON CONFLICT (replica) DO UPDATE SET expires_at = excluded.expires_at",
            (self.replica, ttl),
        )
        await conn.execute("DELETE FROM af_replicas WHERE expires_at < now() - interval '1 day'")
        await conn.execute(  # free from now: a unit configured later is not unheld since the epoch
            "INSERT INTO af_leases (unit, expires_at) SELECT unnest(%s::text[]), now() ON CONFLICT (unit) DO NOTHING",
            (self.units,),
        )
        before = dict(self.held)
        renewed = await (
            await conn.execute(
                "UPDATE af_leases SET expires_at = now() + %s::interval "
                "WHERE holder = %s AND unit = ANY(%s) AND expires_at > now() RETURNING unit, token",
                (ttl, self.replica, list(self.held)),
            )
        ).fetchall()
        self.held = {str(u): int(t) for u, t in renewed if before.get(str(u)) == int(t)}
        for unit in sorted(set(before) - set(self.held)):
            log.warning("lease lost to another replica or expired; this replica drops the unit", unit=unit)
        now = time.monotonic()
        self.benched = {u: until for u, until in self.benched.items() if until > now}
        gone = [u for u in self.held if u not in self.units]  # no longer configured
        handed = [u for u in self.held if u in self.benched and u not in gone]
        for unit in gone + handed:
            del self.held[unit]
        share = await self._share(conn)
        self.adopted &= set(self.held)
        extra = sorted(self.held, key=lambda u: (u not in self.adopted, u))[share:]
        for unit in extra:
            del self.held[unit]
        if gone or extra or handed:
            await conn.execute(  # expires_at: when it became free (``unheld``)
                "UPDATE af_leases SET holder = NULL, expires_at = now() WHERE holder = %s AND unit = ANY(%s)",
                (self.replica, gone + extra + handed),
            )
            if handed:
                log.info("released: handed to another replica", units=handed)
            self.counters.released += len(extra)
            if extra:
                log.info("released to balance the replicas", units=extra, share=share)
            if gone:
                log.info("released: no longer configured", units=gone)
        want = share - len(self.held)
        if want > 0:
            await self._acquire(conn, want, share)
        else:
            await self._adopt(conn)
        await self._watch(conn)
        return self.held != before

    async def _acquire(self, conn: Conn, want: int, share: int) -> None:
        """The longest free first (``expires_at``, when it became free): a free unit is taken
        before any freed after it, so none can be passed over round after round, as the
        alphabetical order passed over the last unit (``tests/ha/test_lease_rotation.py``).
        ``SKIP LOCKED`` stays safe with it: a row another renewal is taking is skipped, and one
        it took meanwhile is re-checked against the ``WHERE`` before it is locked."""
        ttl = f"{self.ttl_s} seconds"
        taken = await (
            await conn.execute(
                "UPDATE af_leases AS l SET holder = %s, token = l.token + 1, expires_at = now() + %s::interval, "
                "takeovers = l.takeovers + (l.holder IS NOT NULL AND l.holder <> %s)::int "
                "FROM (SELECT unit, holder AS old FROM af_leases WHERE unit = ANY(%s) AND (holder IS NULL "
                "  OR expires_at <= now()) ORDER BY expires_at, unit LIMIT %s FOR UPDATE SKIP LOCKED) AS f "
                "WHERE l.unit = f.unit RETURNING l.unit, l.token, f.old",
                (self.replica, ttl, self.replica, [u for u in self.units if u not in self.benched], want),
            )
        ).fetchall()
        free: list[str] = []
        for unit, token, old in taken:
            self.held[str(unit)] = int(token)
            if old is not None and old != self.replica:
                self.counters.takeovers += 1
                log.info("took over an expired lease", unit=unit, previous_holder=old, token=int(token))
            else:
                free.append(str(unit))
        if free:
            log.info("took free units", units=sorted(free), share=share)

    async def _adopt(self, conn: Conn) -> None:
        """A unit released over a TTL ago that nobody took: every replica that may take it is at
        its share. Where the units divide evenly, that is what a unit handed over (``bench``)
        became: its holder may not take it back and the others were full, so the sink went
        undelivered until the holder's bench ended, then failed there again. One such unit is
        taken beyond the share at each renewal; the next renewal releases one of this replica's
        others instead (``adopted`` go last), which a replica with room takes."""
        row = await (
            await conn.execute(
                "UPDATE af_leases AS l SET holder = %s, token = l.token + 1, expires_at = now() + %s::interval "
                "FROM (SELECT unit FROM af_leases WHERE unit = ANY(%s) AND holder IS NULL AND isfinite(expires_at) "
                "  AND expires_at <= now() - %s::interval ORDER BY expires_at, unit LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "AS f WHERE l.unit = f.unit RETURNING l.unit, l.token",
                (self.replica, f"{self.ttl_s} seconds", [u for u in self.units if u not in self.benched],
                 f"{self.ttl_s} seconds"),
            )
        ).fetchone()  # fmt: skip
        if row is not None:
            self.held[str(row[0])] = int(row[1])
            self.adopted.add(str(row[0]))
            log.warning("took a unit nobody took, beyond the share", unit=str(row[0]), share=len(self.held) - 1)

    async def _watch(self, conn: Conn) -> None:
        """Which configured units have had no live holder for over twice the TTL. A row never
        held or released by an earlier release (``-infinity``) is stamped free from now; one
        another renewal is taking is skipped, never waited on (two renewals waiting on each
        other's rows would deadlock)."""
        await conn.execute(
            "UPDATE af_leases SET expires_at = now() WHERE unit IN (SELECT unit FROM af_leases WHERE unit = ANY(%s) "
            "AND holder IS NULL AND expires_at = '-infinity' FOR UPDATE SKIP LOCKED)",
            (self.units,),
        )
        rows = await (
            await conn.execute(
                "SELECT unit, EXTRACT(EPOCH FROM now() - expires_at) FROM af_leases WHERE unit = ANY(%s) "
                "AND isfinite(expires_at) AND expires_at <= now() - %s::interval ORDER BY unit",
                (self.units, f"{2 * self.ttl_s} seconds"),
            )
        ).fetchall()
        unheld = {str(unit): round(float(seconds), 1) for unit, seconds in rows}
        started = sorted(set(unheld) - set(self.unheld))
        ended = sorted(u for u in set(self.unheld) - set(unheld) if u in self.units)
        if started:
            log.error("work units have had no live holder for over twice lease_ttl_s: nobody polls or delivers them",
                      units=started, seconds_unheld=max(unheld[u] for u in started), held=len(self.held),
                      unheld=len(unheld))  # fmt: skip
        if ended:
            log.info("unheld work units have a live holder again", units=ended)
        self.unheld = sorted(unheld)

    async def _share(self, conn: Conn) -> int:
        """How many units this replica keeps: ``ceil(units / live)``, or one less while a live
        replica holds fewer than ``floor(units / live)`` (a replica that just joined): with the
        ceiling alone, 4 units on 3 replicas stay 2, 2, 0. Never less than the floor: where the
        units divide evenly (9 on 3), a replica below it means a unit is free already, and a
        release there only moved the hole on, round after round, so the unit released first
        and taken last (the alphabetically last) stayed unheld and unpolled for good (the HA
        chaos test's lost ConfigCat entries; ``tests/ha/test_lease_rotation.py``)."""
        rows = await (
            await conn.execute(
                "SELECT r.replica, COUNT(l.unit) FROM af_replicas r LEFT JOIN af_leases l ON l.holder = r.replica "
                "AND l.expires_at > now() AND l.unit = ANY(%s) WHERE r.expires_at > now() GROUP BY r.replica",
                (self.units,),
            )
        ).fetchall()
        live = self.live = max(1, len(rows))
        ceiling = math.ceil(len(self.units) / live)
        floor = len(self.units) // live
        starved = any(int(n) < floor for _, n in rows)
        return ceiling - 1 if starved and len(self.held) >= ceiling and ceiling > floor else ceiling

    async def release_all(self) -> None:
        """At a clean stop: the others take the units at their next tick instead of at expiry."""
        if self._attempt is not None:  # a renewal the database never answered
            self._attempt.cancel()
            self._attempt = None
        if not self.held:
            return
        units, self.held = list(self.held), {}
        try:
            async with self.pool.connection(timeout=5) as conn:
                await conn.execute(
                    "UPDATE af_leases SET holder = NULL, expires_at = now() WHERE holder = %s AND unit = ANY(%s)",
                    (self.replica, units),
                )
        except Exception as exc:  # they expire by themselves
            log.warning("could not release leases at stop; they expire after their TTL", error=type(exc).__name__)
