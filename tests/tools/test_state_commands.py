"""`state set-cursor` and `state reset` through the real CLI: refused under a running daemon,
effective (and confirmed) otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.support.config import codacy_files_config as make_config
from tests.support.config import json_of
from tests.support.daemon import cli, read_ndjson, start
from tests.support.emulators import EmulatorProcess


def cursors(cfg: Path) -> dict[tuple[str, str], str]:
    return {(c["source"], c["organization"]): c["watermark"] for c in json_of(cfg, "state", "show")["cursors"]}


def test_changes_are_refused_while_run_holds_the_lock(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url, source={"interval_s": 3600})  # one poll, then cursors stay put
    daemon = start(cfg, "run")
    try:
        deadline = time.time() + 20
        while time.time() < deadline and len(read_ndjson(tmp_path / "out")) < 40:
            time.sleep(0.1)
        before = cursors(cfg)  # inspection works while it runs
        assert len(before) == 2
        for args in (
            ("state", "set-cursor", "--source", "codacy", "--org", "gh/acme", "--to", "2024-01-01", "-y"),
            ("state", "reset", "-y"),
            ("dlq", "replay"),
        ):
            result = cli(cfg, *args)
            assert result.returncode == 1, args
            assert "is running" in result.stderr and "stop it first" in result.stderr
        assert cursors(cfg) == before
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


def test_set_cursor_and_reset_when_stopped(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    assert cli(cfg, "once").returncode == 0
    first = cursors(cfg)

    no = subprocess.run(
        [
            sys.executable,
            "-m",
            "forwarder",
            "-c",
            str(cfg),
            "state",
            "set-cursor",
            "--source",
            "codacy",
            "--org",
            "gh/acme",
            "--to",
            "2024-01-01",
        ],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert no.returncode == 1 and "move the cursor of codacy / gh/acme" in no.stdout

    # a mistyped year would skip everything until then, silently and for good
    future = cli(cfg, "state", "set-cursor", "--source", "codacy", "--org", "gh/acme", "--to", "2999-01-01", "--yes")
    assert future.returncode == 1 and "--to is later than now minus the source's lag_s" in future.stderr
    assert cursors(cfg) == first

    result = cli(cfg, "state", "set-cursor", "--source", "codacy", "--org", "gh/acme", "--to", "2024-01-01", "--yes")
    assert result.returncode == 0, result.stderr
    moved = cursors(cfg)
    assert moved == {**first, ("codacy", "gh/acme"): "2024-01-01T00:00:00.000Z"}

    result = cli(cfg, "state", "reset", "--source", "codacy", "--org", "gh/acme", "--yes")
    assert result.returncode == 0 and "1 cursor(s) reset" in result.stdout
    assert set(cursors(cfg)) == {("codacy", "gl/globex")}
    assert cli(cfg, "state", "reset", "--org", "gh/nope", "-y").returncode == 1

    assert cli(cfg, "once").returncode == 0  # gh/acme starts over from initial_lookback; globex does not
    per_org = Counter(e["organization"] for e in read_ndjson(tmp_path / "out"))
    assert per_org == {"gh/acme": 40, "gl/globex": 20}
