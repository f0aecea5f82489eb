"""`backfill` through the real CLI against the Codacy emulator: a window, killed mid-run, resumed."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from forwarder.emulators.codacy import parse_timestamp
from forwarder.event import content_id, format_ms
from tests.support.config import codacy_files_config as make_config
from tests.support.config import json_of
from tests.support.daemon import cli, read_ndjson, start
from tests.support.emulators import EmulatorProcess, running
from tests.support.vendors import ORGS

DAY_MS = 86_400_000


@pytest.fixture
def history() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=60, options={"orgs": ORGS, "span_s": 12 * 86400})
    # every audit request takes a little while, so the kill lands mid-window
    emulator.control("POST", "faults", {"status": 0, "count": 100_000, "delay_s": 0.02, "path_contains": "/audit"})
    yield emulator
    emulator.stop()


def in_window(emulator: EmulatorProcess, since_ms: int, until_ms: int) -> set[str]:
    ids = set()
    for entry in emulator.entries():
        org = entry.pop("_org")
        if since_ms <= parse_timestamp(entry["timestamp"]) < until_ms:
            ids.add(content_id("codacy", org, entry))
    return ids


def backfill_cursors(state_db: Path) -> list[tuple[str, str]]:
    """Read straight from the file while the backfill writes it; a schema not created yet reads as empty."""
    with closing(sqlite3.connect(state_db, timeout=5)) as db:
        try:
            return db.execute("SELECT source, organization FROM cursors WHERE source LIKE '%#backfill:%'").fetchall()
        except sqlite3.OperationalError:
            return []


def test_backfill_collects_the_window_and_resumes_after_sigkill(tmp_path: Path, history: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, history.url, source={"slice_hours": 4})
    now = int(time.time()) * 1000
    since, until = now - 10 * DAY_MS, now - 1 * DAY_MS
    args = ("backfill", "--source", "codacy", "--since", format_ms(since), "--until", format_ms(until))

    process = start(cfg, *args)
    state_db = tmp_path / "state" / "journal.sqlite3"
    deadline = time.time() + 20
    while time.time() < deadline and not (state_db.exists() and backfill_cursors(state_db)):
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)

    cursors = json_of(cfg, "state", "show")["cursors"]
    assert cursors, "the backfill journaled nothing before the kill"
    assert all(c["source"].startswith("codacy#backfill:") for c in cursors), "the live cursor must stay untouched"
    assert min(c["watermark"] for c in cursors) < format_ms(until), "the kill came after the backfill finished"

    result = cli(cfg, *args)
    assert result.returncode == 0, result.stderr
    assert "organization(s) complete" in result.stderr and "2/2" in result.stderr
    assert "━" not in result.stderr  # no live progress bar without a terminal

    delivered = read_ndjson(tmp_path / "out")
    want = in_window(history, since, until)
    assert len(want) > 20
    assert {e["id"] for e in delivered} == want  # nothing lost, nothing from outside the window
    state = json_of(cfg, "state", "show")
    assert {c["source"] for c in state["cursors"]} == {f"codacy#backfill:{stamp(since)}:{stamp(until)}"}
    assert all(c["watermark"] >= format_ms(until) for c in state["cursors"])

    again = cli(cfg, *args)  # a finished window is not collected twice
    assert again.returncode == 0, again.stderr
    assert len(read_ndjson(tmp_path / "out")) == len(delivered)


def stamp(ms: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ms / 1000))


def test_backfill_is_refused_while_the_daemon_runs_and_checks_its_input(
    tmp_path: Path, history: EmulatorProcess
) -> None:
    cfg = make_config(tmp_path, history.url)
    bad = cli(cfg, "backfill", "--source", "nope", "--since", "2024-01-01")
    assert bad.returncode == 1 and "no source named 'nope'" in bad.stderr
    bad = cli(cfg, "backfill", "--source", "codacy", "--since", "yesterday")
    assert bad.returncode == 2 and "is not a date" in bad.stderr
    # a window that is none is refused as a usage error, naming the option, before the state is opened
    bad = cli(cfg, "backfill", "--source", "codacy", "--since", "2024-02-01", "--until", "2024-01-01")
    assert bad.returncode == 2 and "--until must be after --since" in bad.stderr and "started" not in bad.stderr
    future = format_ms(int(time.time() * 1000) + DAY_MS)
    bad = cli(cfg, "backfill", "--source", "codacy", "--since", future)
    assert bad.returncode == 2 and "is in the future" in bad.stderr and "--until" not in bad.stderr
    assert not (tmp_path / "state").exists()
    daemon = start(cfg, "run")
    try:
        lock = tmp_path / "state" / "audit-forwarder.lock"
        deadline = time.time() + 15
        while time.time() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.05)
        refused = cli(cfg, "backfill", "--source", "codacy", "--since", format_ms(int(time.time() * 1000) - DAY_MS))
        assert refused.returncode == 1
        assert "stop it first" in refused.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
