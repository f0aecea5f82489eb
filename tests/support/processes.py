"""Stopping the programs the tests start, one way for all of them."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def stop_process(process: subprocess.Popen[Any], timeout: float = 20.0) -> int | None:
    """SIGTERM, as systemd sends it; SIGKILL if the process is still running after ``timeout``.

    Returns the exit code of a process that stopped by itself, None if it had to be killed
    (a test that needs a clean shutdown asserts on that)."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process(process)
        return None


def kill_process(process: subprocess.Popen[Any]) -> None:
    """SIGKILL and reap: for receivers whose shutdown a test does not examine, and for
    ``finally`` blocks after a failure."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
