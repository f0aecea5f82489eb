"""One real receiver per sink type: the one registration a new sink's contract tests need.

``tests/contract/test_sink_contract.py`` runs every type of ``sinks.registry.SINKS`` against
the receiver registered here under the same type; a registered sink without one fails the
suite, naming this file. A receiver is a real program on 127.0.0.1 that the test starts (or
a directory, for the file sink) and reads back what arrived, never the sink's view of it.

To register a sink: subclass ``Receiver``, implement ``start``, ``stop``, ``config`` and
``received``, and either the method of each rule or an entry in ``exempt`` saying why the
rule cannot apply to this sink (a reviewer reads these reasons; no rule is skipped silently).
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import boto3
import orjson

from forwarder.emulators.sentinel import SentinelEmulator
from forwarder.emulators.splunk_hec import SplunkHecEmulator
from tests.support.daemon import read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.moto_server import MotoServer
from tests.support.receivers import AWS_ENV
from tests.support.rsyslog import Rsyslog
from tests.support.security_lake_objects import read_lake

# The rules a receiver may be exempt from, with what the rule needs from it.
RULES = {
    "unreachable": "unreachable_config(port): the sink aimed at a loopback port where nothing listens",
    "server_error": "config_at(url): the sink aimed at an HTTP server (that answers 5xx)",
    "bad_credentials": "bad_credentials_config(): the sink with credentials its receiver refuses",
}


class Receiver:
    """A real receiver of one sink type, started for one test in ``directory``."""

    exempt: ClassVar[dict[str, str]] = {}  # rule (a key of RULES) -> why it cannot apply
    env: ClassVar[dict[str, str]] = {}  # environment the sink needs (e.g. AWS credentials)

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def config(self) -> dict[str, Any]:
        """A sink entry (``type`` included, default ``json`` format) that delivers here."""
        raise NotImplementedError

    def received(self) -> list[dict[str, Any]]:
        """Every event the receiver holds now, as JSON objects, one per delivery."""
        raise NotImplementedError

    def unreachable_config(self, port: int) -> dict[str, Any]:
        raise NotImplementedError(RULES["unreachable"])

    def config_at(self, url: str) -> dict[str, Any]:
        raise NotImplementedError(RULES["server_error"])

    def bad_credentials_config(self) -> dict[str, Any]:
        raise NotImplementedError(RULES["bad_credentials"])


class FileReceiver(Receiver):
    exempt = {
        "unreachable": "a local file: there is no connection to refuse",
        "server_error": "a local file: there is no server to answer 5xx",
        "bad_credentials": "a local file: there are no credentials",
    }

    def config(self) -> dict[str, Any]:
        return {"type": "file", "path": str(self.dir / "out" / "{organization}.ndjson")}

    def received(self) -> list[dict[str, Any]]:
        return read_ndjson(self.dir / "out")


class SyslogReceiver(Receiver):
    """rsyslog over TCP."""

    exempt = {
        "server_error": "syslog has no status codes: a receiver that fails drops the connection (unreachable)",
        "bad_credentials": "syslog has no credentials (TLS client certificates are checked by "
        "tests/sinks/test_syslog_rsyslog.py)",
    }

    def start(self) -> None:
        self.rsyslog = Rsyslog(self.dir / "rsyslog").start()

    def stop(self) -> None:
        self.rsyslog.stop()

    def config(self) -> dict[str, Any]:
        return self.unreachable_config(self.rsyslog.ports["tcp"])

    def unreachable_config(self, port: int) -> dict[str, Any]:
        return {"type": "syslog", "host": "127.0.0.1", "port": port, "transport": "tcp"}

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(record["msg"].removeprefix("\ufeff")) for record in self.rsyslog.records()]


class SplunkHecReceiver(Receiver):
    """The HEC emulator (``forwarder/emulators/splunk_hec.py``)."""

    def start(self) -> None:
        self.hec: EmulatorProcess = running("splunk_hec")

    def stop(self) -> None:
        self.hec.stop()

    def config(self) -> dict[str, Any]:
        return self.config_at(self.hec.url)

    def config_at(self, url: str) -> dict[str, Any]:
        return {**SplunkHecEmulator().sink_config(url), "timeout_s": 5}

    def unreachable_config(self, port: int) -> dict[str, Any]:
        return self.config_at(f"http://127.0.0.1:{port}")

    def bad_credentials_config(self) -> dict[str, Any]:
        return {**self.config(), "token": "not-a-token-hec-knows"}

    def received(self) -> list[dict[str, Any]]:
        return [dict(envelope["event"]) for envelope in self.hec.entries()]


class S3Receiver(Receiver):
    """moto's S3 server; a second one checking credentials for ``bad_credentials``."""

    env = AWS_ENV

    def start(self) -> None:
        self.moto = MotoServer().start()
        self.strict: MotoServer | None = None
        self.bucket = f"audit-{uuid.uuid4().hex[:12]}"
        self._client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        self.moto.stop()
        if self.strict is not None:
            self.strict.stop()

    def _client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.moto.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def config(self) -> dict[str, Any]:
        return self.config_at(self.moto.endpoint_url)

    def config_at(self, url: str) -> dict[str, Any]:
        return {"type": "s3", "bucket": self.bucket, "endpoint_url": url, "force_path_style": True, "timeout_s": 5}

    def unreachable_config(self, port: int) -> dict[str, Any]:
        return self.config_at(f"http://127.0.0.1:{port}")

    def bad_credentials_config(self) -> dict[str, Any]:
        """moto accepts any key unless told to check them: a second server that does."""
        self.strict = MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}).start()
        return self.config_at(self.strict.endpoint_url)

    def received(self) -> list[dict[str, Any]]:
        client = self._client()
        events: list[dict[str, Any]] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                events.extend(orjson.loads(line) for line in gzip.decompress(body).splitlines() if line)
        return events


