"""`dlq list|replay|purge` through the real CLI: dead letters from a blocked file sink, replayed to
that sink only once it is unblocked, or purged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from tests.support.config import codacy_files_config as make_config
from tests.support.config import json_of
from tests.support.daemon import cli, read_ndjson, write_config
from tests.support.emulators import EmulatorProcess
from tests.support.vendors import ORGS


def block(path: Path) -> None:
    """A regular file where the sink needs a directory: every write fails, and with
    max_attempts 1 each batch goes straight to the dead-letter store."""
    shutil.rmtree(path, ignore_errors=True)
    path.write_text("not a directory")


def test_dead_letters_are_listed_replayed_to_their_sink_only_and_purged(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    cfg = make_config(
        tmp_path,
        codacy.url,
        sinks=("out", "good"),
        retry={"initial_backoff_s": 0.05, "max_backoff_s": 0.1, "max_attempts": 1},
    )
    block(tmp_path / "out")
    assert cli(cfg, "once").returncode == 1  # dead letters make `once` fail
    letters = json_of(cfg, "dlq", "list")
    assert len(letters) == 40 and {d["sink"] for d in letters} == {"out"}
    assert all(
        d["reason"].startswith("gave up after 1 attempts") and d["event"]["id"] == d["event_id"] for d in letters
    )
    assert json_of(cfg, "dlq", "list", "--sink", "good") == []

    still_blocked = cli(cfg, "dlq", "replay", "--sink", "out")
    assert still_blocked.returncode == 1 and "the rest stay dead-lettered" in still_blocked.stdout
    assert len(json_of(cfg, "dlq", "list")) == 40

    (tmp_path / "out").unlink()
    one = cli(cfg, "dlq", "replay", "--sink", "out", "--id", str(letters[0]["id"]))
    assert one.returncode == 0, one.stdout + one.stderr
    assert [e["id"] for e in read_ndjson(tmp_path / "out")] == [letters[0]["event_id"]]
    rest = cli(cfg, "dlq", "replay")
    assert rest.returncode == 0 and "39 of 39 dead letter(s) replayed" in rest.stdout
    assert json_of(cfg, "dlq", "list") == []
    good = Counter(e["id"] for e in read_ndjson(tmp_path / "good"))
    assert Counter(e["id"] for e in read_ndjson(tmp_path / "out")) == good  # replayed, exactly once
    assert len(good) == 40 and max(good.values()) == 1  # the healthy sink got no duplicate

    block(tmp_path / "out")
    codacy.control("POST", "entries", {"generate": 3, "orgs": ORGS, "span_s": 5})
    assert cli(cfg, "once").returncode == 1
    assert len(json_of(cfg, "dlq", "list", "--sink", "out")) == 6
    declined = subprocess.run(
        [sys.executable, "-m", "forwarder", "-c", str(cfg), "dlq", "purge"],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert declined.returncode == 1 and "delete 6 dead letter(s) for good?" in declined.stdout
    purged = cli(cfg, "dlq", "purge", "--sink", "out", "--yes")
    assert purged.returncode == 0 and "6 dead letter(s) purged" in purged.stdout
    assert json_of(cfg, "dlq", "list") == []
    assert len(read_ndjson(tmp_path / "good")) == 46


def test_a_sink_name_neither_configured_nor_holding_dead_letters_is_refused(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    """A typo in ``--sink`` answered "0 dead letters" / "no dead letters to replay" with exit 0,
    as if that sink had delivered everything; like ``--source``, it names the configured ones."""
    cfg = make_config(tmp_path, codacy.url, retry={"initial_backoff_s": 0.05, "max_backoff_s": 0.1, "max_attempts": 1})
    block(tmp_path / "out")
    assert cli(cfg, "once").returncode == 1
    for command in (("list",), ("replay",), ("purge", "--yes")):
        result = cli(cfg, "dlq", *command, "--sink", "ot")
        assert result.returncode == 1, result.stdout
        assert "no sink named 'ot'" in result.stderr and "(configured: out)" in result.stderr, result.stderr
    assert len(json_of(cfg, "dlq", "list", "--sink", "out")) == 40  # purged nothing
    # A sink removed from the configuration still names its own dead letters.
    config = yaml.safe_load(cfg.read_text())
    config["sinks"] = {"other": {**config["sinks"]["out"], "path": str(tmp_path / "other" / "{organization}.ndjson")}}
    write_config(cfg, config)
    assert len(json_of(cfg, "dlq", "list", "--sink", "out")) == 40
    purged = cli(cfg, "dlq", "purge", "--sink", "out", "--yes")
    assert purged.returncode == 0 and "40 dead letter(s) purged" in purged.stdout, purged.stderr
