"""``state show`` loads its modules and its configuration with the cycle collector paused, then
freezes what was loaded (``forwarder.commands.common.collector_paused``; docs/performance.md,
round 10): the collector's passes over some 100,000 long-lived objects were ~30 ms of the
command's 0.3 s budget. No timing is asserted (the figures are the benchmark's): the checks
count the collections the real command makes, in its own process, and that the collector is
running again afterwards, also when the configuration is refused.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.support.config import codacy_files_config as make_config
from tests.support.daemon import cli, write_config
from tests.support.emulators import EmulatorProcess

MARK = "COLLECTOR "
LAUNCHER = f"""
import atexit, gc, sys
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "start" and info["generation"] == 2 else None)
atexit.register(lambda: print({MARK!r}, len(full), gc.isenabled(), gc.get_freeze_count(), file=sys.stderr))
sys.argv = ["audit-forwarder", *sys.argv[1:]]
from forwarder.cli import main
main()
"""


def state_show(config: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], tuple[int, bool, int]]:
    shown = subprocess.run(
        [sys.executable, "-c", LAUNCHER, "-c", str(config), "state", "show", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(line for line in shown.stderr.splitlines() if line.startswith(MARK))
    full, enabled, frozen = line.removeprefix(MARK).split()
    return shown, (int(full), enabled == "True", int(frozen))


def test_state_show_runs_no_full_collection_and_leaves_the_collector_on(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    cfg = make_config(tmp_path, codacy.url)
    assert cli(cfg, "once").returncode == 0
    shown, (full, enabled, frozen) = state_show(cfg, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    assert len(orjson.loads(shown.stdout)["cursors"]) == 2
    assert full == 0  # before: one full collection, eleven of the middle generation
    assert enabled and frozen > 10_000


def test_a_refused_configuration_still_leaves_the_collector_on(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "config.yaml",
        {"state_dir": str(tmp_path / "state"), "sinks": {"out": {"type": "no_such_sink"}}},
    )
    shown, (_, enabled, _) = state_show(cfg)
    assert shown.returncode == 2
    assert f"invalid configuration in {cfg}" in shown.stderr and "no_such_sink" in shown.stderr
    assert enabled