class SecurityLakeReceiver(S3Receiver):
    """moto's S3 server as the lake's bucket: every object read back with pyarrow and checked
    (layout, Parquet settings, one class, rows valid against OCSF 1.1.0), rows keyed by their
    ``metadata.uid``, the event id."""

    ACCOUNT = "123456789012"

    def config_at(self, url: str) -> dict[str, Any]:
        return {**super().config_at(url), "type": "security_lake", "account_id": self.ACCOUNT}

    def received(self) -> list[dict[str, Any]]:
        rows = read_lake(self._client(), self.bucket, "audit-forwarder-{class_uid}", "us-east-1", self.ACCOUNT)
        return [{"id": row["metadata"]["uid"], **row} for row in rows]


class SentinelReceiver(Receiver):
    """The Logs Ingestion API receiver (``forwarder/emulators/sentinel.py``): token endpoint and
    data collection endpoint on one port."""

    def start(self) -> None:
        self.receiver: EmulatorProcess = running("sentinel")

    def stop(self) -> None:
        self.receiver.stop()

    def config(self) -> dict[str, Any]:
        return self.config_at(self.receiver.url)

    def config_at(self, url: str) -> dict[str, Any]:
        return {**SentinelEmulator().sink_config(url), "timeout_s": 5}

    def unreachable_config(self, port: int) -> dict[str, Any]:
        return self.config_at(f"http://127.0.0.1:{port}")

    def bad_credentials_config(self) -> dict[str, Any]:
        return {**self.config(), "client_secret": "not-the-secret-entra-id-knows"}

    def received(self) -> list[dict[str, Any]]:
        return [{"id": row["EventId"], **row} for row in self.receiver.entries()]


RECEIVERS: dict[str, type[Receiver]] = {
    "file": FileReceiver,
    "syslog": SyslogReceiver,
    "splunk_hec": SplunkHecReceiver,
    "s3": S3Receiver,
    "security_lake": SecurityLakeReceiver,
    "sentinel": SentinelReceiver,
}
