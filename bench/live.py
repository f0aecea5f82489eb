"""The live-feed phase: steady-state delivery latency of the running daemon.

The drain phase serves a backlog that exists before the forwarder starts, so it measures how
long a backlog takes to drain, not how late a new entry arrives. Here ``audit-forwarder run``
(its own process) polls an emulator that starts empty while the benchmark adds entries at a
steady rate; the latency of an entry is the wall time at which the receiver had it minus the
wall time at which the emulator started serving it. Feeding starts only after the daemon's
first poll, so start-up (imports, first connection) is not counted as latency.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.procs import REPO_ROOT, stop
from bench.sinks import Target
from sinks.registry import SINKS

OBSERVE_EVERY_S = 0.05  # how often the receiver is read: the resolution of file, syslog and S3 arrivals


@dataclass(frozen=True)
class Feed:
    seconds: float
    rate_per_s: float
    interval_s: float

    @property
    def entries(self) -> int:
        return max(1, round(self.seconds * self.rate_per_s))


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Observer(threading.Thread):
    """Asks the receiver what arrived every ``OBSERVE_EVERY_S`` and keeps each entry's first arrival."""

    def __init__(self, target: Target) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.arrived: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(OBSERVE_EVERY_S):
            self.collect()
        self.collect()

    def collect(self) -> None:
        for key, at in self.target.arrivals().items():
            self.arrived.setdefault(key, at)


def run_live(target: Target, config: Path, url: str, feed: Feed, org: str, log: Path) -> dict[str, Any]:
    """Feed ``feed.entries`` entries to the emulator at ``url`` while the daemon forwards them."""
    control = httpx.Client(base_url=url, timeout=10)
    observer = Observer(target)
    available: dict[str, float] = {}
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "forwarder", "-c", str(config), "run"],
            cwd=REPO_ROOT,
            env={**os.environ, **target.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_first_poll(control, daemon)
        observer.start()
        started = time.monotonic()
        for i in range(feed.entries):
            time.sleep(max(0.0, started + i / feed.rate_per_s - time.monotonic()))
            added = control.post("/_control/entries", json={"generate": 1, "span_s": 0, "orgs": [org]}).json()
            available.update(dict.fromkeys(added["ids"], float(added["available_at"])))
        # every entry is due within one poll interval plus the batch age; allow generously more
        deadline = time.monotonic() + feed.interval_s + 30
        while time.monotonic() < deadline and not set(available) <= set(observer.arrived):
            time.sleep(0.1)
    finally:
        observer.done.set()
        if observer.is_alive():
            observer.join(timeout=30)
        stop(daemon, 30)
        control.close()
    latencies = [observer.arrived[k] - t for k, t in available.items() if k in observer.arrived]
    if len(latencies) < len(available):
        tail = log.read_text(errors="replace")[-3000:]
        print(f"!! {target.name} live: {len(latencies)}/{len(available)} delivered\n{tail}", file=sys.stderr)
    p50 = round(nearest_rank(latencies, 0.50), 3) if latencies else None
    p99 = round(nearest_rank(latencies, 0.99), 3) if latencies else None
    return {
        "latency_p50_s": p50,
        "latency_p99_s": p99,
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "entries": len(available),
        "delivered": len(latencies),
        "rate_per_s": feed.rate_per_s,
        "feed_s": feed.seconds,
        "interval_s": feed.interval_s,
        "lag_s": 0.0,
        "batch_max_age_s": batch_max_age_s(target.config),
        "target_p99_s": feed.interval_s + 1.0,
        "meets_target": p99 is not None and len(latencies) == len(available) and p99 <= feed.interval_s + 1.0,
        "observe_every_s": OBSERVE_EVERY_S,
    }


def batch_max_age_s(sink: dict[str, Any]) -> float:
    """The setting in effect (given or the sink type's default): it adds to the latency by design."""
    config_type, _ = SINKS[sink["type"]]
    return float(config_type.model_validate(sink).batch_max_age_s)


def _wait_first_poll(control: httpx.Client, daemon: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"audit-forwarder run exited with {daemon.returncode} before its first poll")
        if any("/audit" in str(row[2]) for row in control.get("/_control/requests").json()):
            return
        time.sleep(0.05)
    raise RuntimeError("audit-forwarder run did not poll within a minute")
