"""Start a vendor emulator (or receiver) in its own process on 127.0.0.1, as tests must."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support.processes import REPO_ROOT, kill_process


class EmulatorProcess:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def control(self, method: str, what: str, payload: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_control/{what}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def entries(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "entries")
        return result

    def stop(self) -> None:
        stop_emulator(self.process)


START_TIMEOUT_S = 15.0


def start_emulator(
    name: str, entries: int = 0, options: dict[str, Any] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Returns the process and its base URL; the caller stops it (``stop_emulator``, ``running``).

    The emulator prints ``LISTENING <url>`` before serving; a process that dies or stays
    silent fails the test with its stderr instead of hanging it.
    """
    cmd = [sys.executable, "-m", "forwarder.emulators", name, "--port", "0", "--entries", str(entries)]
    if options:
        cmd += ["--options", json.dumps(options)]
    with tempfile.TemporaryFile() as stderr:  # the child keeps its own descriptor
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
        line = process.stdout.readline().strip() if ready else ""
        if not line.startswith("LISTENING "):
            stop_emulator(process)
            stderr.seek(0)
            detail = stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"emulator {name} did not start: {line!r}\n{detail}")
    return process, line.split(" ", 1)[1]


def stop_emulator(process: subprocess.Popen[str]) -> None:
    kill_process(process)
    if process.stdout is not None:
        process.stdout.close()


def running(name: str, entries: int = 0, options: dict[str, Any] | None = None) -> EmulatorProcess:
    process, url = start_emulator(name, entries, options)
    return EmulatorProcess(process, url)


@contextmanager
def running_all(entries: int, options: Mapping[str, dict[str, Any]]) -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator per name of ``options`` (with those options), each serving ``entries`` to
    begin with; all stopped at the end, also when one of them failed to start."""
    started: dict[str, EmulatorProcess] = {}
    try:
        for name, opts in options.items():
            started[name] = running(name, entries=entries, options=opts)
        yield started
    finally:
        for emulator in started.values():
            emulator.stop()
