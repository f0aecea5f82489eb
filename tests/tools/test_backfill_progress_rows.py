"""A backfill's progress rows in ``state show`` and ``state reset``, through the real CLI. They
showed a "lag" of now minus the window's end (days, for a window finished long ago), so an alert
on ``state show``'s ``lag_s`` fired for good after any backfill, and ``state reset`` said of them
that their next poll would start from ``initial_lookback_days`` (no one polls them)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.config import codacy_files_config as make_config
from tests.support.config import json_of
from tests.support.daemon import cli
from tests.support.emulators import EmulatorProcess


def test_a_finished_backfill_is_shown_complete_without_a_lag(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    assert cli(cfg, "once").returncode == 0
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since, until = (today - timedelta(days=2)).strftime("%Y-%m-%d"), (today - timedelta(days=1)).strftime("%Y-%m-%d")
    backfill = cli(cfg, "backfill", "--source", "codacy", "--since", since, "--until", until)
    assert backfill.returncode == 0, backfill.stderr

    cursors = json_of(cfg, "state", "show")["cursors"]
    live = [c for c in cursors if c["source"] == "codacy"]
    progress = [c for c in cursors if c["source"].startswith("codacy#backfill:")]
    assert len(live) == 2 and len(progress) == 2, cursors
    assert all(c["backfill"] is None and 0 <= c["lag_s"] < 86400 for c in live), live
    assert all(c["backfill"] == "complete" and c["lag_s"] is None for c in progress), progress

    table = cli(cfg, "state", "show").stdout
    rows = [line.split("\t") for line in table.splitlines() if line.startswith("codacy#backfill:")]
    assert len(rows) == 2 and all(row[3] == "backfill complete" for row in rows), table

    question = subprocess.run(
        [sys.executable, "-m", "forwarder", "-c", str(cfg), "state", "reset"],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert question.returncode == 1, question.stderr
    marked = [line for line in question.stdout.splitlines() if "a backfill's progress" in line]
    assert len(marked) == 2 and all(line.lstrip().startswith("codacy#backfill:") for line in marked), question.stdout
    assert len(json_of(cfg, "state", "show")["cursors"]) == 4  # "no" forgot nothing
