"""A unit must never stay unheld while every replica is alive (the chaos test's lost ConfigCat
entries): 9 units on 3 replicas, one replica killed and restarted (its leases expire, a fresh
``Leases`` with the same id), then renewals in a fixed round-robin order, as the replicas'
timers keep them. With ``share = ceiling - 1`` allowed down to below the floor (9 % 3 == 0),
each renewal moves the hole to the next replica and the alphabetically last unit, released
first and acquired last, is never held again: nobody polls it, and nothing is logged."""

from __future__ import annotations

import itertools

import pytest

from forwarder.journal.postgres.journal import PostgresJournal, source_unit
from forwarder.journal.postgres.leases import Leases
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration

UNITS = sorted(
    [f"sink/{s}" for s in ("file", "hec", "s3", "syslog")]
    + [
        source_unit("codacy", "gh/acme"),
        source_unit("codacy", "gl/globex"),
        source_unit("codescoring", "default"),
        source_unit("codestax", "default"),
        source_unit("configcat", "0a3c4b52-7f1e-4d2a-9b61-5c8e2f7d9a10"),
    ]
)


@pytest.mark.parametrize("victim", "abc")
@pytest.mark.parametrize("order", ["".join(p) for p in itertools.permutations("abc")])
async def test_a_restart_never_leaves_a_unit_unheld(postgres: PostgresServer, victim: str, order: str) -> None:
    journal = PostgresJournal(postgres.dsn(postgres.create_database()))
    await journal.open()
    try:
        leases = {r: Leases(journal.pool, r, 3.0, units=list(UNITS)) for r in "abc"}
        for _ in range(10):
            for r in "abc":
                await leases[r].tick()
        async with journal.pool.connection() as conn:  # SIGKILL: its leases run out
            await conn.execute(
                "UPDATE af_leases SET expires_at = now() - interval '1 second' WHERE holder = %s", (victim,)
            )
        leases[victim] = Leases(journal.pool, victim, 3.0, units=list(UNITS))  # restarted, same id
        for _ in range(20):
            for r in order:
                await leases[r].tick()
        held = [u for r in "abc" for u in leases[r].held]
        assert sorted(held) == UNITS, f"never held again: {sorted(set(UNITS) - set(held))}"
    finally:
        await journal.close()
