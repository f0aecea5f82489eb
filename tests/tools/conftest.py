"""Shared by the operator-tool tests: a Codacy emulator and a configuration with file sinks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.daemon import cli, write_config
from tests.support.emulators import EmulatorProcess, running

ORGS = ["gh/acme", "gl/globex"]


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=20, options={"orgs": ORGS, "span_s": 3 * 86400})
    yield emulator
    emulator.stop()


def make_config(tmp_path: Path, url: str, sinks: tuple[str, ...] = ("out",), **overrides: Any) -> Path:
    source = {
        "type": "codacy", "base_url": f"{url}/api/v3", "api_token": "codacy-test-token", "organizations": ORGS,
        "initial_lookback_days": 7, "lag_s": 0, "overlap_s": 600, "interval_s": 1, "jitter_s": 0,
        "max_attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2,
    }  # fmt: skip
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
    result = cli(config, *args, "--output", "json")
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)
