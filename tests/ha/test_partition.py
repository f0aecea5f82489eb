"""A replica cut off from PostgreSQL while the others are not: it reaches the database through
a loopback TCP proxy the test controls (``tests/support/tcp_proxy.py``), which stops moving
bytes as a silent network partition does (queries hang, nothing is refused).

The cut-off replica must stop working on its units before their leases expire by the
database's clock; the others take its units over; when the partition heals, the writes it
sent meanwhile reach the database late and the fence refuses them (counted in
``af_counters``): nothing it did after its lease expired is committed, nothing is lost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.config import file_sink
from tests.support.daemon import DaemonProcess, read_ndjson, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.postgres import PASSWORD, PostgresServer
from tests.support.replicas import (
    assert_no_conflicting_duplicates,
    counter,
    holders,
    leases,
    metric,
    metrics_port,
    state_config,
    stop_all,
)
from tests.support.tcp_proxy import TcpProxy
from tests.support.vendors import codacy_source, expected_ids
from tests.support.waiting import wait_until

ORGS = [f"gh/org{i}" for i in range(6)]  # 6 organizations and a sink: 7 units, shares 3, 2, 2
TTL_S = 6  # the cut-off replica gives up 20% of it early: 1.2 s before the database's expiry
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=20, options={"orgs": ORGS, "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.dsn(postgres.create_database())


@pytest.fixture
def proxy(postgres: PostgresServer) -> Iterator[TcpProxy]:
    started = TcpProxy(postgres.port).start()
    yield started
    started.stop()


def replica(tmp_path: Path, name: str, url: str, dsn: str) -> DaemonProcess:
    config: dict[str, Any] = {
        "state_dir": str(tmp_path / f"state-{name}"),
        "state": state_config(dsn, name, TTL_S),
        "shutdown_timeout_s": 5,
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.5},
        "metrics": {"enabled": True, "listen": "127.0.0.1:0"},
        "sources": {"codacy": codacy_source(url, organizations=ORGS, timeout_s=60)},
        "sinks": {"out": file_sink(tmp_path / "out" / name)},
    }
    return DaemonProcess(write_config(tmp_path / f"{name}.yaml", config), tmp_path / f"{name}.log")


def readyz(daemon: DaemonProcess) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{metrics_port(daemon)}/readyz", timeout=5)


def test_a_replica_cut_off_from_postgresql_stops_before_its_leases_expire(
    tmp_path: Path, codacy: EmulatorProcess, dsn: str, proxy: TcpProxy
) -> None:
    behind_proxy = re.sub(r"\bport=\d+", f"port={proxy.port}", dsn)
    a, b, c = daemons = [
        replica(tmp_path, "a", codacy.url, dsn),
        replica(tmp_path, "b", codacy.url, dsn),
        replica(tmp_path, "c", codacy.url, behind_proxy),
    ]
    config = tmp_path / "a.yaml"
    wanted = expected_ids(codacy)
    logs = lambda: "\n".join(d.log()[-2500:] for d in daemons)  # noqa: E731
    try:
        wait_until("every entry delivered", lambda: wanted <= {e["id"] for e in read_ndjson(tmp_path / "out")},
                   timeout=120, detail=logs)  # fmt: skip
        wait_until("c holds a source unit", lambda: any(
            h == "c" and u.startswith("source/") for u, h in holders(config).items()
        ), timeout=60, detail=logs)  # fmt: skip
        org = next(u.split("/", 2)[2] for u, h in holders(config).items() if h == "c" and u.startswith("source/"))
        # c's next request for its organization is answered only after 3 s: c is mid-poll when cut
        # off, so it has a page to journal after its lease is gone
        codacy.control("POST", "faults", {"status": 0, "delay_s": 3, "count": 1, "path_contains": f"/{org}/audit"})
        time.sleep(1.5)
        proxy.partition()
        # the database's expiry of c's leases: c can renew nothing any more, so it is final
        held_by_c = {u: (token, left) for u, (h, token, left) in leases(dsn).items() if h == "c"}
        assert held_by_c, "c held nothing when it was cut off"
        expires = time.time() + min(left for _, left in held_by_c.values())

        stopped = wait_until("c stopped working on its units", lambda: (
            readyz(c).json()["leases"]["held"] == [] and time.time()
        ), timeout=4 * TTL_S, every=0.05, detail=c.log)  # fmt: skip
        assert stopped < expires, f"c still worked {stopped - expires:.2f}s after its leases expired"
        answer = readyz(c)
        assert answer.status_code == 503 and "cannot renew leases" in answer.text, answer.text
        assert "cannot renew leases" in c.log()

        wait_until("a and b took over c's units", lambda: (
            all(leases(dsn)[u][0] in ("a", "b") for u in held_by_c)
        ), timeout=4 * TTL_S, detail=logs)  # fmt: skip
        after = leases(dsn)
        assert all(after[u][1] > token for u, (token, _) in held_by_c.items())  # every one re-acquired: new token
        assert metric(a, "audit_forwarder_lease_takeovers_total") + metric(
            b, "audit_forwarder_lease_takeovers_total"
        ) >= len(held_by_c)
        codacy.control("POST", "entries", {"generate": 10, "orgs": ORGS, "span_s": 60})
        wanted = expected_ids(codacy)
        wait_until("a and b deliver the new entries",
                   lambda: wanted <= {e["id"] for e in read_ndjson(tmp_path / "out")},
                   timeout=120, detail=logs)  # fmt: skip
        assert c.alive()

        fenced_before = counter(dsn, "fenced_writes")
        proxy.heal()  # what c sent during the partition arrives now, after its leases expired
        wait_until("c's late write refused by the fence",
                   lambda: counter(dsn, "fenced_writes") > fenced_before, timeout=60, detail=c.log)  # fmt: skip
        assert metric(c, "audit_forwarder_fenced_writes_total") >= 1
        wait_until("c renews again", lambda: "leases renewed again" in c.log(), timeout=60, detail=c.log)
        assert stop_all(daemons) == [0, 0, 0]
    finally:
        proxy.heal()
        for d in daemons:
            d.kill()
    events = read_ndjson(tmp_path / "out")
    assert {e["id"] for e in events} == wanted
    assert_no_conflicting_duplicates(events)
    for d in daemons:
        assert PASSWORD not in d.log()
