"""``verify --record`` (and ``reconcile``, which records the same way) against a state another
writer holds, through the real CLI: the note said "start the daemon of this release once",
which fixes nothing; it says the state was held and to run the command again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from tests.support.config import codacy_files_config as make_config
from tests.support.daemon import cli
from tests.support.emulators import EmulatorProcess


def recorded_verifies(cfg: Path) -> list[str]:
    result = cli(cfg, "report", "--from", "2000-01-01", "--to", "2100-01-01", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [run["scope"] for run in orjson.loads(result.stdout)["runs"] if run["kind"] == "verify"]


def test_a_result_not_recorded_because_the_state_was_held_says_so(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    assert cli(cfg, "once").returncode == 0
    exported = sorted(str(p) for p in (tmp_path / "out").glob("*.ndjson"))
    writer = sqlite3.connect(tmp_path / "state" / "journal.sqlite3", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # as the daemon's write transaction holds it
        held = cli(cfg, "verify", "--record", "events", *exported)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert held.returncode == 0 and "OK: every chain checks" in held.stdout, held.stdout + held.stderr
    assert "the result is not recorded" in held.stderr and "run this command again" in held.stderr, held.stderr
    assert "start the daemon of this release" not in held.stderr, held.stderr
    assert recorded_verifies(cfg) == []

    again = cli(cfg, "verify", "--record", "events", *exported)
    assert again.returncode == 0 and "not recorded" not in again.stderr, again.stderr
    assert len(recorded_verifies(cfg)) == 1
