"""A Codacy token kept in AWS Secrets Manager (moto's server) rotates while the real daemon runs:
the daemon reads it again (every ``secrets.refresh_s``, or at once on the vendor's 401), rebuilds
the source and keeps delivering, nothing lost, and neither token ever reaches its logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.config import file_sink, make_config
from tests.support.daemon import DaemonProcess, read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.moto_server import MotoServer
from tests.support.vendors import codacy_source
from tests.support.waiting import wait_until

REGION = "us-east-1"
OLD = "codacy-test-token"  # the emulator's own token until the test rotates it
HEC_OLD = "4c0e1b9a-hec-token-before"
HEC_NEW = "9d27f3e4-hec-token-after"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


@pytest.fixture
def secrets(moto_server: MotoServer) -> Iterator[Any]:
    client = boto3.client(
        "secretsmanager",
        endpoint_url=moto_server.endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield client
    moto_server.reset()


def run_rotation(
    tmp_path: Path, codacy: EmulatorProcess, moto: MotoServer, secrets: Any, refresh_s: float, new: str
) -> str:
    """Starts the daemon on the stored token, rotates it in AWS, then makes the emulator accept
    only the new one; returns the daemon's log once everything arrived and it stopped cleanly."""
    secrets.create_secret(Name="prod/codacy", SecretString=OLD)
    ref = {"aws_secrets_manager": {"secret_id": "prod/codacy", "endpoint_url": moto.endpoint_url}}
    source = codacy_source(codacy.url)
    del source["api_token"]
    source["api_token_from"] = ref
    out = tmp_path / "out"
    config = make_config(tmp_path, source, {"out": file_sink(out)}, secrets={"refresh_s": refresh_s})
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=AWS_ENV)
    try:
        total = len(codacy.entries())
        wait_until("the first entries", lambda: len(read_ndjson(out)) >= total, detail=daemon.log)
        secrets.put_secret_value(SecretId="prod/codacy", SecretString=new)  # AWS first, as a rotation does
        codacy.control("POST", "config", {"token": new})  # then the vendor revokes the old token
        codacy.control("POST", "entries", {"generate": 10, "orgs": ["gh/acme", "gl/globex"], "span_s": 5})
        total = len(codacy.entries())
        wait_until("the entries after the rotation", lambda: len(read_ndjson(out)) >= total, detail=daemon.log)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    delivered = read_ndjson(out)
    assert len(delivered) == total and len({e["id"] for e in delivered}) == total
    logs = daemon.log()
    assert "stored secrets changed; their users were rebuilt" in logs
    assert OLD not in logs and new not in logs
    assert "Traceback" not in logs
    return logs


def test_a_rotated_token_is_picked_up_within_the_refresh_interval(
    tmp_path: Path,
    codacy: EmulatorProcess,
    moto_server: MotoServer,
    secrets: Any,
) -> None:
    run_rotation(tmp_path, codacy, moto_server, secrets, refresh_s=1, new="rotated-codacy-token-5d81c2")


def test_a_vendors_401_reads_the_secret_again_at_once(
    tmp_path: Path,
    codacy: EmulatorProcess,
    moto_server: MotoServer,
    secrets: Any,
) -> None:
    """An hour's refresh interval: only the re-read the 401 triggers can explain the recovery."""
    logs = run_rotation(tmp_path, codacy, moto_server, secrets, refresh_s=3600, new="rotated-after-401-token-a7e3")
    assert "credentials refused; reading the stored secrets again" in logs


def test_an_unreadable_secret_at_start_names_it(
    tmp_path: Path,
    codacy: EmulatorProcess,
    moto_server: MotoServer,
    secrets: Any,
) -> None:
    source = codacy_source(codacy.url)
    del source["api_token"]
    source["api_token_from"] = {
        "aws_secrets_manager": {"secret_id": "prod/absent", "endpoint_url": moto_server.endpoint_url}
    }
    config = make_config(tmp_path, source, {"out": file_sink(tmp_path / "out")})
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=AWS_ENV)
    try:
        assert daemon.process.wait(timeout=60) == 2
    finally:
        daemon.kill()
    logs = daemon.log()
    assert "sources.codacy: api_token_from: AWS Secrets Manager secret 'prod/absent' in us-east-1" in logs
    assert "ResourceNotFoundException" in logs and "Traceback" not in logs


