"""Ctrl-C (SIGINT) at an operator command, through the real CLI: the command says it was
interrupted and exits 130, and a question it was asking is abandoned at once.

An interrupted ``dlq replay`` exited 0 without a word (as if every dead letter had been
delivered), an interrupted ``preview`` died with a ``TypeError`` traceback, and Ctrl-C at
``dlq purge``'s question did nothing until the operator answered it, then exited 0."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.config import codacy_files_config as make_config
from tests.support.config import json_of
from tests.support.daemon import cli, write_config
from tests.support.emulators import EmulatorProcess

HANG_GUARD_S = 60  # only against a hang: every wait below ends on an event, not a clock


class SilentServer:
    """A loopback listener that reads each request and never answers: whatever asks it waits."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.asked = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)
            if connection.recv(65536):
                self.asked.set()

    def close(self) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def command(cfg: Path, *args: str) -> subprocess.Popen[str]:
    """The real command, with Ctrl-C's default meaning even if the test runner ignores SIGINT
    (a background job's children inherit that)."""
    return subprocess.Popen(
        [sys.executable, "-m", "forwarder", "-c", str(cfg), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupted(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("Ctrl-C did not end the command") from None
    return process.returncode, out, err


def dead_letters(tmp_path: Path, codacy: EmulatorProcess) -> Path:
    """40 dead letters of the file sink ``out`` (a file where its directory should be)."""
    cfg = make_config(tmp_path, codacy.url, retry={"initial_backoff_s": 0.05, "max_backoff_s": 0.1, "max_attempts": 1})
    (tmp_path / "out").write_text("not a directory")
    assert cli(cfg, "once").returncode == 1
    assert len(json_of(cfg, "dlq", "list")) == 40
    return cfg


def test_an_interrupted_replay_says_so_exits_130_and_keeps_the_dead_letters(
    tmp_path: Path, codacy: EmulatorProcess, silent: SilentServer
) -> None:
    cfg = dead_letters(tmp_path, codacy)
    config = yaml.safe_load(cfg.read_text())
    config["sinks"]["out"] = {"type": "splunk_hec", "url": silent.url, "token": "hec-test-token"}
    write_config(cfg, config)
    replay = command(cfg, "dlq", "replay")
    assert silent.asked.wait(HANG_GUARD_S), "the replay never reached the receiver"
    code, out, err = interrupted(replay)
    assert code == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err, err
    assert "replayed" not in out, out
    assert len(json_of(cfg, "dlq", "list")) == 40  # none confirmed, none deleted


def test_an_interrupted_preview_says_so_without_a_traceback(
    tmp_path: Path, codacy: EmulatorProcess, silent: SilentServer
) -> None:
    cfg = make_config(tmp_path, codacy.url, source={"base_url": f"{silent.url}/api/v3"})
    preview = command(cfg, "preview", "--source", "codacy")
    assert silent.asked.wait(HANG_GUARD_S), "preview never asked the vendor"
    code, out, err = interrupted(preview)
    assert code == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err, err


def test_ctrl_c_at_the_purge_question_aborts_at_once_and_purges_nothing(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    cfg = dead_letters(tmp_path, codacy)
    purge = command(cfg, "dlq", "purge")
    assert purge.stdout is not None
    asked = ""
    deadline = time.monotonic() + HANG_GUARD_S
    while "[y/N]" not in asked and time.monotonic() < deadline:
        ready, _, _ = select.select([purge.stdout], [], [], 1)
        if ready:
            chunk = os.read(purge.stdout.fileno(), 4096).decode()
            assert chunk, "purge ended without asking"
            asked += chunk
    assert "delete 40 dead letter(s) for good?" in asked, asked
    code, _, err = interrupted(purge)
    assert code == 1 and "Aborted!" in err, (code, err)
    assert len(json_of(cfg, "dlq", "list")) == 40
