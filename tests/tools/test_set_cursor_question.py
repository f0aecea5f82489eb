"""``state set-cursor``'s question, through the real CLI, says what the move does in its own
direction: it said "Earlier entries are collected again, later ones are skipped" for every move,
so an operator moving a cursor back was told entries would be skipped, and one moving it
forward that entries would be sent again."""

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

OVERLAP = timedelta(seconds=600)  # codacy_files_config's overlap_s


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def watermark(cfg: Path) -> str:
    (cursor,) = [c for c in json_of(cfg, "state", "show")["cursors"] if c["organization"] == "gh/acme"]
    return str(cursor["watermark"])


def declined(cfg: Path, to: datetime) -> str:
    """The question asked for moving gh/acme's cursor to ``to``, answered no."""
    args = ("state", "set-cursor", "--source", "codacy", "--org", "gh/acme", "--to", stamp(to))
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "-c", str(cfg), *args],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert result.returncode == 1, result.stderr
    return result.stdout


def test_the_question_says_what_a_move_back_or_forward_does(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = make_config(tmp_path, codacy.url)
    assert cli(cfg, "once").returncode == 0
    now = watermark(cfg)
    back = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

    question = declined(cfg, back)
    assert f"Entries from {stamp(back - OVERLAP)} (--to minus overlap_s) to {now} are collected and sent again" in (
        question
    ), question
    assert "nothing is skipped" in question and "skipped for good" not in question, question
    assert watermark(cfg) == now  # "no" changed nothing

    moved = cli(cfg, "state", "set-cursor", "--source", "codacy", "--org", "gh/acme", "--to", stamp(back), "--yes")
    assert moved.returncode == 0, moved.stderr
    forward = back + timedelta(days=1)
    question = declined(cfg, forward)
    assert (
        f"Entries between {stamp(back)} and {stamp(forward - OVERLAP)} (--to minus overlap_s) are never collected: "
        "skipped for good" in question
    ), question
    assert "sent again" not in question, question
    assert watermark(cfg) == stamp(back)
