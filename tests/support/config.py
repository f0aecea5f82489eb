"""Configurations the suites write for the real daemon, and what its ``state`` commands report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.support.daemon import cli, write_config
from tests.support.vendors import ORGS


def file_sink(directory: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "file",
        "path": str(directory / "{organization}.ndjson"),
        "batch_max_age_s": 0.05,
        **overrides,
    }


def make_config(tmp_path: Path, source: dict[str, Any], sinks: dict[str, Any], **extra: Any) -> Path:
    """``source`` is the one Codacy source most tests need, or ``{name: source}`` for several."""
    sources = {"codacy": source} if "type" in source else source
    config: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "shutdown_timeout_s": 5,
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.5},
        "metrics": {"enabled": False},
        "sources": sources,
        "sinks": sinks,
        **extra,
    }
    return write_config(tmp_path / "config.yaml", config)


def files_per_source_config(tmp_path: Path, sources: dict[str, Any]) -> Path:
    """``sources`` by name into one file sink, a file per source under ``tmp_path/out``."""
    sink = {"type": "file", "path": str(tmp_path / "out" / "{source}.ndjson"), "batch_max_age_s": 0.05}
    return make_config(tmp_path, sources, {"out": sink})


def codacy_files_config(tmp_path: Path, url: str, sinks: tuple[str, ...] = ("out",), **overrides: Any) -> Path:
    """The operator tools' setting: one Codacy source, one NDJSON file sink per name in ``sinks``."""
    source = {
        "type": "codacy",
        "base_url": f"{url}/api/v3",
        "api_token": "codacy-test-token",
        "organizations": ORGS,
        "initial_lookback_days": 7,
        "lag_s": 0,
        "overlap_s": 600,
        "interval_s": 1,
        "jitter_s": 0,
        "max_attempts": 3,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    source.update(overrides.pop("source", {}))
    cfg: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.3},
        "sources": {"codacy": source},
        "sinks": {
            name: {"type": "file", "path": str(tmp_path / name / "{organization}.ndjson"), "batch_max_age_s": 0.05}
            for name in sinks
        },
    }
    cfg.update(overrides)
    return write_config(tmp_path / "config.yaml", cfg)


def json_of(config: Path, *args: str) -> Any:
    """An operator command's ``--output json`` answer; the command must succeed."""
    result = cli(config, *args, "--output", "json")
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def state(config: Path) -> dict[str, Any]:
    result = cli(config, "state", "show", "--output", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = orjson.loads(result.stdout)
    return value


def sink_lag(config: Path, sink: str) -> int:
    for row in state(config)["sinks"]:
        if row["sink"] == sink:
            return int(row["lag_events"])
    raise AssertionError(f"sink {sink} not in state")
