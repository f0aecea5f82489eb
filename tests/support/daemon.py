"""Run the real ``audit-forwarder`` command in its own process, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.processes import REPO_ROOT, kill_process, stop_process


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def cli(
    config: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "forwarder", "-c", str(config), *(args or ("run",))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


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


class DaemonProcess:
    """``audit-forwarder run`` (or ``cmd``) with stdout and stderr in a file: a pipe nobody
    reads would fill up and block the daemon in a long test."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        cmd: list[str] | None = None,
    ) -> None:
        self.log_path = log_path
        command = cmd or [sys.executable, "-m", "forwarder", "-c", str(config), *(args or ("run",))]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env={**os.environ, **(env or {})}
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as systemd would; returns the exit code (0 is a clean shutdown)."""
        code = stop_process(self.process, timeout)
        if code is None:
            raise AssertionError("daemon did not stop within its shutdown timeout")
        return code

    def kill(self) -> None:
        """For ``finally`` blocks: a test that failed mid-way must not leave the daemon running."""
        kill_process(self.process)

    def crashed(self) -> bool:
        """Died on its own, or logged an unhandled exception's traceback."""
        return self.process.poll() is not None or "Traceback" in self.log()


@contextmanager
def daemon(
    config: Path, *args: str, env: dict[str, str] | None = None, cmd: list[str] | None = None
) -> Iterator[DaemonProcess]:
    """A ``DaemonProcess`` whose log sits beside ``config``, stopped (SIGTERM, then SIGKILL)
    when the block ends."""
    process = DaemonProcess(config, config.parent / f"daemon-{time.monotonic_ns()}.log", *args, env=env, cmd=cmd)
    try:
        yield process
    finally:
        stop_process(process.process)
