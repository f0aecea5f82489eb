"""A work unit nobody holds cannot go unnoticed, and the balance's movements can be followed in
one replica's log. Against a real PostgreSQL, with ``Leases`` ticked by hand (no daemon, no
timers): a unit free for longer than twice the TTL is shown by every replica (an error line when
it starts, one info line when it ends, ``/healthz``'s ``leases.unheld``,
``audit_forwarder_lease_units_unheld``), while ``/readyz`` stays ready; a free unit is taken
longest-free first, not alphabetically (the order that starved ConfigCat's unit,
``tests/ha/test_lease_rotation.py``).

"Free for long" is written into ``af_leases`` (``expires_at``, when the unit became free) rather
than waited for, and a ghost replica (alive in ``af_replicas``, taking nothing, as a replica
stuck below its share would) keeps a replica's share below the unit count."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from forwarder.health import HealthServer
from forwarder.journal.postgres.journal import PostgresJournal, source_unit
from forwarder.journal.postgres.leases import Leases
from forwarder.journal.settings import StateSettings
from forwarder.replicas import Replicas
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration

TTL_S = 2.0
UNITS = [source_unit("codacy", "gh/acme"), source_unit("configcat", "0a3c4b52")]


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.dsn(postgres.create_database())


@pytest.fixture
async def journal(dsn: str) -> AsyncIterator[PostgresJournal]:
    opened = PostgresJournal(dsn)
    await opened.open()
    yield opened
    await opened.close()


async def sql(journal: PostgresJournal, statement: str, *params: object) -> list[tuple[Any, ...]]:
    async with journal.pool.connection() as conn:
        cur = await conn.execute(statement, params)  # fixed statements of this test
        return await cur.fetchall() if cur.description else []


async def ghost(journal: PostgresJournal) -> None:
    """A live replica that takes nothing: the share of the others stays at half the units."""
    await sql(journal, "INSERT INTO af_replicas VALUES ('ghost', now() + interval '1 hour')")


def events(logs: list[dict[str, Any]], start: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"].startswith(start)]


@dataclass
class View:
    """The daemon as ``forwarder.health`` sees it (``StatusView``): no source, no sink, the real
    journal and the real ``Replicas``."""

    journal: PostgresJournal
    replicas: Replicas
    settings: Any = field(
        default_factory=lambda: SimpleNamespace(
            metrics=SimpleNamespace(
                host_port=("127.0.0.1", 0), source_failing_threshold_s=900.0, sink_failing_threshold_s=900.0
            )
        )
    )
    started: bool = True
    started_at: float = field(default_factory=time.time)
    config_path: Path | None = None
    pollers: dict[str, Any] = field(default_factory=dict)
    workers: dict[str, Any] = field(default_factory=dict)

    def wall_time(self, loop_time: float | None) -> float | None:
        return loop_time


def unheld_gauge(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith("audit_forwarder_lease_units_unheld ")]
    assert len(lines) == 1, metrics
    return float(lines[0].split()[1])


async def test_a_unit_nobody_holds_is_reported_once_and_the_report_clears_when_it_is_taken(
    journal: PostgresJournal, dsn: str
) -> None:
    state = StateSettings(backend="postgresql", dsn=SecretStr(dsn), replica_id="a", lease_ttl_s=TTL_S)
    replicas = Replicas(state, journal)
    await replicas.acquire_lock()
    replicas.leases.units = list(UNITS)
    await ghost(journal)
    # a may not take the other unit (handed over: its sink failing here), and the ghost takes nothing;
    # without that, a would take it beyond its share once free for a TTL (``Leases._adopt``)
    replicas.leases.benched[UNITS[1]] = float("inf")
    server = HealthServer(cast(Any, View(journal, replicas)))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{server.address}", timeout=10) as http:
            await replicas.leases.tick()
            assert set(replicas.leases.held) == {UNITS[0]}  # its share: 1 of 2
            assert replicas.leases.unheld == []  # configured just now: free, but not for long
            # the other unit has had no holder for a minute, while a and the ghost were alive
            await sql(journal, "UPDATE af_leases SET expires_at = now() - interval '1 minute' WHERE unit = %s",
                      UNITS[1])  # fmt: skip
            with capture_logs() as logs:
                await replicas.leases.tick()
                await replicas.leases.tick()  # still unheld: not logged again
            errors = events(logs, "work units have had no live holder")
            assert len(errors) == 1 and errors[0]["units"] == [UNITS[1]] and errors[0]["log_level"] == "error"
            assert errors[0]["seconds_unheld"] >= 60
            healthz = await http.get("/healthz")
            assert healthz.status_code == 200 and healthz.json()["leases"]["unheld"] == [UNITS[1]]
            readyz = await http.get("/readyz")  # this replica is fine: it stays ready (docs/high-availability.md)
            assert readyz.status_code == 200, readyz.text
            assert unheld_gauge((await http.get("/metrics")).text) == 1

            await sql(journal, "DELETE FROM af_replicas WHERE replica = 'ghost'")  # now a's share is both
            replicas.leases.benched.clear()  # and it may take it again
            with capture_logs() as logs:
                await replicas.leases.tick()
                await replicas.leases.tick()
            assert set(replicas.leases.held) == set(UNITS)
            assert [e["units"] for e in events(logs, "took free units")] == [[UNITS[1]]]
            ended = events(logs, "unheld work units have a live holder again")
            assert len(ended) == 1 and ended[0]["units"] == [UNITS[1]] and ended[0]["log_level"] == "info"
            assert events(logs, "work units have had no live holder") == []
            assert (await http.get("/healthz")).json()["leases"]["unheld"] == []
            assert unheld_gauge((await http.get("/metrics")).text) == 0
    finally:
        await server.stop()
        await replicas.stop()


async def test_the_balance_movements_are_logged_at_info(journal: PostgresJournal) -> None:
    units = [source_unit("codacy", f"gh/org{i}") for i in range(4)]
    a, b = (Leases(journal.pool, name, TTL_S, units=list(units)) for name in "ab")
    with capture_logs() as logs:
        await a.tick()  # alone: takes every unit
        await b.tick()  # joins: nothing free yet
        await a.tick()  # gives b its share
        await b.tick()  # takes it
    took = events(logs, "took free units")
    assert [(e["log_level"], e["units"], e["share"]) for e in took] == [
        ("info", units, 4),
        ("info", sorted(b.held), 2),
    ]
    released = events(logs, "released to balance the replicas")
    assert [(e["log_level"], e["units"], e["share"]) for e in released] == [("info", sorted(b.held), 2)]
    assert set(a.held).isdisjoint(b.held) and set(a.held) | set(b.held) == set(units)


async def test_the_unit_free_the_longest_is_taken_first(journal: PostgresJournal) -> None:
    """With ``ORDER BY unit`` the replica took the alphabetically first of two free units
    whatever their history, so the last one could be passed over at every renewal."""
    await sql(
        journal,
        "INSERT INTO af_leases (unit, expires_at) VALUES (%s, now() - interval '1 second'), "
        "(%s, now() - interval '1 hour')",
        *UNITS,
    )
    await ghost(journal)
    a = Leases(journal.pool, "a", TTL_S, units=list(UNITS))
    await a.tick()
    assert list(a.held) == [UNITS[1]]  # free for an hour, taken before the one free for a second
    assert a.unheld == []  # taken in the renewal that found it: nothing to report


async def test_a_row_an_earlier_release_freed_is_timed_from_the_first_renewal_that_sees_it(
    journal: PostgresJournal,
) -> None:
    """Releases before this rule left ``-infinity`` (no time) in a free unit's ``expires_at``:
    after an upgrade such a unit is not reported as unheld since the epoch, but stamped free
    from now, and reported only if it stays free for twice the TTL."""
    await sql(journal, "INSERT INTO af_leases (unit) SELECT unnest(%s::text[])", list(UNITS))  # -infinity
    await ghost(journal)
    a = Leases(journal.pool, "a", TTL_S, units=list(UNITS))
    a.benched[UNITS[1]] = float("inf")  # nobody takes it, as in the first test
    await a.tick()
    assert list(a.held) == [UNITS[0]] and a.unheld == []
    rows = await sql(journal, "SELECT holder, isfinite(expires_at), expires_at <= now() FROM af_leases "
                              "WHERE unit = %s", UNITS[1])  # fmt: skip
    assert rows == [(None, True, True)]
    await sql(journal, "UPDATE af_leases SET expires_at = expires_at - interval '1 minute' WHERE unit = %s", UNITS[1])
    await a.tick()
    assert a.unheld == [UNITS[1]]
