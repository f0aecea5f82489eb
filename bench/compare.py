"""``--compare REF``: the same benchmark on another git revision, in the same run.

Two runs of the benchmark on this shared machine differ by up to ±25 % on their own
(docs/performance.md), so a change's effect is measured side by side instead: REF is checked
out into a temporary worktree (``git worktree add --detach``, removed at the end) and every
measured command of the run is also run from that tree, right after this tree's, with that
tree first on ``PYTHONPATH``. The interpreter and its packages are this checkout's: a REF
that needs other dependencies cannot be compared this way.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.procs import REPO_ROOT


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], check=True, capture_output=True, text=True).stdout


@contextmanager
def worktree(ref: str) -> Iterator[tuple[Path, str]]:
    """A temporary checkout of ``ref`` and its commit id."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    with tempfile.TemporaryDirectory(prefix="af-bench-ref-") as tmp:
        tree = Path(tmp) / "tree"
        _git("worktree", "add", "--detach", str(tree), commit)
        try:
            yield tree, commit
        finally:
            _git("worktree", "remove", "--force", str(tree))


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """Ours over REF's: below 1 is this tree spending less."""
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 3)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """This tree's figures over REF's, for each figure both measured."""
    ref = results["compare"]
    out: dict[str, Any] = {"sinks": {}, "startup": {}}
    for name, theirs in ref.get("sinks", {}).items():
        ours = results["sinks"][name]
        out["sinks"][name] = {
            "cpu_s_per_100k": ratio(ours["cpu_s_per_100k"], theirs["cpu_s_per_100k"]),
            "peak_rss_mb": ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"]),
        }
    for name, theirs in ref.get("startup", {}).items():
        ours = results["startup"][name]
        out["startup"][name] = {
            "cpu_s": ratio(ours["cpu_s"], theirs["cpu_s"]),
            "peak_rss_mb": ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"]),
        }
    if "idle" in ref:
        out["idle"] = {
            "cpu_s": ratio(results["idle"]["cpu_s"], ref["idle"]["cpu_s"]),
            "rss_mb_end": ratio(results["idle"]["rss_mb_end"], ref["idle"]["rss_mb_end"]),
        }
    return out
