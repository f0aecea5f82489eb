"""1,000 organizations (the Codacy emulator serving that many) on three replicas of one
PostgreSQL state: the units are spread within one of the fair share, and every organization
is polled at every interval (no gap between two polls of an organization reaches two
intervals: none was skipped). The figures behind the capacity section of
``docs/high-availability.md`` come from ``python -m bench.ha_capacity``; this test prints its
own (per-replica RSS and CPU per organization poll, database transactions per poll)."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.config import file_sink
from tests.support.daemon import DaemonProcess, read_ndjson, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.postgres import PostgresServer
from tests.support.replicas import state_config, stop_all
from tests.support.vendors import codacy_source, expected_ids
from tests.support.waiting import wait_until

ORGANIZATIONS = 1_000
INTERVAL_S = 10
INTERVALS = 4  # watched after the first collection
NAMES = ("a", "b", "c")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.dsn(postgres.create_database())


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    orgs = [f"gh/o{i}" for i in range(ORGANIZATIONS)]
    emulator = running("codacy", entries=1, options={"orgs": orgs, "span_s": 86400})
    emulator.control("POST", "config", {"requests_per_window": 10**9})  # Codacy's own limit is not under test
    yield emulator
    emulator.stop()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def transactions(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def held(dsn: str) -> Counter[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT holder FROM af_leases WHERE holder IS NOT NULL AND expires_at > now()").fetchall()
    return Counter(str(r[0]) for r in rows)


def test_a_thousand_organizations_on_three_replicas(tmp_path: Path, codacy: EmulatorProcess, dsn: str) -> None:
    orgs = [f"gh/o{i}" for i in range(ORGANIZATIONS)]
    source = codacy_source(codacy.url, organizations=orgs, interval_s=INTERVAL_S, jitter_s=0)
    replicas: list[DaemonProcess] = []
    for name in NAMES:
        config: dict[str, Any] = {
            "state_dir": str(tmp_path / f"state-{name}"), "log": {"level": "warning"},
            "state": {**state_config(dsn, name, 30), "pool_size": 8}, "metrics": {"enabled": False},
            "sources": {"codacy": source}, "sinks": {"out": file_sink(tmp_path / "out" / name)},
        }  # fmt: skip
        replicas.append(DaemonProcess(write_config(tmp_path / f"{name}.yaml", config), tmp_path / f"{name}.log"))
    units = ORGANIZATIONS + 1  # and the sink
    fair = units / len(NAMES)
    try:
        wanted = expected_ids(codacy)
        wait_until("the first collection delivered", lambda: wanted <= {e["id"] for e in read_ndjson(tmp_path / "out")},
                   timeout=240, every=1.0, detail=lambda: replicas[0].log()[-3000:])  # fmt: skip
        spread = wait_until("every unit held", lambda: (c := held(dsn)) and sum(c.values()) == units and c,
                            timeout=120, every=1.0)  # fmt: skip
        assert set(spread) == set(NAMES)
        assert all(abs(n - fair) <= 1 for n in spread.values()), (spread, fair)

        began = time.time()
        cpu0 = {d.pid: cpu_s(d.pid) for d in replicas}
        xacts0 = transactions(dsn)
        time.sleep(INTERVALS * INTERVAL_S)
        ended = time.time()
        cpu = {d.pid: cpu_s(d.pid) - cpu0[d.pid] for d in replicas}
        xacts = transactions(dsn) - xacts0
        rss = [rss_mb(d.pid) for d in replicas]
        assert held(dsn) == spread  # nothing moved while all were healthy
        assert stop_all(replicas) == [0, 0, 0]
    finally:
        for d in replicas:
            d.kill()

    polls: dict[str, list[float]] = defaultdict(list)
    for at, method, path, status in codacy.control("GET", "requests"):
        if method == "GET" and "/audit" in path and began - INTERVAL_S <= at <= ended:
            assert status == 200, (path, status)
            polls[path.split("/organizations/")[1].split("/audit")[0]].append(at)
    assert len(polls) == ORGANIZATIONS, f"{ORGANIZATIONS - len(polls)} organizations never polled"
    assert all(len(times) >= INTERVALS for times in polls.values())
    gaps = {org: max(b - a for a, b in pairwise(sorted(times))) for org, times in polls.items()}
    skipped = {org: round(gap, 1) for org, gap in gaps.items() if gap >= 2 * INTERVAL_S}
    assert skipped == {}, f"polls skipped an interval: {dict(list(skipped.items())[:5])}"
    org_polls = sum(1 for times in polls.values() for at in times if at >= began)
    print(
        f"\nha capacity: {ORGANIZATIONS} organizations on 3 replicas, units {dict(spread)}, interval {INTERVAL_S}s; "
        f"{org_polls} organization polls in {ended - began:.0f}s; per replica RSS {[round(r) for r in rss]} MB, "
        f"CPU {[round(c, 1) for c in cpu.values()]} s ({sum(cpu.values()) / org_polls * 1000:.1f} ms per poll); "
        f"{xacts / org_polls:.2f} database transactions per poll; longest gap {max(gaps.values()):.1f}s"
    )
