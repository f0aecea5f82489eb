"""Shared by the operations tests: the real daemon process with its output in files, free
ports, and plain HTTP to its health endpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5)


def health(port: int, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
    response = get(f"http://127.0.0.1:{port}{path}")
    return response.status_code, orjson.loads(response.content)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        rest = series[len(name) :]
        if rest and not rest.startswith("{"):
            continue
        found = dict(part.split("=", 1) for part in rest.strip("{}").split(",") if "=" in part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None


class DaemonProcess:
    def __init__(self, process: subprocess.Popen[bytes], output: Path) -> None:
        self.process = process
        self.output = output

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)


@contextmanager
def daemon(
    config: Path, *args: str, env: dict[str, str] | None = None, cmd: list[str] | None = None
) -> Iterator[DaemonProcess]:
    """``audit-forwarder -c CONFIG run`` with stdout and stderr in a file (a pipe nobody reads
    would fill and block the daemon), stopped with SIGTERM, then SIGKILL, at the end."""
    output = config.parent / f"daemon-{time.monotonic_ns()}.log"
    command = cmd or [sys.executable, "-m", "forwarder", "-c", str(config), *(args or ("run",))]
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env={**os.environ, **(env or {})}
        )
    try:
        yield DaemonProcess(process, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def unready(port: int) -> tuple[int, dict[str, Any]] | None:
    """For ``wait_for``: the /readyz answer once it is 503."""
    answer = health(port, "/readyz")
    return answer if answer[0] == 503 else None
