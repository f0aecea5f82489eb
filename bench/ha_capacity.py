"""Replicas of a PostgreSQL state polling N organizations: per replica its RSS and CPU per
organization poll, and per poll the database's transactions and the database server's CPU,
for the capacity section of ``docs/high-availability.md``.

``python -m bench.ha_capacity 1000 --replicas 3`` (from the repository, with the test extras
and Debian's postgresql installed): starts its own PostgreSQL and Codacy emulator (its rate
limit lifted: Codacy's limit is not what is measured), lets the replicas do their first
collection, then measures 40 s of steady polling (interval 10 s). A replica's CPU is its
process's own; the server's is read from ``/proc`` as ``bench.pg_drain`` does (the postmaster
with its reaped and live children); the emulator's is not counted. Transactions are
``pg_stat_database``'s commits and rollbacks of the state's database: each is at least one
round trip (a page's append is one transaction of a few statements).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg

from bench.pg_drain import server_cpu_s
from tests.support.config import file_sink
from tests.support.daemon import DaemonProcess, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.postgres import PostgresServer
from tests.support.vendors import codacy_source

INTERVAL_S = 10
MEASURED_S = 40


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def audit_requests(emulator: EmulatorProcess) -> int:
    return sum(1 for entry in emulator.control("GET", "requests") if "/audit" in entry[2])


def database(dsn: str) -> tuple[int, Counter[str]]:
    """Transactions so far, and the units each replica holds."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        holders = conn.execute("SELECT holder FROM af_leases WHERE holder IS NOT NULL AND expires_at > now()")
        held = Counter(str(r[0]) for r in holders.fetchall())
    return (int(row[0]) if row else 0), held


def measure(organizations: int, replicas: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="af-capacity-"))
    root.chmod(0o755)
    (root / "pg").mkdir()
    server = PostgresServer(root / "pg")
    server.init()
    server.start()
    orgs = [f"gh/o{i}" for i in range(organizations)]
    emulator = running("codacy", entries=5, options={"orgs": orgs, "span_s": 86400})
    emulator.control("POST", "config", {"requests_per_window": 10**9})
    daemons: list[DaemonProcess] = []
    try:
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        dsn = server.dsn(server.create_database())
        source = codacy_source(emulator.url, organizations=orgs, interval_s=INTERVAL_S, jitter_s=0)
        for n in range(replicas):
            config = write_config(root / f"c{n}.yaml", {
                "state_dir": str(root / f"s{n}"), "metrics": {"enabled": False}, "log": {"level": "warning"},
                "state": {"backend": "postgresql", "dsn": dsn, "lease_ttl_s": 30, "pool_size": 8,
                          "replica_id": f"r{n}"},
                "sources": {"codacy": source}, "sinks": {"out": file_sink(root / "out" / str(n))},
            })  # fmt: skip
            daemons.append(DaemonProcess(config, root / f"daemon{n}.log"))
        time.sleep(15 + 5 * replicas)  # the first collection, and the units spread
        cpu0 = [cpu_s(d.pid) for d in daemons]
        requests0, (xacts0, held), server0 = audit_requests(emulator), database(dsn), server_cpu_s(postmaster)
        time.sleep(MEASURED_S)
        cpu = [cpu_s(d.pid) - c for d, c in zip(daemons, cpu0, strict=True)]
        requests, (xacts, _), server_cpu = (
            audit_requests(emulator) - requests0, database(dsn), server_cpu_s(postmaster) - server0
        )  # fmt: skip
        polls = organizations * MEASURED_S / INTERVAL_S
        return (
            f"organizations={organizations} replicas={replicas} interval_s={INTERVAL_S} org_polls={polls:.0f} "
            f"requests={requests} units_held={sorted(held.values())} "
            f"rss_mb={[round(rss_mb(d.pid)) for d in daemons]} cpu_s={[round(c, 2) for c in cpu]} "
            f"cpu_ms_per_org_poll={sum(cpu) / polls * 1000:.2f} "
            f"db_transactions_per_org_poll={(xacts - xacts0) / polls:.2f} "
            f"db_server_cpu_ms_per_org_poll={server_cpu / polls * 1000:.2f}"
        )
    finally:
        for d in daemons:
            d.stop()
        emulator.stop()
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("organizations", type=int, nargs="?", default=200)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    print(measure(args.organizations, args.replicas))


if __name__ == "__main__":
    main()
