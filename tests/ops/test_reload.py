"""SIGHUP reloads the configuration of the running daemon process."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from structlog.testing import capture_logs

from forwarder.daemon import Daemon
from forwarder.settings import load_settings
from forwarder.sources import SOURCES
from forwarder.sources.codacy import CodacySource
from sinks.registry import SINKS
from sinks.syslog.sink import SyslogSink
from tests.support.daemon import cli, daemon, read_ndjson, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.health import health
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

TOKEN = "codacy-test-token"  # the emulator's default
ORGS = ["gh/acme", "gl/globex"]


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=20, options={"orgs": ORGS, "span_s": 86400})
    yield emulator
    emulator.stop()


def source(url: str, org: str) -> dict[str, Any]:
    return {
        "type": "codacy",
        "base_url": f"{url}/api/v3",
        "api_token": TOKEN,
        "organizations": [org],
        "initial_lookback_days": 7,
        "lag_s": 0,
        "overlap_s": 600,
        "interval_s": 0.5,
        "jitter_s": 0,
        "max_attempts": 2,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.1,
    }


def file_sink(directory: Path) -> dict[str, Any]:
    return {"type": "file", "path": str(directory / "{organization}.ndjson"), "batch_max_age_s": 0.05}


def write(tmp_path: Path, port: int, sources: dict[str, Any], sinks: dict[str, Any]) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "metrics": {"listen": f"127.0.0.1:{port}"},
            "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
            "sources": sources,
            "sinks": sinks,
        },
    )


def count(directory: Path, n: int) -> bool:
    return directory.exists() and len(read_ndjson(directory)) >= n


def test_sighup_applies_a_new_config_and_refuses_an_invalid_one(tmp_path: Path, codacy: EmulatorProcess) -> None:
    port = free_port()
    first, second = tmp_path / "first", tmp_path / "second"
    cfg = write(tmp_path, port, {"acme": source(codacy.url, "gh/acme")}, {"out": file_sink(first)})
    with daemon(cfg) as proc:
        wait_until("acme's entries", lambda: count(first, 20))

        # an invalid config is refused, loudly, and the running one carries on
        cfg.write_text(cfg.read_text().replace("interval_s: 0.5", "interval_s: -1"))
        proc.signal(signal.SIGHUP)
        wait_until("the refusal", lambda: "configuration reload refused" in proc.log())
        refusal = next(line for line in proc.log().splitlines() if "reload refused" in line)
        assert "sources.acme.interval_s" in refusal
        status, body = health(port)
        assert status == 200 and set(body["sources"]) == {"acme"}, body
        assert proc.process.poll() is None

        # remove acme, add globex, change the sink: it is rebuilt and resumes from its offset
        write(tmp_path, port, {"globex": source(codacy.url, "gl/globex")}, {"out": file_sink(second)})
        proc.signal(signal.SIGHUP)
        wait_until("the reload", lambda: "configuration reloaded" in proc.log())
        wait_until("globex's entries", lambda: count(second, 20))
        status, body = health(port)
        assert status == 200 and set(body["sources"]) == {"globex"} and set(body["sinks"]) == {"out"}, body
        reloaded = orjson.loads(next(line for line in proc.log().splitlines() if "configuration reloaded" in line))
        assert reloaded["sources_stopped"] == ["acme"] and reloaded["sources_started"] == ["globex"]
        assert reloaded["sinks_rebuilt"] == ["out"]

        # the removed source no longer polls: new acme entries stay at the vendor
        codacy.control("POST", "entries", {"generate": 3, "orgs": ORGS, "span_s": 1})
        wait_until("new globex entries", lambda: count(second, 23))
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
        wait_until("acme's entries", lambda: count(first, 20))
        write(tmp_path, port, sources, {"out": file_sink(first), "extra": file_sink(extra)})
        proc.signal(signal.SIGHUP)
        wait_until("the reload", lambda: "configuration reloaded" in proc.log())
        reloaded = orjson.loads(next(line for line in proc.log().splitlines() if "configuration reloaded" in line))
        assert reloaded["sinks_started"] == ["extra"] and reloaded["sinks_rebuilt"] == []
        assert reloaded["sources_restarted"] == [] and reloaded["sources_stopped"] == []
        codacy.control("POST", "entries", {"generate": 2, "orgs": ["gh/acme"], "span_s": 1})
        wait_until("new entries in both sinks", lambda: count(first, 22) and count(extra, 2))
        assert len(read_ndjson(first)) == 22  # the unchanged sink delivered nothing twice
        assert set(health(port)[1]["sinks"]) == {"out", "extra"}


def test_a_reload_that_cannot_build_a_source_changes_nothing(tmp_path: Path, codacy: EmulatorProcess) -> None:
    port = free_port()
    out = tmp_path / "out"
    sources = {"main": source(codacy.url, "gh/acme")}
    cfg = write(tmp_path, port, sources, {"out": file_sink(out)})
    with daemon(cfg) as proc:
        wait_until("main's entries", lambda: count(out, 20))

        # main changes (so it is replaced) and "bad", built before it, passes validation but httpx
        # cannot put its token in a header: main must neither be stopped nor replaced
        bad = {**source(codacy.url, "gl/globex"), "api_token": "t\u00f6ken"}
        write(tmp_path, port, {"bad": bad, "main": {**sources["main"], "interval_s": 0.6}}, {"out": file_sink(out)})
        proc.signal(signal.SIGHUP)
        wait_until("the reload's outcome", lambda: "the running configuration stays in force" in proc.log())
        status, body = health(port)
        assert status == 200 and set(body["sources"]) == {"main"}, body
        codacy.control("POST", "entries", {"generate": 3, "orgs": ["gh/acme"], "span_s": 1})
        wait_until("new entries from main", lambda: count(out, 23))
        refusal = orjson.loads(next(line for line in proc.log().splitlines() if "reload refused" in line))
        (problem,) = refusal["problems"]
        assert problem.startswith("sources.bad: cannot be built: UnicodeEncodeError: 'ascii' codec"), problem

        # the running settings are still the old ones: reloading them again changes nothing
        write(tmp_path, port, sources, {"out": file_sink(out)})
        proc.signal(signal.SIGHUP)
        wait_until("the reload", lambda: "configuration reloaded" in proc.log())
        reloaded = orjson.loads(next(line for line in proc.log().splitlines() if "configuration reloaded" in line))
        assert reloaded["sources_restarted"] == [] and reloaded["sources_started"] == [], reloaded
        assert proc.process.poll() is None
    assert proc.process.returncode == 0, proc.log()


class UnbuildableSink(SyslogSink):
    def __init__(self, name: str, config: Any) -> None:
        raise ValueError(f"cannot use {TOKEN}")


async def test_a_reload_that_cannot_build_a_sink_changes_nothing(
    tmp_path: Path, codacy: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: no valid configuration makes a shipped sink's constructor fail."""
    monkeypatch.setitem(SINKS, "syslog", (SINKS["syslog"][0], UnbuildableSink))
    port, out = free_port(), tmp_path / "out"
    sources = {"main": source(codacy.url, "gh/acme")}
    cfg = write(tmp_path, port, sources, {"out": file_sink(out)})
    daemon = Daemon(load_settings(cfg), config_path=cfg)
    await daemon.start()
    try:
        running = (dict(daemon.pollers), dict(daemon.workers), dict(daemon.worker_tasks), daemon.settings)
        sinks = {"out": {**file_sink(out), "batch_max_age_s": 0.1}, "extra": {"type": "syslog", "host": "127.0.0.1"}}
        write(tmp_path, port, {"main": {**sources["main"], "interval_s": 0.6}}, sinks)
        with capture_logs() as logs:
            assert not await daemon.reload()
        assert (daemon.pollers, daemon.workers, daemon.worker_tasks, daemon.settings) == running
        assert not any(task.done() for task in daemon.worker_tasks.values())
        refusal = next(e for e in logs if e["event"].startswith("configuration reload refused"))
        assert refusal["problems"] == ["sinks.extra: cannot be built: ValueError: cannot use ***"]
        assert await daemon.poll("main")
        async with asyncio.timeout(20):  # the old source and sink still collect and deliver
            while not count(out, 20):
                await asyncio.sleep(0.05)
    finally:
        await daemon.stop()


