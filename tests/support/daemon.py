"""Run the real ``audit-forwarder`` command in its own process, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def cli(
    config: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "-c", str(config), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "forwarder", "-c", str(config), *(args or ("run",))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )  # fmt: skip


def read_ndjson(directory: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for path in sorted(directory.rglob("*.ndjson")):
        events.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())
    return events


def file_sink_config(tmp_path: Path, sources: dict[str, Any]) -> Path:
    """A config with these sources and one NDJSON file sink per source under ``tmp_path/out``."""
    sink = {"type": "file", "path": str(tmp_path / "out" / "{source}.ndjson"), "batch_max_age_s": 0.05}
    return write_config(
        tmp_path / "config.yaml",
        {"state_dir": str(tmp_path / "state"), "sources": sources, "sinks": {"out": sink}},
    )


def delivered_ids(tmp_path: Path) -> Counter[str]:
    return Counter(e["id"] for e in read_ndjson(tmp_path / "out"))


def once_ok(cfg: Path, code: int = 0) -> str:
    """``once`` must exit with ``code``; returns its log for further checks."""
    result = cli(cfg, "once")
    assert result.returncode == code, result.stderr
    return result.stderr
