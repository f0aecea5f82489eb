"""The four real receivers the crash test delivers to, and what each one actually holds.

Each ``events_in_*`` reads the receiver's own record of what arrived (the file on disk,
rsyslog's capture file, the HEC receiver's control plane, the S3 objects), never the
forwarder's view of it: a promise about delivery is only proven at the far end.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson

from tests.support.daemon import read_ndjson
from tests.support.emulators import EmulatorProcess, running, stop_emulator
from tests.support.moto_server import MotoServer
from tests.support.rsyslog import Rsyslog

HEC_TOKEN = "hec-test-token"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIATESTING",
    "AWS_SECRET_ACCESS_KEY": "reliability-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


def hec_sink(url: str, **overrides: Any) -> dict[str, Any]:
    return {"type": "splunk_hec", "url": url, "token": HEC_TOKEN, "batch_max_age_s": 0.05, **overrides}


def events_in_hec(receiver: EmulatorProcess) -> list[dict[str, Any]]:
    return [dict(envelope["event"]) for envelope in receiver.entries()]


class Receivers:
    """rsyslog (TCP), the HEC receiver and moto S3, started together and stopped together."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.rsyslog = Rsyslog(directory / "rsyslog")
        self.moto = MotoServer()
        self.hec: EmulatorProcess | None = None
        self.bucket = f"audit-{uuid.uuid4().hex[:12]}"
        # Syslog messages cut by a kill mid-write (TCP syslog has no acknowledgement, so
        # rsyslog may log the fragment): not events, never counted as delivered.
        self.torn = 0

    def start(self) -> Receivers:
        self.rsyslog.start()
        self.moto.start()
        self.hec = running("splunk_hec")
        self.s3().create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self.hec is not None:
            self.hec.stop()
        self.moto.stop()
        self.rsyslog.stop()

    def s3(self) -> Any:
        saved = {k: os.environ.get(k) for k in AWS_ENV}
        os.environ.update(AWS_ENV)
        try:
            return boto3.client("s3", endpoint_url=self.moto.endpoint_url, region_name="us-east-1")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def sinks(self) -> dict[str, Any]:
        assert self.hec is not None
        return {
            "file": {
                "type": "file",
                "path": str(self.dir / "file" / "{organization}.ndjson"),
                "batch_max_age_s": 0.05,
            },
            "syslog": {
                "type": "syslog",
                "host": "127.0.0.1",
                "port": self.rsyslog.ports["tcp"],
                "transport": "tcp",
                "batch_max_age_s": 0.05,
            },
            "hec": hec_sink(self.hec.url),
            "s3": {
                "type": "s3",
                "bucket": self.bucket,
                "endpoint_url": self.moto.endpoint_url,
                "force_path_style": True,
                "batch_max_age_s": 0.2,
                "batch_max_events": 200,
            },
        }

    def events(self) -> dict[str, list[dict[str, Any]]]:
        assert self.hec is not None
        return {
            "file": read_ndjson(self.dir / "file"),
            "syslog": self._syslog_events(),
            "hec": events_in_hec(self.hec),
            "s3": self._s3_events(),
        }

    def _syslog_events(self) -> list[dict[str, Any]]:
        """Complete messages only; fragments are counted in ``torn``."""
        events = []
        for record in self.rsyslog.records():
            try:
                events.append(json.loads(record["msg"].removeprefix("\ufeff")))
            except json.JSONDecodeError:
                self.torn += 1
        return events

    def _s3_events(self) -> list[dict[str, Any]]:
        client = self.s3()
        events: list[dict[str, Any]] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                events.extend(orjson.loads(line) for line in gzip.decompress(body).splitlines() if line)
        return events


def hec_on_port(port: int) -> EmulatorProcess:
    """The HEC receiver on a port chosen in advance, so a sink configured while it was down
    finds it when it comes up."""
    process = subprocess.Popen(
        [sys.executable, "-m", "forwarder.emulators", "splunk_hec", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("LISTENING "):
        stop_emulator(process)
        raise AssertionError(f"HEC receiver did not start on port {port}: {line!r}")
    return EmulatorProcess(process, line.removeprefix("LISTENING "))
