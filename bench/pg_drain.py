"""The drain phase on a PostgreSQL state beside the embedded SQLite one: the same backlog of
Codacy entries collected and delivered to a file sink by ``once``, once per backend.

``python -m bench.pg_drain --events 20000`` (from the repository, with the test extras and
Debian's postgresql installed) starts its own PostgreSQL (``fsync=on``, as in production) and
the benchmark's Codacy emulator. Reported apart, per 100,000 events:

- the forwarder's CPU: ``os.wait4`` on its own process (``bench.procs.run_measured``);
- the database server's CPU: the postmaster's own and its reaped children's CPU (the backends
  that served the run exit with their connections, and the kernel adds their time to the
  postmaster's ``cutime``/``cstime``) plus the live children's (checkpointer, WAL writer...),
  all read from ``/proc`` before and after the run.

The figures go to ``docs/performance.md`` ("PostgreSQL drain").
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.procs import run_measured, start_listening
from bench.run import ORG, SPAN_S, forwarder_config
from tests.support.postgres import PostgresServer

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def server_cpu_s(postmaster: int) -> float:
    """The server's CPU so far: the postmaster with its reaped children, and its live children."""
    fields = _stat(postmaster)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = _stat(int(entry.name))
        except OSError:  # exited meanwhile: its time is in the postmaster's cutime now
            continue
        if int(child[1]) == postmaster:  # ppid
            total += int(child[11]) + int(child[12])
    return total / TICK


def drain(work: Path, url: str, events: int, state: dict[str, Any] | None) -> dict[str, float]:
    work.mkdir()
    sink = {"type": "file", "path": str(work / "out" / "{organization}.ndjson")}
    config = forwarder_config(work, url, events, sink)
    if state is not None:
        data = yaml.safe_load(config.read_text())
        data["state"] = state
        config.write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "forwarder", "-c", str(config), "once", "--timeout", "3600"]
    measured = run_measured(cmd, log=work / "forwarder.log")
    delivered = sum(1 for path in (work / "out").rglob("*.ndjson") for _ in path.open("rb"))
    if measured.returncode != 0 or delivered < events:
        tail = (work / "forwarder.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"exit {measured.returncode}, {delivered}/{events} delivered\n{tail}")
    per = 100_000 / events
    return {"wall_s": measured.wall_s, "forwarder_cpu_s_per_100k": measured.cpu_s * per,
            "peak_rss_mb": measured.peak_rss_mb}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args(argv)
    events: int = args.events
    root = Path(tempfile.mkdtemp(prefix="af-pg-drain-"))
    root.chmod(0o755)  # the server may run as ``postgres``
    (root / "pg").mkdir()
    server = PostgresServer(root / "pg")
    server.init()
    server.start()
    emulator, url = start_listening(
        ["bench.emulators", "codacy", "--entries", str(events), "--span-s", str(SPAN_S), "--org", ORG],
        root / "codacy.log",
    )
    try:
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        sqlite = drain(root / "sqlite", url, events, None)
        dsn = server.dsn(server.create_database())
        before = server_cpu_s(postmaster)
        postgres = drain(root / "postgresql", url, events, {"backend": "postgresql", "dsn": dsn})
        postgres["server_cpu_s_per_100k"] = (server_cpu_s(postmaster) - before) * 100_000 / events
    finally:
        emulator.kill()
        emulator.wait(timeout=10)
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    print(f"drain of {events:,} Codacy entries into a file sink (once), per 100k events:")
    for name, row in (("sqlite", sqlite), ("postgresql", postgres)):
        server_part = f" server_cpu_s={row['server_cpu_s_per_100k']:.2f}" if "server_cpu_s_per_100k" in row else ""
        print(f"  {name:<10} wall_s={row['wall_s']:.1f} forwarder_cpu_s={row['forwarder_cpu_s_per_100k']:.2f}"
              f"{server_part} peak_rss_mb={row['peak_rss_mb']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
