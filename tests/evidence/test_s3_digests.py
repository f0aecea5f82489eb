"""S3 digests and ``verify s3`` against moto's S3 server: objects and digests locked, every PUT
with a SHA-256 checksum; untouched output passes, each kind of tampering is named."""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from click.testing import CliRunner

from forwarder.cli import main
from forwarder.evidence.keys import generate
from forwarder.record import record_of
from sinks.s3 import S3Sink, S3SinkConfig
from tests.evidence.test_verify_events import chained
from tests.sinks.test_s3_moto import aws_env  # noqa: F401
from tests.support.moto_server import MotoServer, moto_server  # noqa: F401

pytestmark = pytest.mark.integration


class Output:
    def __init__(self, endpoint: str, bucket: str, public: Path, config: S3SinkConfig) -> None:
        self.endpoint, self.bucket, self.public, self.config = endpoint, bucket, public, config
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    def verify(self) -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(
            main,
            [
                "verify",
                "s3",
                "--bucket",
                self.bucket,
                "--prefix",
                "audit/",
                "--endpoint-url",
                self.endpoint,
                "--public-key",
                str(self.public),
                "--output",
                "json",
            ],
        )
        return result.exit_code, orjson.loads(result.output)

    def objects(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix="audit/").get("Contents", [])
        return sorted(o["Key"] for o in listing)

    def digests(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix="audit-digests/").get("Contents", [])
        return sorted(o["Key"] for o in listing)

    def holding(self, seq: int) -> str:
        for key in self.objects():
            body = gzip.decompress(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            if f'"seq":{seq},'.encode() in body and b'"organization":"acme"' in body:
                return key
        raise AssertionError(f"no object holds seq {seq}")

    async def digest(self) -> None:
        """Another start of the sink: it writes digests chained onto those in the bucket."""
        sink = S3Sink("archive", self.config)
        await sink.start()
        assert sink.digests is not None
        await asyncio.to_thread(sink.digests.write)
        await sink.close()


@pytest.fixture
def output(moto_server: MotoServer, tmp_path: Path) -> Output:  # noqa: F811
    private, public = tmp_path / "evidence.key", tmp_path / "evidence.pub"
    generate(private, public)
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server.endpoint_url, region_name="us-east-1").create_bucket(
        Bucket=bucket, ObjectLockEnabledForBucket=True
    )
    config = S3SinkConfig.model_validate(
        {
            "type": "s3",
            "bucket": bucket,
            "endpoint_url": moto_server.endpoint_url,
            "force_path_style": True,
            "object_lock": {"mode": "GOVERNANCE", "retain_days": 1},
            "evidence": {"signing_key_file": str(private), "ledger_directory": str(tmp_path / "ledger")},
        }
    )
    records = [record_of(e, i) for i, e in enumerate(chained(12) + chained(4, "globex"), 1)]

    async def run() -> None:
        sink = S3Sink("archive", config)
        await sink.start()
        assert sink.digests is not None
        for i in range(0, len(records), 3):
            await sink.send(records[i : i + 3])
            if i % 6 == 0:
                await asyncio.to_thread(sink.digests.write)
        await sink.close()

    asyncio.run(run())
    return Output(moto_server.endpoint_url, bucket, public, config)


def kinds(report: dict[str, Any]) -> list[str]:
    return [f["kind"] for f in report["findings"]]


def test_untouched_output_passes_and_everything_is_locked_and_checksummed(output: Output) -> None:
    code, report = output.verify()
    assert code == 0, report
    assert report["streams"] == {"t/acme": {"first": 1, "last": 12}, "t/globex": {"first": 1, "last": 4}}
    assert len(output.digests()) == 4 and report["digests"] == 4
    for key in output.objects()[:1] + output.digests()[:1]:
        head = output.client.head_object(Bucket=output.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ObjectLockMode"] == "GOVERNANCE" and head["ChecksumSHA256"], key


def test_a_deleted_object_is_named(output: Output) -> None:
    victim = output.holding(5)
    output.client.delete_object(Bucket=output.bucket, Key=victim)
    code, report = output.verify()
    assert code == 1 and kinds(report) == ["missing", "chain_gap"] and victim in report["findings"][0]["detail"]


def test_one_altered_byte_is_named(output: Output) -> None:
    victim = output.holding(5)
    content = bytearray(gzip.decompress(output.client.get_object(Bucket=output.bucket, Key=victim)["Body"].read()))
    content[20] ^= 1
    output.client.put_object(Bucket=output.bucket, Key=victim, Body=gzip.compress(bytes(content)))
    code, report = output.verify()
    assert code == 1 and kinds(report) == ["altered", "chain_gap"] and victim in report["findings"][0]["detail"]


def test_an_object_outside_every_digest_is_named(output: Output) -> None:
    forged = "audit/codacy/forged.ndjson.gz"
    output.client.put_object(Bucket=output.bucket, Key=forged, Body=gzip.compress(b'{"forged":true}\n'))
    code, report = output.verify()
    assert code == 0 and report["pending"] == [forged], report  # newer than the newest digest: not yet judged
    time.sleep(1.1)  # S3's LastModified has whole seconds: the next digests must start after it
    asyncio.run(output.digest())
    asyncio.run(output.digest())
    code, report = output.verify()
    assert code == 1 and kinds(report) == ["unlisted"] and forged in report["findings"][0]["detail"]


def test_a_digest_deleted_from_the_chain_is_named(output: Output) -> None:
    output.client.delete_object(Bucket=output.bucket, Key=output.digests()[1])
    code, report = output.verify()
    assert code == 1 and kinds(report)[0] == "digest_missing"


def test_a_bucket_that_cannot_be_read_exits_2_with_one_line(output: Output) -> None:
    """docs/evidence.md: 2 when the input cannot be read (it was a botocore traceback, exit 1)."""
    args = ["verify", "s3", "--bucket", "no-such-bucket", "--endpoint-url", output.endpoint]
    result = CliRunner().invoke(main, [*args, "--public-key", str(output.public)])
    assert result.exit_code == 2, result.output
    assert "cannot read s3://no-such-bucket/" in result.output and "NoSuchBucket" in result.output
    assert "Traceback" not in result.output
