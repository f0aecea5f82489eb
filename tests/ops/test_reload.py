"""SIGHUP reloads the configuration of the running daemon process."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers.daemon import cli, read_ndjson, write_config
from tests.helpers.emulators import EmulatorProcess, running
from tests.ops.support import daemon, free_port, health, wait_for

TOKEN = "codacy-test-token"  # the emulator's default
ORGS = ["gh/acme", "gl/globex"]


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=20, options={"orgs": ORGS, "span_s": 86400})
    yield emulator
    emulator.stop()


def source(url: str, org: str) -> dict[str, Any]:
    return {
        "type": "codacy", "base_url": f"{url}/api/v3", "api_token": TOKEN, "organizations": [org],
        "initial_lookback_days": 7, "lag_s": 0, "overlap_s": 600, "interval_s": 0.5, "jitter_s": 0, "max_attempts": 2,
        "backoff_initial_s": 0.05, "backoff_max_s": 0.1,
    }  # fmt: skip


def file_sink(directory: Path) -> dict[str, Any]:
    return {"type": "file", "path": str(directory / "{organization}.ndjson"), "batch_max_age_s": 0.05}


def write(tmp_path: Path, port: int, sources: dict[str, Any], sinks: dict[str, Any]) -> Path:
    return write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"),
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        "sources": sources,
        "sinks": sinks,
    })  # fmt: skip


def count(directory: Path, n: int) -> bool:
    return directory.exists() and len(read_ndjson(directory)) >= n


def test_sighup_applies_a_new_config_and_refuses_an_invalid_one(tmp_path: Path, codacy: EmulatorProcess) -> None:
    port = free_port()
    first, second = tmp_path / "first", tmp_path / "second"
    cfg = write(tmp_path, port, {"acme": source(codacy.url, "gh/acme")}, {"out": file_sink(first)})
    with daemon(cfg) as proc:
        wait_for("acme's entries", lambda: count(first, 20))

        # an invalid config is refused, loudly, and the running one carries on
        cfg.write_text(cfg.read_text().replace("interval_s: 0.5", "interval_s: -1"))
        proc.signal(signal.SIGHUP)
        wait_for("the refusal", lambda: "configuration reload refused" in proc.log())
        refusal = next(line for line in proc.log().splitlines() if "reload refused" in line)
        assert "sources.acme.interval_s" in refusal
        status, body = health(port)
        assert status == 200 and set(body["sources"]) == {"acme"}, body
        assert proc.process.poll() is None

        # remove acme, add globex, change the sink: it is rebuilt and resumes from its offset
        write(tmp_path, port, {"globex": source(codacy.url, "gl/globex")}, {"out": file_sink(second)})
        proc.signal(signal.SIGHUP)
        wait_for("the reload", lambda: "configuration reloaded" in proc.log())
        wait_for("globex's entries", lambda: count(second, 20))
        status, body = health(port)
        assert status == 200 and set(body["sources"]) == {"globex"} and set(body["sinks"]) == {"out"}, body
        reloaded = orjson.loads(next(line for line in proc.log().splitlines() if "configuration reloaded" in line))
        assert reloaded["sources_stopped"] == ["acme"] and reloaded["sources_started"] == ["globex"]
        assert reloaded["sinks_rebuilt"] == ["out"]

        # the removed source no longer polls: new acme entries stay at the vendor
        codacy.control("POST", "entries", {"generate": 3, "orgs": ORGS, "span_s": 1})
        wait_for("new globex entries", lambda: count(second, 23))
        assert {e["organization"] for e in read_ndjson(second)} == {"gl/globex"}
        assert len(read_ndjson(first)) == 20
    assert proc.process.returncode == 0, proc.log()

    # the journal and the removed source's cursor are untouched
    state = cli(cfg, "state", "show", "--output", "json")
    assert state.returncode == 0, state.stderr
    cursors = {(c["source"], c["organization"]) for c in orjson.loads(state.stdout)["cursors"]}
    assert {("acme", "gh/acme"), ("globex", "gl/globex")} <= cursors


def test_an_added_sink_starts_and_an_unchanged_one_keeps_running(tmp_path: Path, codacy: EmulatorProcess) -> None:
    port = free_port()
    first, extra = tmp_path / "first", tmp_path / "extra"
    sources = {"acme": source(codacy.url, "gh/acme")}
    cfg = write(tmp_path, port, sources, {"out": file_sink(first)})
    with daemon(cfg) as proc:
        wait_for("acme's entries", lambda: count(first, 20))
        write(tmp_path, port, sources, {"out": file_sink(first), "extra": file_sink(extra)})
        proc.signal(signal.SIGHUP)
        wait_for("the reload", lambda: "configuration reloaded" in proc.log())
        reloaded = orjson.loads(next(line for line in proc.log().splitlines() if "configuration reloaded" in line))
        assert reloaded["sinks_started"] == ["extra"] and reloaded["sinks_rebuilt"] == []
        assert reloaded["sources_restarted"] == [] and reloaded["sources_stopped"] == []
        codacy.control("POST", "entries", {"generate": 2, "orgs": ["gh/acme"], "span_s": 1})
        wait_for("new entries in both sinks", lambda: count(first, 22) and count(extra, 2))
        assert len(read_ndjson(first)) == 22  # the unchanged sink delivered nothing twice
        assert set(health(port)[1]["sinks"]) == {"out", "extra"}
