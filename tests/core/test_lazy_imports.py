"""What a command does not need, it does not import (issue 24: "a sink or library that is not
configured is not imported"; docs/performance.md, round 8).

Each check runs the real command line in its own process, through a small launcher that lists
the process's top-level modules on stderr at interpreter exit (``atexit`` runs after click's
``SystemExit`` and after the daemon's SIGTERM shutdown). No timing is asserted: the start-up
figures are the benchmark's (``bench.startup``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from forwarder.emulators.codacy import CodacyEmulator
from forwarder.event_schema import SCHEMA_FILE, rendered
from tests.support.daemon import read_ndjson, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.moto_server import MotoServer, moto_server  # noqa: F401

HEAVY = ("boto3", "botocore", "httpx", "pyarrow", "psycopg", "apscheduler", "prometheus_client")
NOT_CONFIGURED = ("boto3", "botocore", "pyarrow", "psycopg", "cryptography")  # a file sink and a Codacy source
MARK = "LOADED-MODULES "

LAUNCHER = f"""
import atexit, sys
atexit.register(lambda: print({MARK!r} + " ".join(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["audit-forwarder", *sys.argv[1:]]
from forwarder.cli import main
main()
"""


def launch(*args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
        **popen,
    )


def loaded(stderr: str) -> set[str]:
    """Every module's name and every top-level package's."""
    lines = [line for line in stderr.splitlines() if line.startswith(MARK)]
    assert lines, f"the launcher printed no module list:\n{stderr[-3000:]}"
    names = set(lines[-1].removeprefix(MARK).split())
    return names | {name.split(".")[0] for name in names}


def run_to_end(*args: str) -> tuple[str, set[str]]:
    proc = launch(*args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return out, loaded(err)


@pytest.mark.parametrize("args", [("--help",), ("schema",), ("state", "--help"), ("run", "--help")])
def test_help_and_schema_import_no_settings_client_or_sink(args: tuple[str, ...]) -> None:
    out, modules = run_to_end(*args)
    assert out.strip()
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))
    assert "forwarder.cli" in modules  # the launcher does see what the command used
    assert modules.isdisjoint({"forwarder.settings", "sinks", "pydantic", "yaml"})


def test_schema_prints_the_models_schema() -> None:
    """``schema`` prints the shipped file; it must be exactly what the model gives."""
    out, _ = run_to_end("schema")
    assert out == rendered() == SCHEMA_FILE.read_text(encoding="utf-8")
    assert orjson.loads(out)["properties"]["schema_version"]["const"] == "1.0"


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=30, options={"orgs": ["gh/acme"], "span_s": 86400})
    yield emulator
    emulator.stop()


def file_only(tmp_path: Path, url: str) -> Path:
    source = {
        "type": "codacy",
        "base_url": f"{url}/api/v3",
        "api_token": CodacyEmulator().token,
        "organizations": ["gh/acme"],
        "initial_lookback_days": 2,
        "lag_s": 0,
        "interval_s": 60,
    }
    sink = {"type": "file", "path": str(tmp_path / "out" / "events.ndjson"), "batch_max_age_s": 0.05}
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "metrics": {"listen": "127.0.0.1:0"},
            "sources": {"codacy": source},
            "sinks": {"out": sink},
        },
    )


def test_once_with_a_file_sink_imports_no_other_sinks_library(tmp_path: Path, codacy: EmulatorProcess) -> None:
    _, modules = run_to_end("-c", str(file_only(tmp_path, codacy.url)), "once", "--timeout", "60")
    assert len(read_ndjson(tmp_path / "out")) == 30
    assert modules.isdisjoint(NOT_CONFIGURED), sorted(modules & set(NOT_CONFIGURED))
    assert "httpx" in modules  # the launcher does see what the run used


def test_once_counts_no_metrics_and_loads_no_prometheus_client(tmp_path: Path, codacy: EmulatorProcess) -> None:
    """``once`` serves no /metrics (even with ``metrics.listen`` set, as here): what it would
    count nobody could read, and prometheus-client with its registry cost ~1 MB of a drain's
    RSS. ``run`` does load it (``test_daemon_with_a_file_sink_imports_no_other_sinks_library``)
    and counts from its first poll (tests/ops/test_metrics_health.py)."""
    _, modules = run_to_end("-c", str(file_only(tmp_path, codacy.url)), "once", "--timeout", "60")
    assert len(read_ndjson(tmp_path / "out")) == 30
    assert "forwarder.metrics" in modules  # the poller and the fetcher did report to it
    assert not {"prometheus_client", "forwarder.metrics_registry"} & modules


TERMINAL_ONLY = ("rich", "pygments", "attr")  # tables on a terminal, backfill's progress (rich.pretty loads attr)


def test_once_and_state_show_into_a_pipe_load_no_rich(tmp_path: Path, codacy: EmulatorProcess) -> None:
    """structlog and httpx load rich whenever it is installed (~27 ms, ~5 MB) for features we never
    use; forwarder.import_guard hides it from them, and the tools import it only to draw on a
    terminal (docs/performance.md, round 11)."""
    config = str(file_only(tmp_path, codacy.url))
    _, modules = run_to_end("-c", config, "once", "--timeout", "60")
    assert len(read_ndjson(tmp_path / "out")) == 30
    assert modules.isdisjoint(TERMINAL_ONLY), sorted(modules & set(TERMINAL_ONLY))
    out, modules = run_to_end("-c", config, "state", "show")
    assert out.startswith("State ") and "\ncodacy\tgh/acme\t" in out and "\nout\t30\t0\t" in out
    assert modules.isdisjoint(TERMINAL_ONLY), sorted(modules & set(TERMINAL_ONLY))
    assert {"structlog", "httpx", "forwarder.tools.common"} <= modules  # the listing is real


def test_daemon_with_a_file_sink_imports_no_other_sinks_library(tmp_path: Path, codacy: EmulatorProcess) -> None:
    daemon = launch("-c", str(file_only(tmp_path, codacy.url)), "run")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(read_ndjson(tmp_path / "out")) < 30 and daemon.poll() is None:
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-3000:]
    assert len(read_ndjson(tmp_path / "out")) == 30
    modules = loaded(err)
    assert modules.isdisjoint(NOT_CONFIGURED), sorted(modules & set(NOT_CONFIGURED))
    assert {"apscheduler", "prometheus_client"} <= modules  # what `run` does use is there


def test_once_with_an_s3_sink_builds_its_client_without_boto3(
    tmp_path: Path,
    codacy: EmulatorProcess,
    moto_server: MotoServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore's own session makes the S3 client: boto3's resource layer and s3transfer, which
    the sink never uses, cost 2.2 MB of the daemon's peak RSS (docs/performance.md, round 10)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIATESTING",
        "AWS_SECRET_ACCESS_KEY": "dummy-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    import boto3

    bucket = "lazy-imports"
    boto3.client("s3", endpoint_url=moto_server.endpoint_url).create_bucket(Bucket=bucket)
    config = file_only(tmp_path, codacy.url)
    settings = yaml.safe_load(config.read_text())
    settings["sinks"] = {
        "archive": {
            "type": "s3",
            "bucket": bucket,
            "endpoint_url": moto_server.endpoint_url,
            "force_path_style": True,
            "batch_max_age_s": 0.05,
        }
    }
    write_config(config, settings)
    _, modules = run_to_end("-c", str(config), "once", "--timeout", "60")
    listed = boto3.client("s3", endpoint_url=moto_server.endpoint_url).list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount", 0) >= 1  # the events were stored through the client
    assert "botocore" in modules
    assert modules.isdisjoint({"boto3", "s3transfer"}), sorted(modules & {"boto3", "s3transfer"})
