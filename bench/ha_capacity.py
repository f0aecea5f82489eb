"""One replica of a PostgreSQL state polling N organizations: its CPU per organization poll
and its RSS, for the capacity section of ``docs/high-availability.md``.

``python -m bench.ha_capacity 1000`` (from the repository, with the test extras and Debian's
postgresql installed): starts its own PostgreSQL and Codacy emulator, lets the replica do its
first collection, then measures 40 s of steady polling (interval 10 s). The CPU is the
forwarder's alone; the database server's and the emulator's are not counted.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

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


def measure(organizations: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="af-capacity-"))
    root.chmod(0o755)
    (root / "pg").mkdir()
    server = PostgresServer(root / "pg")
    server.init()
    server.start()
    orgs = [f"gh/o{i}" for i in range(organizations)]
    emulator = running("codacy", entries=5, options={"orgs": orgs, "span_s": 86400})
    try:
        dsn = server.dsn(server.create_database())
        source = codacy_source(emulator.url, organizations=orgs, interval_s=INTERVAL_S, jitter_s=0)
        config = write_config(root / "c.yaml", {
            "state_dir": str(root / "s"), "metrics": {"enabled": False}, "log": {"level": "warning"},
            "state": {"backend": "postgresql", "dsn": dsn, "lease_ttl_s": 30, "pool_size": 8},
            "sources": {"codacy": source}, "sinks": {"out": file_sink(root / "out")},
        })  # fmt: skip
        daemon = DaemonProcess(config, root / "daemon.log")
        time.sleep(15)  # the first collection
        cpu0, requests0 = cpu_s(daemon.pid), audit_requests(emulator)
        time.sleep(MEASURED_S)
        cpu1, requests1 = cpu_s(daemon.pid), audit_requests(emulator)
        polls = organizations * MEASURED_S / INTERVAL_S
        line = (
            f"organizations={organizations} interval_s={INTERVAL_S} org_polls={polls:.0f} "
            f"requests={requests1 - requests0} cpu_s={cpu1 - cpu0:.2f} "
            f"cpu_ms_per_org_poll={(cpu1 - cpu0) / polls * 1000:.2f} rss_mb={rss_mb(daemon.pid):.0f}"
        )
        daemon.stop()
        return line
    finally:
        emulator.stop()
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    print(measure(int(sys.argv[1]) if sys.argv[1:] else 200))
