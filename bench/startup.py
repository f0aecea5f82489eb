"""Command-line start-up: CPU and peak memory of ``--help``, ``schema`` and ``state show``.

Each command runs ``runs`` times in its own process (``python -m forwarder``, as the
``audit-forwarder`` script does) and the median of the kernel's accounting of that process
(``os.wait4``: user + system CPU, ``ru_maxrss``) is reported, with the fastest and slowest
run: on a shared machine the noise only ever adds. ``state show`` needs a state database, so
a small backlog is first forwarded into a file sink with ``once`` (not measured).

The tree measured is ``tree`` (this checkout, or ``--compare``'s worktree): the commands run
from its root with it first on ``PYTHONPATH``, with this interpreter and its packages.

Bytecode is cached, as for an installed package (pip compiles it at install): each command
runs once unmeasured first, writing ``.pyc`` files under ``work`` (``PYTHONPYCACHEPREFIX``),
also where the environment sets ``PYTHONDONTWRITEBYTECODE`` (the development machines do:
every process there compiles the whole package from source, ~0.1 s of ``state show``).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.procs import Measured, run_measured
from forwarder.emulators.codacy import CodacyEmulator

COMMANDS = {"help": ["--help"], "schema": ["schema"], "state_show": ["state", "show"]}
TARGET_CPU_S = {"help": 0.15, "schema": 0.15, "state_show": 0.3}


def tree_env(tree: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(tree)}


def state_config(work: Path, url: str) -> Path:
    """A Codacy source and a file sink; its state is made by one ``once``."""
    config = {
        "state_dir": str(work / "state"),
        "sources": {
            "codacy": {
                "type": "codacy",
                "base_url": f"{url}/api/v3",
                "api_token": CodacyEmulator().token,
                "organizations": ["gh/acme"],
                "initial_lookback_days": 2,
                "lag_s": 0,
            }
        },
        "sinks": {"out": {"type": "file", "path": str(work / "out.ndjson")}},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def summary(runs: list[Measured]) -> dict[str, Any]:
    cpu = [m.cpu_s for m in runs]
    rss = [m.peak_rss_mb for m in runs]
    return {
        "cpu_s": round(statistics.median(cpu), 3),
        "cpu_s_min": round(min(cpu), 3),
        "cpu_s_max": round(max(cpu), 3),
        "peak_rss_mb": round(statistics.median(rss), 1),
        "runs": len(runs),
        "exit_codes": sorted({m.returncode for m in runs}),
    }


def measure(tree: Path, work: Path, url: str, runs: int) -> dict[str, Any]:
    """``url`` serves the Codacy backlog ``state show``'s state is made from."""
    work.mkdir(parents=True, exist_ok=True)
    config = state_config(work, url)
    python = [sys.executable, "-m", "forwarder"]
    env = {**tree_env(tree), "PYTHONPYCACHEPREFIX": str(work / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}
    made = run_measured(
        [*python, "-c", str(config), "once", "--timeout", "120"], env=env, log=work / "once.log", cwd=tree
    )
    if made.returncode != 0:
        raise RuntimeError(f"once (making state for `state show`) exited {made.returncode}; see {work / 'once.log'}")
    results: dict[str, Any] = {}
    for name, args in COMMANDS.items():
        cmd = [*python, "-c", str(config), *args] if name == "state_show" else [*python, *args]
        run_measured(cmd, env=env, log=work / f"{name}.log", cwd=tree)  # writes the bytecode it needs
        measured = [run_measured(cmd, env=env, log=work / f"{name}.log", cwd=tree) for _ in range(runs)]
        results[name] = {**summary(measured), "target_cpu_s": TARGET_CPU_S[name]}
    return results
