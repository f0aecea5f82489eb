"""The real daemon, a SIGKILL and an S3 outage, then ``verify``: the untouched output of the file
and S3 sinks passes, every stream's chain runs from seq 1 without a hole or a seq used twice
(duplicates, allowed, are the same link), and every vendor entry arrived."""

from __future__ import annotations

import gzip
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from forwarder.evidence.keys import generate
from tests.support.config import make_config
from tests.support.daemon import DaemonProcess, cli
from tests.support.emulators import EmulatorProcess, running
from tests.support.moto_server import MotoServer
from tests.support.receivers import AWS_ENV
from tests.support.vendors import ORGS, codacy_source, expected_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=30, options={"orgs": ORGS, "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


def verify(*args: str) -> dict[str, Any]:
    result = cli(Path("/dev/null"), "verify", *args, "--output", "json", env=AWS_ENV)
    report: dict[str, Any] = orjson.loads(result.stdout)
    assert result.returncode == 0, report
    return report


def test_verify_passes_after_a_sigkill_and_an_s3_outage(
    tmp_path: Path, codacy: EmulatorProcess, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = tmp_path / "evidence.key", tmp_path / "evidence.pub"
    generate(private, public)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1").create_bucket(Bucket="audit")
    evidence = {"signing_key_file": str(private), "digest_interval_s": 0.5}
    out = tmp_path / "out"
    sinks = {
        "file": {
            "type": "file",
            "path": str(out / "{organization}.ndjson"),
            "batch_max_age_s": 0.05,
            "rotate_max_bytes": 6000,
            "evidence": evidence,
        },
        "s3": {
            "type": "s3",
            "bucket": "audit",
            "endpoint_url": moto.endpoint_url,
            "force_path_style": True,
            "batch_max_age_s": 0.2,
            "batch_max_events": 20,
            "timeout_s": 2,
            "evidence": evidence,
        },
    }
    cfg = make_config(tmp_path, codacy_source(codacy.url), sinks)
    digests = out / "_digests"

    first = DaemonProcess(cfg, tmp_path / "first.log", env=AWS_ENV)
    try:
        wait_until("two digests", lambda: digests.is_dir() and len(list(digests.iterdir())) >= 2, detail=first.log)
        codacy.control("POST", "entries", {"generate": 20, "span_s": 5, "orgs": ORGS})
        time.sleep(0.7)
    finally:
        os.kill(first.pid, signal.SIGKILL)  # mid-run: pages, batches and digests in flight
        first.process.wait(timeout=30)

    assert moto._proc is not None
    os.kill(moto._proc.pid, signal.SIGSTOP)  # S3 unreachable (its data kept) while the daemon runs again
    second = DaemonProcess(cfg, tmp_path / "second.log", env=AWS_ENV)
    try:
        codacy.control("POST", "entries", {"generate": 20, "span_s": 5, "orgs": ORGS})
        wait_until(
            "the outage felt by the S3 sink and its digests",
            lambda: "s3 sink s3" in second.log() and "cannot write a digest" in second.log(),
            detail=second.log,
        )
    finally:
        os.kill(moto._proc.pid, signal.SIGCONT)
    assert second.stop() == 0, second.log()[-3000:]
    final = cli(cfg, "once", "--timeout", "60", timeout=120, env=AWS_ENV)
    assert final.returncode == 0, final.stderr[-3000:]

    files = verify("files", str(out), "--public-key", str(public))
    s3 = verify(
        "s3",
        "--bucket",
        "audit",
        "--prefix",
        "audit/",
        "--endpoint-url",
        moto.endpoint_url,
        "--public-key",
        str(public),
    )
    want = len(expected_ids(codacy))
    streams = {f"codacy/{org}" for org in ORGS}
    for report in (files, s3):
        assert set(report["streams"]) == streams and report["pending"] == []
        assert sum(r["last"] for r in report["streams"].values()) >= want
        assert all(r["first"] == 1 for r in report["streams"].values())
    assert files["streams"] == s3["streams"]
    exported = sorted(str(p) for p in out.iterdir() if p.is_file())
    chains = verify("events", *exported, "--from-seq", "1")
    assert {s["stream"] for s in chains["streams"]} == streams
    ids = {orjson.loads(line)["id"] for p in exported for line in _lines(Path(p))}
    assert expected_ids(codacy) <= ids


def _lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return [line for line in data.splitlines() if line.strip()]
