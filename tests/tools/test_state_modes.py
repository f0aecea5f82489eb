"""Through the real CLI, as an operator runs it by hand or from cron: whatever the umask, the
state directory is 0700 and every file in it 0600, while the daemon runs and after ``once``."""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from forwarder.evidence.keys import generate
from tests.support.config import codacy_files_config as make_config
from tests.support.daemon import cli, read_ndjson, start, write_config
from tests.support.emulators import EmulatorProcess


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)  # the child processes inherit it
    yield request.param
    os.umask(old)


def modes(state: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.lstat().st_mode) for path in [state, *state.iterdir()]}


def test_once_and_run_keep_the_state_private(tmp_path: Path, codacy: EmulatorProcess, umask: int) -> None:
    cfg = make_config(tmp_path, codacy.url, source={"interval_s": 3600})
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    state = tmp_path / "state"
    assert modes(state) == {
        "state": 0o700,
        "journal.sqlite3": 0o600,
        "journal.sqlite3-segments": 0o700,
        "audit-forwarder.lock": 0o600,
    }
    assert list((state / "journal.sqlite3-segments").iterdir()) == []  # every event delivered: none kept
    daemon = start(cfg, "run")
    try:
        wal = state / "journal.sqlite3-wal"
        deadline = time.time() + 20
        while time.time() < deadline and not (wal.exists() and (state / "journal.sqlite3-shm").exists()):
            time.sleep(0.05)
        assert modes(state) == {
            "state": 0o700,
            "journal.sqlite3": 0o600,
            "journal.sqlite3-wal": 0o600,
            "journal.sqlite3-shm": 0o600,
            "journal.sqlite3-segments": 0o700,
            "audit-forwarder.lock": 0o600,
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert len(read_ndjson(tmp_path / "out")) == 40


def test_the_file_sinks_new_directories_are_as_private_as_its_files(
    tmp_path: Path, codacy: EmulatorProcess, umask: int
) -> None:
    """mode 0640: the group may list and read, nobody else may enter, nobody but the owner
    write (whatever the umask, which only ever narrows)."""
    cfg = make_config(tmp_path, codacy.url, source={"interval_s": 3600})
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}


def test_the_digests_of_a_file_sink_are_as_private_as_its_files(
    tmp_path: Path, codacy: EmulatorProcess, umask: int
) -> None:
    """The `_digests` directory is the sink's too: under umask 000 it was 0777, so anyone could
    delete the proof an auditor verifies against."""
    generate(tmp_path / "evidence.key", tmp_path / "evidence.pub")
    sink = {
        "type": "file",
        "path": str(tmp_path / "out" / "{organization}.ndjson"),
        "batch_max_age_s": 0.05,
        "evidence": {"signing_key_file": str(tmp_path / "evidence.key")},
    }
    cfg = make_config(tmp_path, codacy.url, source={"interval_s": 3600})
    config = yaml.safe_load(cfg.read_text())
    write_config(cfg, {**config, "sinks": {"out": sink}})
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    digests = tmp_path / "out" / "_digests"
    assert stat.S_IMODE(digests.stat().st_mode) == 0o750
    assert [p.name for p in digests.iterdir()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in digests.iterdir()} == {0o640}
