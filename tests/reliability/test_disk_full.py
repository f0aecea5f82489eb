"""Disk full: the state directory on a 2 MB tmpfs that a backlog cannot fit in.

The daemon must say so clearly, keep every cursor where the journal's content is, survive,
and, once space is freed (the tmpfs remounted bigger), carry on with no corruption and no
loss: the journal's transaction either commits a page with its cursor or neither.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from forwarder.emulators.codacy import parse_timestamp
from tests.support.config import file_sink, make_config
from tests.support.daemon import DaemonProcess, read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.figures import Figures, vm_hwm_kb
from tests.support.vendors import ORGS, codacy_source, expected_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DISK_FULL_LOG = "cannot write the journal"


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"mount {' '.join(args)} failed: {result.stderr}"


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "state"
    directory.mkdir()
    mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory))
    yield directory
    subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=30)


@pytest.fixture
def big_backlog() -> Iterator[EmulatorProcess]:
    # about 2.5 MB of normalized events per organization, in one window: cannot fit in 2 MB
    emulator = running("codacy", entries=2500, options={"orgs": ORGS, "span_s": 3600})
    yield emulator
    emulator.stop()


def cursors(journal: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute("SELECT organization, state FROM cursors").fetchall()
    return {org: int(orjson.loads(state)["watermark_ms"]) for org, state in rows}


def oldest_entry_ms(emulator: EmulatorProcess) -> dict[str, int]:
    oldest: dict[str, int] = {}
    for entry in emulator.entries():
        ms = parse_timestamp(entry["timestamp"])
        oldest[entry["_org"]] = min(ms, oldest.get(entry["_org"], ms))
    return oldest


def test_full_disk_is_reported_keeps_cursors_and_recovers_without_loss(
    tmp_path: Path, small_state_dir: Path, big_backlog: EmulatorProcess, figures: Figures
) -> None:
    out = tmp_path / "out"
    cfg = make_config(tmp_path, codacy_source(big_backlog.url, slice_hours=48), {"file": file_sink(out)})
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        wait_until("the disk-full error", lambda: DISK_FULL_LOG in daemon.log(), detail=daemon.log)
        wait_until("a second failed attempt", lambda: daemon.log().count(DISK_FULL_LOG) >= 2, detail=daemon.log)
        assert daemon.alive(), daemon.log()[-3000:]
        journal = small_state_dir / "journal.sqlite3"
        oldest = oldest_entry_ms(big_backlog)
        for org, watermark in cursors(journal).items():  # empty windows before the backlog may pass
            assert watermark < oldest[org], f"{org}: cursor moved past entries that were never journaled"
        assert read_ndjson(out) == []

        mount("-o", "remount,size=64m", str(small_state_dir))
        want = expected_ids(big_backlog)
        wait_until(
            "every entry after space was freed",
            lambda: {e["id"] for e in read_ndjson(out)} == want,
            timeout=120,
            detail=daemon.log,
        )
        rss = vm_hwm_kb(daemon.pid)
        crashed = daemon.crashed()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert not crashed, daemon.log()[-3000:]
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert set(cursors(journal)) == set(ORGS)
    got = [e["id"] for e in read_ndjson(out)]
    figures.record(lost=len(want - set(got)), duplicated=len(got) - len(set(got)), rss_kb=rss)
    line = next(x for x in daemon.log().splitlines() if DISK_FULL_LOG in x)
    print(f"\ndisk full: {len(want)} entries recovered after: {line[:200]}")
