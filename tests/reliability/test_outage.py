"""Outage and backpressure: a receiver down for a long stretch, and a journal at its cap.

A dead receiver only grows its own sink's lag (``state show`` → ``lag_events``) while the
other sinks stay current; when it comes back everything it missed arrives. A journal at
``journal.max_events`` pauses polling (logged, nothing dropped) until the sinks drain it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.config import file_sink, make_config, sink_lag, state
from tests.support.daemon import DaemonProcess, read_ndjson
from tests.support.emulators import EmulatorProcess
from tests.support.figures import Figures, vm_hwm_kb
from tests.support.ports import free_port
from tests.support.receivers import events_in_hec, hec_on_port, hec_sink
from tests.support.vendors import ORGS, codacy_source, expected_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def cleanup() -> Iterator[list[EmulatorProcess | DaemonProcess]]:
    started: list[EmulatorProcess | DaemonProcess] = []
    yield started
    for item in reversed(started):
        if isinstance(item, DaemonProcess):
            item.kill()
        else:
            item.stop()


def file_ids(directory: Path) -> set[str]:
    return {e["id"] for e in read_ndjson(directory)}


def test_receiver_outage_grows_only_its_lag_and_recovers_everything(
    tmp_path: Path, codacy: EmulatorProcess, cleanup: list[EmulatorProcess | DaemonProcess], figures: Figures
) -> None:
    port = free_port()
    out = tmp_path / "out"
    cfg = make_config(
        tmp_path,
        codacy_source(codacy.url),
        {"file": file_sink(out), "hec": hec_sink(f"http://127.0.0.1:{port}", timeout_s=2)},
    )
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    cleanup.append(daemon)
    want = expected_ids(codacy)
    wait_until("the file sink to get the backlog", lambda: file_ids(out) == want, detail=daemon.log)
    first_lag = sink_lag(cfg, "hec")
    assert first_lag >= len(want), "the dead receiver's events stay journaled"
    assert sink_lag(cfg, "file") == 0

    codacy.control("POST", "entries", {"generate": 15, "orgs": ORGS, "span_s": 5})
    want = expected_ids(codacy)
    wait_until("the file sink to stay current", lambda: file_ids(out) == want, detail=daemon.log)
    wait_until("the lag to grow", lambda: sink_lag(cfg, "hec") >= len(want), detail=daemon.log)
    assert sink_lag(cfg, "file") == 0
    assert "sink delivery failed, retrying" in daemon.log()
    assert daemon.alive()

    receiver = hec_on_port(port)
    cleanup.append(receiver)
    wait_until(
        "the returned receiver to get everything",
        lambda: {e["id"] for e in events_in_hec(receiver)} >= want,
        detail=daemon.log,
    )
    wait_until("the lag to drain", lambda: sink_lag(cfg, "hec") == 0, detail=daemon.log)
    rss = vm_hwm_kb(daemon.pid)
    crashed = daemon.crashed()
    assert daemon.stop() == 0
    assert not crashed, daemon.log()[-3000:]
    delivered = events_in_hec(receiver)
    got = [e["id"] for e in delivered]
    journal_order = [e["id"] for e in read_ndjson(out)]  # the file sink never stopped: journal order
    for org in ORGS:  # the returned receiver got every organization's events in that same order
        in_org = {e["id"] for e in delivered if e["organization"] == org}
        assert [i for i in got if i in in_org] == [i for i in journal_order if i in in_org], f"{org}: out of order"
    figures.record(lost=len(want - set(got)), duplicated=len(got) - len(set(got)), rss_kb=rss)
    print(f"\noutage: lag reached {len(want)} events while the file sink stayed current; all arrived")


def test_journal_cap_pauses_polling_and_drops_nothing(
    tmp_path: Path, cleanup: list[EmulatorProcess | DaemonProcess], figures: Figures
) -> None:
    from tests.support.emulators import running

    codacy = running("codacy", entries=150, options={"orgs": ORGS, "span_s": 2 * 86400})
    cleanup.append(codacy)
    out = tmp_path / "out"
    cap = 20
    cfg = make_config(
        tmp_path,
        codacy_source(codacy.url, slice_hours=4),
        {"file": file_sink(out)},
        journal={"max_events": cap},
    )
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    cleanup.append(daemon)
    want = expected_ids(codacy)
    wait_until("every entry despite the cap", lambda: file_ids(out) == want, timeout=90, detail=daemon.log)
    logs = daemon.log()
    assert "journal is full" in logs and "nothing is dropped" in logs
    snapshot = state(cfg)
    assert all(c["quarantined"] == 0 for c in snapshot["cursors"])
    assert all(s["dead_letters"] == 0 for s in snapshot["sinks"])
    rss = vm_hwm_kb(daemon.pid)
    crashed = daemon.crashed()
    assert daemon.stop() == 0
    assert not crashed, logs[-3000:]
    got = [e["id"] for e in read_ndjson(out)]
    figures.record(lost=len(want - set(got)), duplicated=len(got) - len(set(got)), rss_kb=rss)
    print(f"\njournal cap {cap}: polling paused {logs.count('journal is full')} times, {len(want)} entries arrived")
