"""The four sinks of the benchmark, each with its real receiver in its own process.

A target starts its receiver, gives the sink's config, and counts the events the receiver
has written so far; the drain phase samples that count over time. For the live phase a target
also tells which entries (by ``requestId``) reached the receiver since it was last asked, and
when: the HEC receiver stamps them itself; for the others it is when the benchmark read them
(only whole lines of the files, only complete S3 objects).
"""

from __future__ import annotations

import gzip
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import boto3
import httpx

from bench.emulators import CountingHecReceiver, request_ids
from bench.procs import start_listening
from tests.support.moto_server import MotoServer

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
RSYSLOG_CONF = """\
global(workDirectory="{dir}/work" maxMessageSize="64k")
module(load="imtcp" maxSessions="10")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="capture") {{
  action(type="omfile" file="{dir}/received.log" template="raw")
}}
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="{dir}/tcp.port" ruleset="capture")
"""


class Counter(Protocol):
    def __call__(self) -> int: ...


class Arrivals(Protocol):
    def __call__(self) -> dict[str, float]: ...


class Tail:
    """New whole lines (up to the last LF) of the files of a directory, reading only what is new."""

    def __init__(self, directory: Path, pattern: str) -> None:
        self.directory = directory
        self.pattern = pattern
        self.offsets: dict[Path, int] = {}

    def read(self) -> bytes:
        chunks = []
        for path in self.directory.glob(self.pattern):
            with path.open("rb") as handle:
                handle.seek(self.offsets.get(path, 0))
                chunk = handle.read()
            # only whole lines count: a line is delivered once its LF is written
            chunk = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(chunk)
            chunks.append(chunk)
        return b"".join(chunks)


class Delivered(Protocol):
    """What a sink's receiver has written since the last read: whole lines of its files, or
    the objects of its bucket."""

    def read(self) -> bytes: ...


class LineCounter:
    def __init__(self, delivered: Delivered) -> None:
        self.delivered = delivered
        self.lines = 0

    def __call__(self) -> int:
        self.lines += self.delivered.read().count(b"\n")
        return self.lines


class LineArrivals:
    def __init__(self, delivered: Delivered) -> None:
        self.delivered = delivered

    def __call__(self) -> dict[str, float]:
        chunk = self.delivered.read()
        now = time.time()
        return dict.fromkeys(request_ids(chunk), now)


class Target(Protocol):
    name: str
    config: dict[str, Any]
    env: dict[str, str]
    count: Counter
    arrivals: Arrivals


class _Target:
    def __init__(
        self, name: str, config: dict[str, Any], count: Counter, arrivals: Arrivals, env: dict[str, str] | None = None
    ):
        self.name = name
        self.config = config
        self.count = count
        self.arrivals = arrivals
        self.env = env or {}


@contextmanager
def file_target(work: Path, live: bool = False) -> Iterator[Target]:
    out = work / "file-out"
    out.mkdir(parents=True)
    # rotation (and its gzip) is turned off so that every event stays in one countable file
    config = {"type": "file", "path": str(out / "{organization}.ndjson"), "rotate_max_bytes": 1 << 40}
    yield _Target("file", config, LineCounter(Tail(out, "*.ndjson")), LineArrivals(Tail(out, "*.ndjson")))


@contextmanager
def syslog_target(work: Path, live: bool = False) -> Iterator[Target]:
    directory = work / "rsyslog"
    (directory / "work").mkdir(parents=True)
    conf = directory / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(dir=directory))
    log = (directory / "rsyslogd.log").open("wb")
    proc = subprocess.Popen(
        ["/usr/sbin/rsyslogd", "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        port = _wait_port_file(directory / "tcp.port", proc)
        config = {"type": "syslog", "host": "127.0.0.1", "port": port, "transport": "tcp"}
        received = directory, "received.log"
        yield _Target("syslog", config, LineCounter(Tail(*received)), LineArrivals(Tail(*received)))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _wait_port_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        text = path.read_text().strip() if path.exists() else ""
        if text.isdigit() and int(text):
            with socket.create_connection(("127.0.0.1", int(text)), timeout=1):
                return int(text)
        time.sleep(0.05)
    raise RuntimeError(f"rsyslogd did not start listening (exit code {proc.poll()})")


@contextmanager
def hec_target(work: Path, live: bool = False) -> Iterator[Target]:
    proc, url = start_listening(["bench.emulators", "splunk_hec", *(["--arrivals"] if live else [])], work / "hec.log")
    client = httpx.Client(base_url=url, timeout=10)
    try:
        config = {"type": "splunk_hec", "url": url, "token": CountingHecReceiver().tokens[0], "tls_verify": False}
        yield _Target(
            "hec",
            config,
            lambda: int(client.get("/_control/count").json()["events"]),
            lambda: {str(k): float(v) for k, v in client.get("/_control/arrivals").json().items()},
        )
    finally:
        client.close()
        proc.kill()
        proc.wait(timeout=10)


class S3Objects:
    """Lists the bucket and reads the (gunzipped) objects not seen before."""

    def __init__(self, endpoint_url: str, bucket: str) -> None:
        self.client = boto3.client("s3", endpoint_url=endpoint_url, **_boto_credentials())
        self.bucket = bucket
        self.seen: set[str] = set()

    def read(self) -> bytes:
        bodies = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                if obj["Key"] not in self.seen:
                    self.seen.add(obj["Key"])
                    bodies.append(
                        gzip.decompress(self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read())
                    )
        return b"".join(bodies)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


@contextmanager
def s3_target(work: Path, live: bool = False) -> Iterator[Target]:
    with MotoServer() as moto:
        bucket = "bench-audit"
        boto3.client("s3", endpoint_url=moto.endpoint_url, **_boto_credentials()).create_bucket(Bucket=bucket)
        # the default 60 s batch age would make the last partial batch wait a minute in `once`
        config = {
            "type": "s3",
            "bucket": bucket,
            "endpoint_url": moto.endpoint_url,
            "force_path_style": True,
            "batch_max_age_s": 1.0,
        }
        objects = moto.endpoint_url, bucket
        count, arrivals = LineCounter(S3Objects(*objects)), LineArrivals(S3Objects(*objects))
        yield _Target("s3", config, count, arrivals, env=dict(AWS_ENV))


TARGETS = {"file": file_target, "syslog": syslog_target, "hec": hec_target, "s3": s3_target}
