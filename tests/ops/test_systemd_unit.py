"""The systemd unit (checked by systemd-analyze itself) and sd_notify (over a real socket)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forwarder import systemd
from tests.support.daemon import daemon, write_config
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_until

UNIT = REPO_ROOT / "systemd" / "audit-forwarder.service"
MAX_EXPOSURE = 2.0


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's entry point, which verify needs to exist."""
    executable = shutil.which("audit-forwarder", path=str(Path(sys.executable).parent))
    assert executable, "the audit-forwarder entry point is not installed in the virtualenv"
    text = UNIT.read_text().replace("/usr/local/bin/audit-forwarder", executable)
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_unit_passes_systemd_analyze_verify(unit: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_unit_sandboxing_exposure_is_at_most_2(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout


def test_unit_declares_notify_watchdog_and_dynamic_user() -> None:
    found = directives(UNIT.read_text())
    assert found["Type"] == ["notify"]
    assert found["WatchdogSec"] and found["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert found["DynamicUser"] == ["yes"] and found["StateDirectory"] == ["audit-forwarder"]
    assert found["ConfigurationDirectory"] == ["audit-forwarder"]
    assert found["ProtectSystem"] == ["strict"] and found["NoNewPrivileges"] == ["yes"]
    assert "#LoadCredential=codacy_token:" in UNIT.read_text()


def test_unit_keeps_state_private_and_dumps_no_core() -> None:
    """The journal holds unredacted events and memory holds tokens: a 0700 state directory, no
    core dump (which would write that memory to disk for systemd-coredump)."""
    found = directives(UNIT.read_text())
    assert found["StateDirectoryMode"] == ["0700"]
    assert found["LimitCORE"] == ["0"]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def test_notify_sends_datagrams_to_notify_socket(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert systemd.notify("READY=1", "STATUS=hello") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=hello"
    monkeypatch.setenv("NOTIFY_SOCKET", path + ".missing")
    assert systemd.notify("WATCHDOG=1") is False


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"audit-forwarder-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_watchdog_interval_is_half_the_timeout_and_only_for_our_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert systemd.watchdog_interval() is None


def test_daemon_reports_ready_watchdog_reload_and_stop(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    out = tmp_path / "out" / "{organization}.ndjson"
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "metrics": {"enabled": False},
            "sinks": {"out": {"type": "file", "path": str(out)}},
        },
    )
    with daemon(cfg, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}) as proc:
        messages: list[str] = []

        def received(prefix: str) -> bool:
            while not any(m.startswith(prefix) for m in messages):
                messages.append(sock.recv(4096).decode())
            return True

        assert received("READY=1"), proc.log()
        assert "STATUS=0 sources, 1 sinks" in next(m for m in messages if m.startswith("READY=1"))
        assert wait_until("watchdog pings", lambda: received("WATCHDOG=1") and messages.count("WATCHDOG=1") >= 1)
        messages.clear()
        proc.signal(signal.SIGHUP)
        assert received("RELOADING=1")
        assert re.search(r"MONOTONIC_USEC=\d+", next(m for m in messages if m.startswith("RELOADING=1")))
        assert received("READY=1")
        proc.signal(signal.SIGTERM)
        assert received("STOPPING=1")
        assert proc.process.wait(timeout=20) == 0, proc.log()
