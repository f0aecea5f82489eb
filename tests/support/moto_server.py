"""moto's S3-compatible server as a real subprocess on loopback, for integration tests.

A subprocess rather than moto's in-process ``ThreadedMotoServer``: the code under test then
talks plain HTTP to another program, exactly as it would to S3, and a test can stop the
server to see what an outage looks like. Port 0 lets the OS pick a free port; moto prints
the one it got, so there is no race between finding a port and binding it.

Usage::

    with MotoServer() as moto:
        boto3.client("s3", endpoint_url=moto.endpoint_url, ...)

or the ``moto_server`` fixture (module-scoped; import it into the test module).
"""

from __future__ import annotations

import collections
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from types import TracebackType
from typing import NoReturn

import pytest

from tests.support.processes import stop_process

_LISTENING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")


class MotoServer:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        """``env`` adds to the server's environment, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT=0``
        to make moto check credentials."""
        self._extra_env = env or {}
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=50)
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> MotoServer:
        env = {**os.environ, **self._extra_env, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        # Drain output for the server's whole life: werkzeug logs every request, and a full
        # pipe would block the server.
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self.port:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._fail("did not report its port")
            if match := _LISTENING.search(line):
                self.port = int(match.group(1))
            elif not self.running:
                self._fail("exited during startup")
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline or not self.running:
                self._fail("never answered")
            time.sleep(0.05)

    def reset(self) -> None:
        """Forget every bucket and object (moto's own control endpoint)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_process(proc, 5)

    def _drain(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            self._tail.append(line.rstrip())
            if not self.port:
                self._lines.put(line)

    def _fail(self, what: str) -> NoReturn:
        self.stop()
        raise RuntimeError(f"moto server {what}; last output:\n" + "\n".join(self._tail))

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server