async def test_a_reload_whose_sinks_cannot_be_registered_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, the state's database out of reach at the reload (``register_sinks`` raising,
    as PostgreSQL's does then): the new settings and workers were in force already, the removed
    source stopped, while the log said the running configuration stayed."""
    port, out = free_port(), tmp_path / "out"
    sources = {"main": source("http://127.0.0.1:9", "gh/acme"), "other": source("http://127.0.0.1:9", "gh/b")}
    cfg = write(tmp_path, port, sources, {"out": file_sink(out)})
    daemon = Daemon(load_settings(cfg), config_path=cfg)
    await daemon.start()
    try:
        running = (dict(daemon.pollers), dict(daemon.workers), dict(daemon.worker_tasks), daemon.settings)
        write(tmp_path, port, {"main": sources["main"]}, {"out": file_sink(out), "extra": file_sink(tmp_path / "x")})
        closed: list[str] = []
        monkeypatch.setattr(SINKS["file"][1], "close", lambda sink: closed.append(sink.name) or asyncio.sleep(0))

        async def unreachable(names: Any) -> list[str]:
            raise ConnectionError("the database is out of reach")

        monkeypatch.setattr(daemon.journal, "register_sinks", unreachable)
        with capture_logs() as logs:
            assert not await daemon.reload()
        assert (daemon.pollers, daemon.workers, daemon.worker_tasks, daemon.settings) == running
        assert closed == ["extra"]  # what was built for the refused reload is closed
        assert any(e["event"].startswith("configuration reload failed") for e in logs)
    finally:
        monkeypatch.undo()
        await daemon.stop()


async def test_a_sighup_while_waiting_for_the_database_is_applied_once_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, ``run`` waiting for its PostgreSQL state (``owner.reachable``): a SIGHUP then
    reloaded against a journal not open yet, failed with a traceback, and the daemon started
    on the file as it was read at launch."""
    import os

    cfg = write(tmp_path, free_port(), {"main": source("http://127.0.0.1:9", "gh/acme")}, {"out": file_sink(tmp_path)})
    daemon = Daemon(load_settings(cfg), config_path=cfg)
    database_back = asyncio.Event()

    async def reachable(stopping: asyncio.Event) -> bool:
        await database_back.wait()
        return True

    monkeypatch.setattr(daemon.owner, "reachable", reachable)
    with capture_logs() as logs:
        running = asyncio.create_task(daemon.run_forever())
        await asyncio.sleep(0.1)
        changed = yaml.safe_load(cfg.read_text())
        changed["shutdown_timeout_s"] = 7
        write_config(cfg, changed)
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.1)
        database_back.set()
        async with asyncio.timeout(20):
            while daemon.settings.shutdown_timeout_s != 7:
                await asyncio.sleep(0.05)
        daemon.stopping.set()
        await running
    assert not [e for e in logs if e["event"].startswith("configuration reload failed")], logs


