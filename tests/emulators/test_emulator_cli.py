"""``python -m forwarder.emulators`` as an operator runs it: its help names the command to
type, and what it prints at start-up is a configuration entry that works as printed."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.support.emulators import REPO_ROOT, stop_emulator

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 15.0


def emulators_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "forwarder.emulators", *args]


def start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """The emulator and what it printed up to its last start-up line."""
    process = subprocess.Popen(
        emulators_cli(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    watchdog = threading.Timer(START_TIMEOUT_S, process.kill)  # a silent emulator must not hang the test
    watchdog.start()
    try:
        while not lines or not lines[-1].startswith("Stop it with"):
            line = process.stdout.readline()
            if not line:
                stop_emulator(process)
                raise AssertionError(f"emulator did not start: {lines!r}")
            lines.append(line.rstrip("\n"))
    finally:
        watchdog.cancel()
    return process, lines


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        stop_emulator(process)


def printed_entry(lines: list[str]) -> tuple[str, dict[str, Any]]:
    """("sources" or "sinks", the YAML entry) from the start-up lines."""
    assert lines[0].startswith("LISTENING http://127.0.0.1:"), lines
    section = lines[1].split("put this under ", 1)[1].split(":", 1)[0]
    entry = yaml.safe_load("\n".join(line for line in lines[2:] if line.startswith("  ")))
    return section, entry


def test_help_names_the_command_and_documents_the_options() -> None:
    result = subprocess.run(emulators_cli("--help"), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m forwarder.emulators ")
    assert "__main__" not in result.stdout
    assert "--entries" in result.stdout and "default: 100" in result.stdout
    assert "docs/emulators.md" in result.stdout


@pytest.mark.parametrize("vendor", ["codacy", "configcat", "codescoring", "codestax"])
def test_the_printed_entry_is_a_working_configuration(
    vendor: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """With no option but the name, the emulator serves entries (the default --entries) and the
    entry it prints, pasted into a configuration as is, lets the real CLI fetch them."""
    process, lines = start(vendor)
    processes.append(process)
    section, entry = printed_entry(lines)
    assert section == "sources" and list(entry) == [vendor], lines
    url = lines[0].split(" ", 1)[1]
    assert entry[vendor]["base_url"].startswith(url)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "sources": {
                    name: {**settings, "initial_lookback_days": 7, "lag_s": 0} for name, settings in entry.items()
                },
                "sinks": {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forwarder",
            "-c",
            str(config),
            "preview",
            "--source",
            vendor,
            "--limit",
            "5",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    events = orjson.loads(result.stdout)
    assert len(events) == 5 and {e["vendor"] for e in events} == {vendor}


def test_the_printed_credentials_are_the_ones_the_emulator_checks(processes: list[subprocess.Popen[str]]) -> None:
    """One page fetched by hand with the printed token; a different token is refused."""
    process, lines = start("codacy", "--entries", "7", "--org", "gl/globex")
    processes.append(process)
    _, entry = printed_entry(lines)
    settings = entry["codacy"]
    assert settings["organizations"] == ["gl/globex"] and "7 entries per organization" in lines[1]
    page = f"{settings['base_url']}/organizations/gl/globex/audit"
    response = httpx.get(page, headers={"api-token": settings["api_token"]}, timeout=10)
    assert response.status_code == 200 and len(response.json()) == 7, response.text
    assert httpx.get(page, headers={"api-token": "wrong"}, timeout=10).status_code == 401


def test_the_hec_receiver_prints_a_sink_entry(processes: list[subprocess.Popen[str]]) -> None:
    process, lines = start("splunk_hec")
    processes.append(process)
    section, entry = printed_entry(lines)
    assert section == "sinks" and entry["splunk"]["type"] == "splunk_hec"
    response = httpx.post(
        f"{entry['splunk']['url']}/services/collector/event",
        headers={"Authorization": f"Splunk {entry['splunk']['token']}"},
        content=b'{"event": {"n": 1}}',
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["code"] == 0, response.text


def test_bad_options_are_a_usage_error_not_a_traceback() -> None:
    result = subprocess.run(
        emulators_cli("configcat", "--org", "not-a-uuid"), capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "UUID" in result.stderr
