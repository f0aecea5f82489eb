"""Leases against a real PostgreSQL: the fair share, rebalancing by release, takeover after
expiry, and the fence that refuses a write of a replica that lost its lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from forwarder.chunks import JournalEntry
from forwarder.journal.postgres.journal import FencedError, PostgresJournal, source_unit
from forwarder.journal.postgres.leases import Leases
from forwarder.journal.settings import StateSettings
from forwarder.journal.types import sink_unit
from forwarder.replicas import Replicas
from tests.support.postgres import PostgresServer

UNITS = [source_unit("codacy", f"gh/org{i}") for i in range(4)]


class Replica:
    def __init__(self, dsn: str, name: str, ttl_s: float = 2.0) -> None:
        self.journal = PostgresJournal(dsn, replica=name)
        self.name = name
        self.ttl_s = ttl_s
        self.leases: Leases | None = None

    async def open(self) -> Replica:
        await self.journal.open()
        self.leases = Leases(self.journal.pool, self.name, self.ttl_s)
        self.leases.units = list(UNITS)
        self.journal.fence = self.leases
        return self

    @property
    def held(self) -> set[str]:
        assert self.leases is not None
        return set(self.leases.held)


@pytest.fixture
async def dsn(postgres: PostgresServer) -> AsyncIterator[str]:
    yield postgres.dsn(postgres.create_database())


async def settle(*replicas: Replica, rounds: int = 3) -> None:
    for _ in range(rounds):
        for replica in replicas:
            assert replica.leases is not None
            await replica.leases.tick()


async def test_units_are_shared_fairly_and_rebalance_when_a_replica_joins(dsn: str) -> None:
    a, b = await Replica(dsn, "a").open(), await Replica(dsn, "b").open()
    await settle(a, b)
    assert len(a.held) == len(b.held) == 2 and not a.held & b.held
    c = await Replica(dsn, "c").open()
    await settle(a, b, c)
    counts = sorted(len(r.held) for r in (a, b, c))
    assert counts == [1, 1, 2]  # ceil(4/3) = 2: nobody above its share, every unit held once
    assert a.held | b.held | c.held == set(UNITS) and len(a.held & b.held) == len(b.held & c.held) == 0
    for r in (a, b, c):
        await r.journal.close()


async def test_a_paused_replica_is_taken_over_and_its_late_write_is_fenced(dsn: str) -> None:
    a = await Replica(dsn, "a", ttl_s=1.0).open()
    await settle(a)
    assert a.held == set(UNITS)
    unit_org = "gh/org0"
    b = await Replica(dsn, "b", ttl_s=1.0).open()
    # a stops renewing (paused); b keeps ticking and takes every unit once a's leases expired
    deadline = time.monotonic() + 15
    while b.held != set(UNITS):
        assert time.monotonic() < deadline, "b never took the expired leases over"
        await settle(b, rounds=1)
        await asyncio.sleep(0.2)
    assert b.leases is not None and b.leases.counters.takeovers == 4
    # a wakes up believing it still holds the unit (as a SIGSTOPped process would, before its
    # next tick): its write is refused by the database, not by its own clock
    assert a.leases is not None
    a.leases.valid_until = time.monotonic() + 60
    entry = JournalEntry("id-1", "codacy", 1, b'{"id":"id-1"}')
    with pytest.raises(FencedError):
        await a.journal.append("codacy", unit_org, [entry], {"watermark_ms": 1})
    assert a.leases.counters.fenced == 1 and source_unit("codacy", unit_org) not in a.held
    assert await b.journal.get_cursor("codacy", unit_org) is None  # nothing of a's write landed
    async with b.journal.pool.connection() as conn:
        row = await (await conn.execute("SELECT value FROM af_counters WHERE name = 'fenced_writes'")).fetchone()
    assert row is not None and row[0] == 1
    await b.journal.append("codacy", unit_org, [entry], {"watermark_ms": 1})  # the holder writes
    assert await b.journal.get_cursor("codacy", unit_org) == {"watermark_ms": 1}
    for r in (a, b):
        await r.journal.close()


async def test_a_replica_that_cannot_renew_stops_before_its_leases_expire(dsn: str, postgres: PostgresServer) -> None:
    a = await Replica(dsn, "a", ttl_s=1.0).open()
    await settle(a)
    assert a.held == set(UNITS)
    assert a.leases is not None
    valid_until = a.leases.valid_until
    # The renewal fails (the pool cannot reach the database): a keeps nothing past valid_until.
    await a.journal.pool.close()
    await a.leases.tick()
    assert all(a.leases.holding(u) is not None for u in UNITS) == (time.monotonic() < valid_until)
    while time.monotonic() < valid_until:
        await asyncio.sleep(0.05)
    assert all(a.leases.holding(u) is None for u in UNITS)
    await a.leases.tick()
    assert a.held == set()


async def sinks_kept(replica: Replica) -> set[str]:
    async with replica.journal.pool.connection() as conn:
        rows = await (await conn.execute("SELECT sink FROM af_sink_offsets")).fetchall()
    return {str(r[0]) for r in rows}


async def test_a_sink_another_live_replica_configures_keeps_its_offset(dsn: str) -> None:
    """A rolling configuration change: ``a`` reloaded with a new sink ``x``, ``b`` (re)started on
    the old file. ``b`` dropped ``x``'s offset, so ``a``'s offset commits for it updated nothing
    and pruning ignored it: ``x`` lost what was pruned before it caught up. Only once no live
    replica configures a sink is its offset dropped."""
    a, b = await Replica(dsn, "a").open(), await Replica(dsn, "b").open()
    assert await a.journal.register_sinks(["out", "x"]) == []  # a starting, before its first renewal
    assert await b.journal.register_sinks(["out"]) == []
    assert await sinks_kept(a) == {"out", "x"}
    await settle(a, b)  # both alive
    assert await b.journal.register_sinks(["out"]) == []
    assert await sinks_kept(a) == {"out", "x"}
    assert await a.journal.register_sinks(["out"]) == ["x"]  # the last replica to configure it reloaded
    assert await sinks_kept(a) == {"out"}
    assert await a.journal.register_sinks(["out", "y"]) == []
    async with b.journal.pool.connection() as conn:  # a is gone: its row expired
        await conn.execute("UPDATE af_replicas SET expires_at = now() - interval '1 second' WHERE replica = 'a'")
    assert await b.journal.register_sinks(["out"]) == ["y"]  # no live replica configures y any more
    for r in (a, b):
        await r.journal.close()


def replicas_holding_two_sinks(dsn: str, handover_s: float = 300.0) -> Replicas:
    state = StateSettings(backend="postgresql", dsn=SecretStr(dsn), replica_id="a", sink_handover_s=handover_s)
    replicas = Replicas(state, PostgresJournal(dsn))
    replicas.leases.live = 2  # another replica could take them
    replicas.leases.held = {sink_unit("s"): 1, sink_unit("t"): 1}
    return replicas


async def test_a_reload_takes_back_handed_over_sinks_but_not_a_stopped_one(dsn: str) -> None:
    """A secret rotation reloads only what uses the secret: a sink stopped here is not started
    again, and taken back it would be delivered by nobody."""
    replicas = replicas_holding_two_sinks(dsn)
    replicas.hand_over(sink_unit("s"), None)  # stopped on this replica
    replicas.hand_over(sink_unit("t"), 400.0)  # failing here past sink_handover_s
    assert set(replicas.leases.benched) == {sink_unit("s"), sink_unit("t")}
    replicas.set_units([sink_unit("s"), sink_unit("t")], stopped=[sink_unit("s")])
    assert set(replicas.leases.benched) == {sink_unit("s")}


async def test_sink_handover_s_0_hands_nothing_over(dsn: str) -> None:
    replicas = replicas_holding_two_sinks(dsn, handover_s=0)
    replicas.hand_over(sink_unit("s"), None)
    replicas.hand_over(sink_unit("t"), 1e6)
    assert replicas.leases.benched == {}