@pytest.fixture
def hec() -> Iterator[EmulatorProcess]:
    emulator = running("splunk_hec", options={"config": {"tokens": [HEC_OLD]}})
    yield emulator
    emulator.stop()


def test_a_sink_token_rotated_in_ssm_rebuilds_the_sink_without_losing_a_batch(
    tmp_path: Path,
    codacy: EmulatorProcess,
    hec: EmulatorProcess,
    moto_server: MotoServer,
) -> None:
    """The rotation Splunk's own procedure gives: a new token beside the old, AWS updated, the
    daemon picks it up (the HEC sink is rebuilt, finishing its in-flight batch), the old revoked."""
    ssm = boto3.client(
        "ssm",
        endpoint_url=moto_server.endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ssm.put_parameter(Name="/audit/hec-token", Value=HEC_OLD, Type="SecureString")
    ref = {"aws_ssm_parameter": {"name": "/audit/hec-token", "endpoint_url": moto_server.endpoint_url}}
    sink = {"type": "splunk_hec", "url": hec.url, "batch_max_age_s": 0.05, "token_from": ref}
    config = make_config(tmp_path, codacy_source(codacy.url), {"hec": sink}, secrets={"refresh_s": 1})
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=AWS_ENV)
    try:
        total = len(codacy.entries())
        wait_until("the first entries", lambda: len(hec.entries()) >= total, detail=daemon.log)
        hec.control("POST", "config", {"tokens": [HEC_OLD, HEC_NEW]})
        ssm.put_parameter(Name="/audit/hec-token", Value=HEC_NEW, Type="SecureString", Overwrite=True)
        wait_until("the re-read", lambda: "stored secrets changed" in daemon.log(), detail=daemon.log)
        hec.control("POST", "config", {"tokens": [HEC_NEW]})  # the old token revoked
        codacy.control("POST", "entries", {"generate": 10, "orgs": ["gh/acme", "gl/globex"], "span_s": 5})
        total = len(codacy.entries())
        wait_until("the entries after the rotation", lambda: len(hec.entries()) >= total, detail=daemon.log)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        moto_server.reset()
    received = [e["fields"]["event_id"] for e in hec.entries()]
    assert len(set(received)) == total
    logs = daemon.log()
    assert '"sinks_rebuilt":["hec"]' in logs
    assert HEC_OLD not in logs and HEC_NEW not in logs and "Traceback" not in logs


def test_a_secret_gone_at_a_re_read_keeps_the_running_value_and_names_it(
    tmp_path: Path,
    codacy: EmulatorProcess,
    moto_server: MotoServer,
    secrets: Any,
) -> None:
    secrets.create_secret(Name="prod/codacy", SecretString=OLD)
    source = codacy_source(codacy.url)
    del source["api_token"]
    source["api_token_from"] = {
        "aws_secrets_manager": {"secret_id": "prod/codacy", "endpoint_url": moto_server.endpoint_url}
    }
    out = tmp_path / "out"
    config = make_config(tmp_path, source, {"out": file_sink(out)}, secrets={"refresh_s": 1})
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=AWS_ENV)
    try:
        total = len(codacy.entries())
        wait_until("the first entries", lambda: len(read_ndjson(out)) >= total, detail=daemon.log)
        secrets.delete_secret(SecretId="prod/codacy", ForceDeleteWithoutRecovery=True)
        wait_until("the failed re-read", lambda: "could not be read again" in daemon.log(), detail=daemon.log)
        codacy.control("POST", "entries", {"generate": 10, "orgs": ["gh/acme", "gl/globex"], "span_s": 5})
        total = len(codacy.entries())
        wait_until("the entries after it", lambda: len(read_ndjson(out)) >= total, detail=daemon.log)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    logs = daemon.log()
    assert "AWS Secrets Manager secret 'prod/codacy' in us-east-1: AWS answered ResourceNotFoundException" in logs
    assert OLD not in logs and "Traceback" not in logs
