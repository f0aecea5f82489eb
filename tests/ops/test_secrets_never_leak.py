"""No configured secret ever reaches an output: the daemon runs (``once`` and ``run``) with
every source and sink failing (refused credentials, 503s, a missing bucket, a closed port,
an unwritable path), and every byte it produced is searched for every secret."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess, cli, daemon, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.health import get, unready
from tests.support.moto_server import MotoServer
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

GOOD_CODACY = "codacy-test-token"  # the emulator's: accepted, but the API answers 503
WRONG_CODACY = "codacy-WRONG-token-7f3a9c51"
WRONG_HEC = "hec-WRONG-token-91bd44e0"
AWS_SECRET = "aws-SECRET-0e5d2c77b1f94a"
SECRETS = [GOOD_CODACY, WRONG_CODACY, WRONG_HEC, AWS_SECRET]


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=5, options={"orgs": ["gh/acme", "gl/globex"], "span_s": 86400})
    emulator.control("POST", "faults", [{"status": 503, "count": 100_000, "path_contains": "globex"}])
    yield emulator
    emulator.stop()


@pytest.fixture
def hec() -> Iterator[EmulatorProcess]:
    emulator = running("splunk_hec")
    yield emulator
    emulator.stop()


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def forms(secret: str) -> list[str]:
    """The secret as it could appear: raw, or base64 as in a Basic authorization header."""
    return [secret, base64.b64encode(secret.encode()).decode(), base64.b64encode(f"x:{secret}".encode()).decode()]


def config(tmp_path: Path, codacy: str, hec: str, moto: str, port: int) -> Path:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the sink wants a directory\n")
    source: dict[str, Any] = {
        "type": "codacy",
        "base_url": f"{codacy}/api/v3",
        "initial_lookback_days": 7,
        "lag_s": 0,
        "interval_s": 0.5,
        "jitter_s": 0,
        "max_attempts": 2,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.05,
    }
    batch = {"batch_max_age_s": 0.05}
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "retry": {"initial_backoff_s": 0.02, "max_backoff_s": 0.05, "max_attempts": 2},
            "metrics": {"listen": f"127.0.0.1:{port}", "source_failing_threshold_s": 0.1},
            "sources": {
                "refused": {**source, "api_token": WRONG_CODACY, "organizations": ["gh/acme"]},
                "unavailable": {**source, "api_token": GOOD_CODACY, "organizations": ["gh/acme", "gl/globex"]},
            },
            "sinks": {
                "hec": {"type": "splunk_hec", "url": hec, "token": WRONG_HEC, **batch},
                "s3": {
                    "type": "s3",
                    "bucket": "no-such-bucket",
                    "endpoint_url": moto,
                    "force_path_style": True,
                    **batch,
                },
                "syslog": {
                    "type": "syslog",
                    "host": "127.0.0.1",
                    "port": closed_port(),
                    "transport": "tcp",
                    "connect_timeout_s": 1,
                    **batch,
                },
                "file": {"type": "file", "path": str(blocker / "{organization}.ndjson"), **batch},
            },
        },
    )


def contains(proc: DaemonProcess, text: str) -> bool:
    return text in proc.log()


def scan(texts: dict[str, str]) -> list[str]:
    return [
        f"{secret!r} (as {form!r}) in {where}"
        for where, text in texts.items()
        for secret in SECRETS
        for form in forms(secret)
        if form in text
    ]


def files_under(path: Path, skip: Path) -> dict[str, str]:
    return {
        str(p): p.read_bytes().decode("latin-1")
        for p in path.rglob("*")
        if p.is_file() and p != skip and not p.name.endswith(".sock")
    }


def test_no_secret_reaches_logs_metrics_health_files_or_state_show(
    tmp_path: Path, codacy: EmulatorProcess, hec: EmulatorProcess, moto: MotoServer
) -> None:
    port = free_port()
    cfg = config(tmp_path, codacy.url, hec.url, moto.endpoint_url, port)
    env = {"AWS_ACCESS_KEY_ID": "AKIATESTING", "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
    outputs: dict[str, str] = {}

    once = cli(cfg, "--log-level", "debug", "once", "--timeout", "20", env=env, timeout=60)
    assert once.returncode == 1, once.stderr  # everything failed, and it says so
    outputs.update({"once stdout": once.stdout, "once stderr": once.stderr})
    # the failures were really exercised, or this test would prove nothing
    for expected in (
        "credentials were refused",
        "503 Service Unavailable",
        "Invalid token",
        "NoSuchBucket",
        '"sink":"syslog"',
        '"sink":"file"',
    ):
        assert expected in once.stderr, f"{expected!r} not in the log:\n{once.stderr[-3000:]}"

    with daemon(cfg, "--log-level", "debug", "run", env=env) as proc:
        status, _ = wait_until("readyz to report the failures", lambda: unready(port))
        assert status == 503
        codacy.control("POST", "entries", {"generate": 3, "orgs": ["gh/acme"], "span_s": 1})
        for sink in ("hec", "s3", "syslog", "file"):
            marker = f'"sink":"{sink}"'
            wait_until(f"sink {sink} to fail", partial(contains, proc, marker))
        for path in ("/metrics", "/healthz", "/readyz"):
            outputs[path] = get(f"http://127.0.0.1:{port}{path}").text
        assert "refused" in outputs["/readyz"] and "audit_forwarder_sink_stopped" in outputs["/metrics"]
    outputs["run output"] = proc.log()

    for output in ("table", "json"):
        shown = cli(cfg, "state", "show", "--output", output, env=env)
        assert shown.returncode == 0, shown.stderr
        outputs[f"state show {output}"] = shown.stdout + shown.stderr
    outputs.update(files_under(tmp_path, skip=cfg))

    assert len(outputs) > 8
    leaks = scan(outputs)
    assert not leaks, "\n".join(leaks)


def test_the_scan_itself_finds_a_secret(tmp_path: Path) -> None:
    """Guards the test above against a scan that cannot fail."""
    assert scan({"x": f"Authorization: Splunk {WRONG_HEC}"})
    assert scan({"x": base64.b64encode(f"x:{WRONG_HEC}".encode()).decode()})
    assert not scan({"x": "nothing to see"})
    # the redaction processor, end to end in a child process: a secret in an exception is masked
    code = (
        "from forwarder.logs import configure_logging\n"
        "from forwarder.redaction import register_secrets\n"
        "import structlog\n"
        f"register_secrets({{{WRONG_HEC!r}}})\n"
        "configure_logging('info', 'json')\n"
        f"structlog.get_logger().error('boom', error=RuntimeError('token {WRONG_HEC} refused'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env={**os.environ}
    )
    assert "boom" in result.stderr and "***" in result.stderr
    assert not scan({"stderr": result.stderr})
