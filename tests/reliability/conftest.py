"""Shared pieces of the reliability suite, and the one line of figures it prints at the end.

Tests record what they measured in ``FIGURES`` (through the ``figures`` fixture); the
terminal summary aggregates them into ``reliability: lost=0 duplicated=N crashed=0
peak_rss_mb=X`` so a CI log shows the three promises as numbers, not only as a green run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from _pytest.terminal import TerminalReporter

from forwarder.emulators.codescoring import DEFAULT_TOKEN as CODESCORING_TOKEN
from forwarder.emulators.codestax import DEFAULT_API_KEY as CODESTAX_API_KEY
from forwarder.emulators.configcat import DEFAULT_ORG_ID as CONFIGCAT_ORG
from forwarder.emulators.configcat import DEFAULT_PASSWORD as CONFIGCAT_PASSWORD
from forwarder.emulators.configcat import DEFAULT_USER as CONFIGCAT_USER
from forwarder.event import content_id
from tests.support.daemon import cli, write_config
from tests.support.emulators import EmulatorProcess, running

TOKEN = "codacy-test-token"
ORGS = ["gh/acme", "gl/globex"]


@dataclass
class Figures:
    lost: int = 0
    duplicated: int = 0
    crashed: int = 0
    peak_rss_kb: int = 0
    recorded: int = 0

    def record(self, *, lost: int = 0, duplicated: int = 0, crashed: int = 0, rss_kb: int = 0) -> None:
        self.lost += lost
        self.duplicated += duplicated
        self.crashed += crashed
        self.peak_rss_kb = max(self.peak_rss_kb, rss_kb)
        self.recorded += 1

    def line(self) -> str:
        return (
            f"reliability: lost={self.lost} duplicated={self.duplicated} crashed={self.crashed} "
            f"peak_rss_mb={self.peak_rss_kb / 1024:.1f}"
        )


FIGURES = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return FIGURES


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if FIGURES.recorded:
        terminalreporter.write_line(FIGURES.line())


# --- helpers shared by the tests ------------------------------------------------------------


def wait_until(
    what: str,
    condition: Callable[[], bool],
    timeout: float = 60.0,
    every: float = 0.2,
    detail: Callable[[], str] = lambda: "",
) -> None:
    """Poll instead of sleeping a fixed time: the machine running the suite may be loaded.
    ``detail`` (typically the daemon's log tail) explains a timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail()[-4000:]}")
        time.sleep(every)


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size of a live process, from the kernel's own high-water mark."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


# Short polls, no lag, quick retries: what lets a test see many polls in a few seconds.
FAST_POLLING: dict[str, Any] = {
    "initial_lookback_days": 7,
    "lag_s": 0,
    "overlap_s": 600,
    "interval_s": 1,
    "jitter_s": 0,
    "max_attempts": 2,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
    "timeout_s": 10,
}


def codacy_source(url: str, **overrides: Any) -> dict[str, Any]:
    return {"type": "codacy", "base_url": f"{url}/api/v3", "api_token": TOKEN, "organizations": ORGS,
            **FAST_POLLING, **overrides}  # fmt: skip


def configcat_source(url: str, **overrides: Any) -> dict[str, Any]:
    return {"type": "configcat", "base_url": url, "username": CONFIGCAT_USER, "password": CONFIGCAT_PASSWORD,
            "organizations": [CONFIGCAT_ORG], **FAST_POLLING, **overrides}  # fmt: skip


def codescoring_source(url: str, **overrides: Any) -> dict[str, Any]:
    return {"type": "codescoring", "base_url": url, "token": CODESCORING_TOKEN, "installation": "default",
            **FAST_POLLING, **overrides}  # fmt: skip


def codestax_source(url: str, **overrides: Any) -> dict[str, Any]:
    # the source paces itself to its hourly budget: a realistic one would slow the test to a crawl
    return {"type": "codestax", "base_url": f"{url}/api", "api_key": CODESTAX_API_KEY, "organization": "default",
            "hourly_request_budget": 100_000, **FAST_POLLING, **overrides}  # fmt: skip


@dataclass(frozen=True)
class Vendor:
    """One vendor as a multi-source test drives it: its emulator, the source that reads it,
    and the id each of the emulator's entries must arrive under (each source's own key)."""

    options: dict[str, Any]  # emulator start-up: generation options and switches
    generate: dict[str, Any]  # what adding entries while the daemon runs needs besides a count
    source: Callable[[str], dict[str, Any]]
    key: Callable[[dict[str, Any]], str]  # an entry of GET /_control/entries, ``_org`` included


def codacy_key(entry: dict[str, Any]) -> str:
    """Codacy has no ids: content hashes (the emulator's entries are all distinct, so no
    occurrence suffix is involved)."""
    fields = dict(entry)
    org = fields.pop("_org")
    return content_id("codacy", org, fields)


VENDORS: dict[str, Vendor] = {
    "codacy": Vendor(
        {"orgs": ORGS, "span_s": 2 * 86400}, {"orgs": ORGS}, codacy_source, codacy_key
    ),
    "configcat": Vendor(
        {"orgs": [CONFIGCAT_ORG], "span_s": 2 * 86400}, {"orgs": [CONFIGCAT_ORG]}, configcat_source,
        lambda e: f"configcat:{e['auditLogId']}",
    ),
    "codescoring": Vendor(
        {"span_s": 2 * 86400}, {}, codescoring_source, lambda e: f"codescoring:{e['_org']}:{e['id']}"
    ),
    "codestax": Vendor(
        {"span_s": 2 * 86400, "config": {"hourly_budget": 1_000_000}}, {}, codestax_source,
        lambda e: f"codestax:{e['_org']}:{e['id']}",
    ),
}  # fmt: skip


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


def expected_ids(emulator: EmulatorProcess, vendor: str = "codacy") -> set[str]:
    """Every id the emulator's entries must arrive under."""
    return {VENDORS[vendor].key(entry) for entry in emulator.entries()}


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


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=30, options={"orgs": ORGS, "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


@pytest.fixture
def vendor_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """All four vendor emulators, 30 entries each to begin with."""
    started: dict[str, EmulatorProcess] = {}
    try:
        for name, vendor in VENDORS.items():
            started[name] = running(name, entries=30, options=vendor.options)
        yield started
    finally:
        for emulator in started.values():
            emulator.stop()


class LoggedDaemon:
    """``audit-forwarder run`` with its logs in a file: a pipe nobody reads would fill up and
    block the daemon in a long test."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "forwarder", "-c", str(config), "run"],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **(env or {})},
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as systemd would; returns the exit code (0 is a clean shutdown)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError("daemon did not stop within its shutdown timeout") from None
        return int(self.process.returncode)

    def kill(self) -> None:
        """For ``finally`` blocks: a test that failed mid-way must not leave the daemon running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def crashed(self) -> bool:
        """Died on its own, or logged an unhandled exception's traceback."""
        return self.process.poll() is not None or "Traceback" in self.logs()
