"""Three replicas on one PostgreSQL state, all four vendors, all four classic sinks, and 30
SIGKILLs of random replicas at random moments (each killed one restarted at once, as systemd
would): every entry of every vendor arrives in every sink, nothing is lost, and a duplicate is
only ever the very same event under the same id (a batch sent but not recorded by the killed
holder, sent again by the next one).

A kill can land anywhere: mid-poll, mid-transaction, mid-batch, between a receiver's
confirmation and the offset's commit, during a lease renewal or a takeover. The figures are
recorded in ``tests/support/figures.py``'s ``FIGURES`` like the reliability suite's.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forwarder.journal.types import sink_unit
from tests.support.daemon import DaemonProcess, write_config
from tests.support.emulators import EmulatorProcess, running_all
from tests.support.figures import Figures
from tests.support.postgres import PostgresServer
from tests.support.receivers import AWS_ENV, Receivers
from tests.support.replicas import TTL_S, assert_no_conflicting_duplicates, leases, state_config, stop_all
from tests.support.vendors import VENDORS, expected_ids
from tests.support.waiting import wait_until

KILLS = 30
SEED = 20261206
NAMES = ("a", "b", "c")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.dsn(postgres.create_database())


@pytest.fixture
def vendor_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    with running_all(20, {name: vendor.options for name, vendor in VENDORS.items()}) as started:
        yield started


def replica_config(tmp_path: Path, name: str, dsn: str, sources: dict[str, Any], sinks: dict[str, Any]) -> Path:
    """The same sources, sinks and state for every replica; only its id, its state_dir and the
    directory its file sink writes differ (a file is a file on one host)."""
    config = {
        "state_dir": str(tmp_path / f"state-{name}"),
        "state": state_config(dsn, name),
        "shutdown_timeout_s": 5,
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.5},
        "metrics": {"enabled": False},
        "sources": sources,
        "sinks": {
            **sinks,
            "file": {**sinks["file"], "path": sinks["file"]["path"].replace("/file/", f"/file/{name}/")},
        },
    }
    return write_config(tmp_path / f"{name}.yaml", config)


def test_thirty_sigkills_of_random_replicas_lose_nothing_in_any_sink(
    tmp_path: Path, vendor_emulators: dict[str, EmulatorProcess], receivers: Receivers, dsn: str, figures: Figures
) -> None:
    sources = {name: VENDORS[name].source(emulator.url) for name, emulator in vendor_emulators.items()}
    configs = {name: replica_config(tmp_path, name, dsn, sources, receivers.sinks()) for name in NAMES}
    rng = random.Random(SEED)

    def start(name: str) -> DaemonProcess:
        return DaemonProcess(configs[name], tmp_path / f"{name}.log", env=AWS_ENV)

    replicas = {name: start(name) for name in NAMES}
    logs = lambda: "\n".join(d.log()[-2000:] for d in replicas.values())  # noqa: E731
    kills: Counter[str] = Counter()
    began = time.monotonic()
    try:
        for _ in range(KILLS):
            for name, emulator in vendor_emulators.items():
                emulator.control(
                    "POST", "entries", {"generate": rng.randint(1, 6), "span_s": 5, **VENDORS[name].generate}
                )
            time.sleep(rng.uniform(0.3, 2.0))
            victim = rng.choice(NAMES)
            assert replicas[victim].alive(), f"replica {victim} died on its own:\n{replicas[victim].log()[-3000:]}"
            replicas[victim].signal(signal.SIGKILL)
            replicas[victim].process.wait(timeout=30)
            kills[victim] += 1
            replicas[victim] = start(victim)
        killed_in = time.monotonic() - began

        want_by_vendor = {name: expected_ids(emulator, name) for name, emulator in vendor_emulators.items()}
        want = set().union(*want_by_vendor.values())
        assert len(want) == sum(len(ids) for ids in want_by_vendor.values()), "two vendors' ids collide"

        def everywhere() -> bool:
            return all(want <= {e["id"] for e in events} for events in receivers.events().values())

        wait_until("every entry in every sink", everywhere, timeout=180, every=1.0, detail=logs)
        drained_in = time.monotonic() - began - killed_in
        # every unit held by a live replica at the end (a killed holder's leases expire within the TTL)
        assert all(replica.alive() for replica in replicas.values())
        units = leases(dsn)
        assert {sink_unit(s) for s in receivers.sinks()} < set(units), units  # the sinks and the sources' units
        held = lambda: all(h in NAMES and left > 0 for h, _, left in leases(dsn).values())  # noqa: E731
        wait_until("every unit held by a live replica", held, timeout=4 * TTL_S, every=0.25,
                   detail=lambda: str(leases(dsn)))  # fmt: skip
        assert stop_all(list(replicas.values())) == [0, 0, 0]
    finally:
        for replica in replicas.values():
            replica.kill()

    lost = 0
    duplicated = 0
    for sink, events in receivers.events().items():
        ids = {e["id"] for e in events}
        for vendor, vendor_ids in want_by_vendor.items():
            missing = vendor_ids - ids
            lost += len(missing)
            assert not missing, f"{sink} lost {len(missing)} of {len(vendor_ids)} {vendor} events"
        assert ids <= want | {e["id"] for e in events if e.get("vendor") == "forwarder"}
        duplicated += assert_no_conflicting_duplicates(events, volatile=("observed_time",))
    figures.record(lost=lost, duplicated=duplicated)
    print(
        f"\nha chaos: {KILLS} SIGKILLs of 3 replicas ({dict(kills)}) in {killed_in:.0f}s, drained in "
        f"{drained_in:.0f}s; {len(want)} entries x 4 sinks, lost={lost}, duplicated={duplicated}, "
        f"torn syslog fragments={receivers.torn}"
    )
