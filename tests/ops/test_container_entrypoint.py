"""The image's entry point and HEALTHCHECK, without a Docker engine: the Dockerfile's own
ENV, USER, ENTRYPOINT/CMD and HEALTHCHECK are read from the file and run as an unprivileged
user, with the image's paths mapped into a temporary root."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.daemon import daemon, read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.health import health
from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DOCKERFILE = REPO_ROOT / "Dockerfile"
NOBODY = 65534
ORGS = ["gh/acme"]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) of the final stage, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages = text.split("\nFROM ")
    found = []
    for line in stages[-1].splitlines()[1:]:
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def exec_form(keyword: str) -> list[str]:
    rest = next(r for k, r in instructions() if k == keyword)
    if keyword == "HEALTHCHECK":
        rest = rest.split(" CMD ", 1)[1]
    value: list[str] = json.loads(rest)
    return value


@pytest.fixture
def root() -> Iterator[Path]:
    """A stand-in for the image's file system that the unprivileged user can reach
    (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="af-image-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=15, options={"orgs": ORGS, "span_s": 86400})
    yield emulator
    emulator.stop()


def as_image(root: Path, env: dict[str, str], port: int) -> dict[str, str]:
    """The image's environment with its absolute paths moved under ``root`` and the metrics
    endpoint on loopback (tests never listen on other addresses)."""
    mapped = {}
    for key, value in env.items():
        if value.startswith(("/etc/", "/var/")):
            value = str(root) + value
        mapped[key] = value
    mapped["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the image's /opt/venv/bin
    mapped["AUDIT_FORWARDER_METRICS__LISTEN"] = f"127.0.0.1:{port}"
    mapped["HOME"] = str(root)
    return mapped


def unprivileged(command: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def test_dockerfile_is_multi_stage_non_root_with_a_state_volume_and_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    keywords = dict(instructions())
    assert keywords["USER"].split(":")[0] not in ("root", "0")
    assert json.loads(keywords["VOLUME"]) == ["/var/lib/audit-forwarder"]
    assert exec_form("ENTRYPOINT") + exec_form("CMD") == ["audit-forwarder", "run"]
    assert exec_form("HEALTHCHECK")[:2] == ["python", "-c"] and "/healthz" in exec_form("HEALTHCHECK")[2]
    assert "curl" not in text and "apt-get" not in text


def test_entrypoint_runs_unprivileged_and_healthcheck_passes(root: Path, codacy: EmulatorProcess) -> None:
    env = image_env()
    port = free_port()
    run_env = as_image(root, env, port)
    run_env["CODACY_TOKEN"] = "codacy-test-token"  # given with -e; the mounted YAML refers to it
    config = Path(run_env["AUDIT_FORWARDER_CONFIG"])
    state = Path(run_env["AUDIT_FORWARDER_STATE_DIR"])
    config.parent.mkdir(parents=True)
    state.mkdir(parents=True, mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    mounted: dict[str, Any] = {
        "sources": {
            "codacy": {
                "type": "codacy",
                "base_url": f"{codacy.url}/api/v3",
                "api_token": "${CODACY_TOKEN}",
                "organizations": ORGS,
                "initial_lookback_days": 7,
                "lag_s": 0,
            }
        },
        "sinks": {
            "out": {"type": "file", "path": str(state / "out" / "{organization}.ndjson"), "batch_max_age_s": 0.05}
        },
    }
    config.write_text(yaml.safe_dump(mounted))
    config.chmod(0o644)
    healthcheck = unprivileged(exec_form("HEALTHCHECK"))
    command = unprivileged(exec_form("ENTRYPOINT") + exec_form("CMD"))
    with daemon(config, cmd=command, env=run_env) as proc:
        wait_until("the events", lambda: len(read_ndjson(state / "out")) == 15 or None)
        assert health(port, "/readyz")[0] == 200, proc.log()
        uid_line = next(
            line
            for line in Path(f"/proc/{proc.process.pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uid_line.split()[1:] == [str(NOBODY)] * 4
        assert (state / "journal.sqlite3").stat().st_uid == NOBODY
        result = subprocess.run(healthcheck, env=run_env, capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert '"level"' in proc.log()  # AUDIT_FORWARDER_LOG__FORMAT=json from the image
    assert proc.process.returncode == 0, proc.log()
    # with the daemon gone, the very same check fails: it really asks the daemon
    result = subprocess.run(healthcheck, env=run_env, capture_output=True, timeout=30)
    assert result.returncode != 0
