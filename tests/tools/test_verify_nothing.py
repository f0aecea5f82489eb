"""``verify events`` of an export that holds no event, through the real CLI: it said "OK: every
chain checks" and exited 0, so an export of the wrong period or index passed an audit."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson

from tests.support.config import codacy_files_config as make_config
from tests.support.daemon import cli
from tests.support.emulators import EmulatorProcess


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "verify", "events", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_export_without_events_fails_and_says_nothing_was_checked(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    blank = tmp_path / "blank.ndjson.gz"
    blank.write_bytes(gzip.compress(b"\n\n"))
    for path in (empty, blank):
        result = verify(str(path), "--from-seq", "1")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "OK" not in result.stdout and f"no event in {path}: nothing was checked" in result.stdout
        report = orjson.loads(verify(str(path), "--output", "json").stdout)
        assert report["ok"] is False and [f["kind"] for f in report["findings"]] == ["empty"]


def test_what_a_file_sink_wrote_still_checks(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    assert cli(cfg, "once").returncode == 0
    files = sorted(str(p) for p in (tmp_path / "out").glob("*.ndjson"))
    result = verify(*files, "--from-seq", "1")
    assert result.returncode == 0 and "OK: every chain checks" in result.stdout, result.stdout + result.stderr
