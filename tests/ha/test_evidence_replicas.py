"""Signed digests with replicas: two real daemons on one real PostgreSQL state write an S3 sink
(moto's server) with evidence on. Only the holder of the sink's lease writes digests; the
replica that takes the sink over chains to the newest digest in the bucket and lists the
objects its predecessor stored after its last digest. ``verify`` then finds one chain and
nothing unlisted or missing, after a SIGKILL and after a SIGSTOP of the holder."""

from __future__ import annotations

import gzip
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from forwarder.evidence.keys import generate
from tests.support.daemon import DaemonProcess, cli, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.moto_server import MotoServer
from tests.support.postgres import PostgresServer
from tests.support.receivers import AWS_ENV
from tests.support.replicas import holders, state_config, stop_all
from tests.support.vendors import codacy_source, expected_ids
from tests.support.waiting import wait_until

ORGS = [f"gh/org{i}" for i in range(4)]
pytestmark = [pytest.mark.timeout(300), pytest.mark.integration]


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


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    return postgres.dsn(postgres.create_database())


class Bucket:
    def __init__(self, moto: MotoServer) -> None:
        self.endpoint = moto.endpoint_url
        self.client = boto3.client(
            "s3",
            endpoint_url=moto.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        self.client.create_bucket(Bucket="audit")

    def keys(self, prefix: str) -> list[str]:
        found = self.client.list_objects_v2(Bucket="audit", Prefix=prefix, MaxKeys=1000)
        return [item["Key"] for item in found.get("Contents", [])]

    def ids(self) -> set[str]:
        out = set()
        for key in self.keys("audit/"):
            body = gzip.decompress(self.client.get_object(Bucket="audit", Key=key)["Body"].read())
            out |= {orjson.loads(line)["id"] for line in body.splitlines() if line.strip()}
        return out


def replicas(tmp_path: Path, url: str, dsn: str, bucket: Bucket, interval_s: float) -> list[DaemonProcess]:
    private = tmp_path / "evidence.key"
    generate(private, tmp_path / "evidence.pub")
    daemons = []
    for name in ("a", "b"):
        config = {
            "state_dir": str(tmp_path / f"state-{name}"),
            "state": state_config(dsn, name),
            "shutdown_timeout_s": 5,
            "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.5},
            "sources": {"codacy": codacy_source(url, organizations=ORGS)},
            "sinks": {
                "s3": {
                    "type": "s3",
                    "bucket": "audit",
                    "endpoint_url": bucket.endpoint,
                    "force_path_style": True,
                    "batch_max_age_s": 0.2,
                    "batch_max_events": 10,
                    "timeout_s": 5,
                    "evidence": {"signing_key_file": str(private), "digest_interval_s": interval_s},
                }
            },
        }
        path = write_config(tmp_path / f"{name}.yaml", config)
        daemons.append(DaemonProcess(path, tmp_path / f"{name}.log", env=AWS_ENV))
    return daemons


def sink_holder(tmp_path: Path, daemons: list[DaemonProcess]) -> tuple[DaemonProcess, DaemonProcess]:
    wait_until("the sink's lease held", lambda: holders(tmp_path / "a.yaml").get("sink/s3") is not None, timeout=60)
    holder = holders(tmp_path / "a.yaml")["sink/s3"]
    return (daemons[0], daemons[1]) if holder == "a" else (daemons[1], daemons[0])


def took_over(tmp_path: Path, daemons: list[DaemonProcess], other: DaemonProcess) -> None:
    name = "a" if other is daemons[0] else "b"
    wait_until(
        "the other replica took the sink over",
        lambda: holders(tmp_path / "a.yaml").get("sink/s3") == name,
        timeout=60,
        detail=other.log,
    )


def verify(tmp_path: Path, bucket: Bucket) -> dict[str, Any]:
    result = cli(
        Path("/dev/null"), "verify", "s3", "--bucket", "audit", "--prefix", "audit/", "--endpoint-url",
        bucket.endpoint, "--public-key", str(tmp_path / "evidence.pub"), "--output", "json", env=AWS_ENV,
    )  # fmt: skip
    report: dict[str, Any] = orjson.loads(result.stdout)
    assert result.returncode == 0, [(f["kind"], f["detail"]) for f in report["findings"]]
    return report


def all_stored(bucket: Bucket, codacy: EmulatorProcess, daemons: list[DaemonProcess]) -> None:
    wanted = expected_ids(codacy)
    wait_until(
        "every entry stored in S3",
        lambda: wanted <= bucket.ids(),
        timeout=120,
        detail=lambda: "\n".join(d.log()[-3000:] for d in daemons),
    )


def checked(tmp_path: Path, bucket: Bucket, codacy: EmulatorProcess) -> None:
    report = verify(tmp_path, bucket)
    assert report["findings"] == [] and report["pending"] == [], report
    assert set(report["streams"]) == {f"codacy/{org}" for org in ORGS}
    assert all(r["first"] == 1 for r in report["streams"].values())
    assert expected_ids(codacy) <= bucket.ids()


def test_a_sigkilled_holders_last_objects_are_listed_by_the_next_holder(
    tmp_path: Path, codacy: EmulatorProcess, moto: MotoServer, dsn: str
) -> None:
    # no digest before the kill: every object the killed holder stored is in its ledger only
    bucket = Bucket(moto)
    daemons = replicas(tmp_path, codacy.url, dsn, bucket, interval_s=3600)
    try:
        all_stored(bucket, codacy, daemons)  # the state exists from then on
        holder, other = sink_holder(tmp_path, daemons)
        assert bucket.keys("audit-digests/") == []
        os.kill(holder.pid, signal.SIGKILL)
        holder.process.wait(timeout=30)
        took_over(tmp_path, daemons, other)
        codacy.control("POST", "entries", {"generate": 10, "orgs": ORGS, "span_s": 60})
        all_stored(bucket, codacy, [other])
        assert other.stop() == 0, other.log()[-3000:]
    finally:
        for d in daemons:
            d.kill()
    assert "Traceback" not in other.log()
    assert len(bucket.keys("audit-digests/")) == 1  # the survivor's last digest, the chain's first
    checked(tmp_path, bucket, codacy)
    assert "objects stored by the lease's previous holder" in other.log()


def test_a_paused_holder_writes_no_digest_once_its_lease_is_gone(
    tmp_path: Path, codacy: EmulatorProcess, moto: MotoServer, dsn: str
) -> None:
    bucket = Bucket(moto)
    daemons = replicas(tmp_path, codacy.url, dsn, bucket, interval_s=1)
    try:
        all_stored(bucket, codacy, daemons)  # the state exists from then on
        holder, other = sink_holder(tmp_path, daemons)
        wait_until("the holder wrote digests", lambda: len(bucket.keys("audit-digests/")) >= 2, timeout=60)
        holder.process.send_signal(signal.SIGSTOP)
        try:
            codacy.control("POST", "entries", {"generate": 10, "orgs": ORGS, "span_s": 60})
            took_over(tmp_path, daemons, other)
            before = len(bucket.keys("audit-digests/"))
            wait_until(
                "the new holder writes digests",
                lambda: len(bucket.keys("audit-digests/")) >= before + 2,
                timeout=60,
                detail=other.log,
            )
        finally:
            holder.process.send_signal(signal.SIGCONT)
        all_stored(bucket, codacy, daemons)
        assert stop_all(daemons) == [0, 0]
    finally:
        for d in daemons:
            d.process.send_signal(signal.SIGCONT)
            d.kill()
    checked(tmp_path, bucket, codacy)