def test_a_source_that_cannot_be_built_stops_start_up_with_its_name(tmp_path: Path) -> None:
    bad = {**source("http://127.0.0.1:9", "gh/acme"), "api_token": "t\u00f6ken"}
    cfg = write(tmp_path, free_port(), {"bad": bad}, {"out": file_sink(tmp_path / "out")})
    result = cli(cfg, "once")
    assert result.returncode == 2, result.stderr
    assert "sources.bad: cannot be built: UnicodeEncodeError" in result.stderr
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr


BUILT_IN: list[str] = []  # the threads the constructors below ran in


class ThreadRecordingSink(SyslogSink):
    def __init__(self, name: str, config: Any) -> None:
        BUILT_IN.append(threading.current_thread().name)
        super().__init__(name, config)


class ThreadRecordingSource(CodacySource):
    def __init__(self, name: str, config: Any) -> None:
        BUILT_IN.append(threading.current_thread().name)
        super().__init__(name, config)


async def test_sources_and_sinks_are_built_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each httpx client loads the CA bundle when built: on the loop, a reload stalled every sink."""
    monkeypatch.setitem(SINKS, "syslog", (SINKS["syslog"][0], ThreadRecordingSink))
    monkeypatch.setitem(SOURCES, "codacy", (SOURCES["codacy"][0], ThreadRecordingSource))
    cfg = write(
        tmp_path,
        free_port(),
        {"main": source("http://127.0.0.1:9", "gh/acme")},
        {"extra": {"type": "syslog", "host": "127.0.0.1"}},
    )
    daemon = Daemon(load_settings(cfg), config_path=cfg)
    pollers, workers = await daemon._build(daemon.settings, ["main"], ["extra"])
    try:
        assert len(BUILT_IN) == 2 and threading.main_thread().name not in BUILT_IN
        assert list(pollers) == ["main"] and list(workers) == ["extra"]
    finally:
        await pollers["main"].source.close()
        await workers["extra"].sink.close()


async def test_a_reload_warns_for_restart_only_settings_and_applies_the_rest(tmp_path: Path) -> None:
    port = free_port()
    sources = {"main": source("http://127.0.0.1:9", "gh/acme")}
    cfg = write(tmp_path, port, sources, {"out": file_sink(tmp_path / "out")})
    daemon = Daemon(load_settings(cfg), config_path=cfg)
    await daemon.start()
    try:
        changed = yaml.safe_load(cfg.read_text())
        changed.update(shutdown_timeout_s=7, log={"level": "debug"})
        write_config(cfg, changed)
        with capture_logs() as logs:
            assert await daemon.reload()
        assert daemon.settings.shutdown_timeout_s == 7
        assert daemon.settings.log.level != "debug"
        kept = [e["setting"] for e in logs if e["event"].startswith("this setting changes only on restart")]
        assert kept == ["log"]
    finally:
        await daemon.stop()
