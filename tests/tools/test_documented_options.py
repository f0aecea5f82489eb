"""The operator tools as README.md's *Operator tools* table and *Backfill* paragraph describe them,
through the real CLI against the Codacy emulator: ``--organization`` is ``--org``'s long spelling
(``reconcile`` takes ``--organization``, so an operator types both); ``set-cursor`` resumes at its
date minus the overlap the source re-reads; a finished backfill run again sends nothing."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from forwarder.emulators.codacy import parse_timestamp
from forwarder.event import content_id, format_ms
from tests.support.config import codacy_files_config as make_config
from tests.support.daemon import cli, read_ndjson
from tests.support.emulators import EmulatorProcess

OVERLAP_MS = 600_000
DAY_MS = 86_400_000


def acme_entries(emulator: EmulatorProcess) -> list[tuple[int, str]]:
    """(time, event id) of gh/acme's entries, oldest first."""
    out = []
    for entry in emulator.entries():
        if entry.pop("_org") == "gh/acme":
            out.append((parse_timestamp(entry["timestamp"]), content_id("codacy", "gh/acme", entry)))
    return sorted(out)


def test_set_cursor_takes_organization_and_the_next_once_reads_from_the_date_minus_the_overlap(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    cfg = make_config(tmp_path, codacy.url, source={"overlap_s": OVERLAP_MS / 1000})
    entries = acme_entries(codacy)
    pivot, _ = entries[len(entries) // 2]
    to = pivot + OVERLAP_MS // 2  # the pivot entry lies before the date, inside the overlap
    assert all(abs(t - pivot) > OVERLAP_MS for t, _ in entries if t != pivot), "entries too close for this test"
    assert cli(cfg, "once").returncode == 0  # the tool edits an existing state
    shutil.rmtree(tmp_path / "out")

    result = cli(
        cfg, "state", "set-cursor", "--source", "codacy", "--organization", "gh/acme", "--to", format_ms(to), "-y"
    )
    assert result.returncode == 0, result.stderr
    assert cli(cfg, "once").returncode == 0

    # moved back: gh/acme from the date minus the overlap, again; gl/globex (caught up) nothing
    delivered = [(e["organization"], e["id"]) for e in read_ndjson(tmp_path / "out")]
    assert sorted(delivered) == sorted(("gh/acme", i) for t, i in entries if t >= to - OVERLAP_MS)


def test_backfill_takes_organization_and_a_finished_window_run_again_sends_nothing(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    cfg = make_config(tmp_path, codacy.url)
    now = int(time.time()) * 1000
    since, until = now - 3 * DAY_MS, now - DAY_MS
    window = ("--since", format_ms(since), "--until", format_ms(until))
    args = ("backfill", "--source", "codacy", "--organization", "gh/acme", *window)

    result = cli(cfg, *args)
    assert result.returncode == 0, result.stderr
    want = sorted(i for t, i in acme_entries(codacy) if since <= t < until)
    assert want and sorted(e["id"] for e in read_ndjson(tmp_path / "out")) == want

    again = cli(cfg, *args)
    assert again.returncode == 0, again.stderr
    assert sorted(e["id"] for e in read_ndjson(tmp_path / "out")) == want


def test_a_finished_backfill_without_until_run_again_collects_a_new_window_to_now(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    cfg = make_config(tmp_path, codacy.url)
    since = int(time.time()) * 1000 - 2 * DAY_MS
    args = ("backfill", "--source", "codacy", "--org", "gh/acme", "--since", format_ms(since))
    want = sorted(i for t, i in acme_entries(codacy) if t >= since)

    for copies in (1, 2):
        time.sleep(1 - time.time() % 1)  # a new window's end is stamped to the second: a later one
        result = cli(cfg, *args)
        assert result.returncode == 0, result.stderr
        assert sorted(e["id"] for e in read_ndjson(tmp_path / "out")) == sorted(want * copies)
