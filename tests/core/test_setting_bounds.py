"""Values a setting's description rules out are refused when the configuration is read, with the
setting's name, instead of being taken silently and behaving as something else."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from sinks.file_config import FileSinkConfig
from sinks.s3 import S3SinkConfig
from sinks.sentinel.config import SentinelSinkConfig
from sinks.splunk_hec import SplunkHecSinkConfig

FILE: dict[str, Any] = {"type": "file", "path": "/tmp/x.ndjson"}
S3: dict[str, Any] = {"type": "s3", "bucket": "audit-bucket"}
HEC: dict[str, Any] = {"type": "splunk_hec", "url": "https://127.0.0.1:8088", "token": "t"}
SENTINEL: dict[str, Any] = {
    "type": "sentinel",
    "tenant_id": "contoso.onmicrosoft.com",
    "client_id": "00000000-0000-0000-0000-000000000001",
    "client_secret": "s",
    "endpoint": "https://dce.example.com",
    "dcr_immutable_id": "dcr-1",
    "stream_name": "Custom-A_CL",
}


@pytest.mark.parametrize(
    ("model", "base", "key", "value"),
    [
        (FileSinkConfig, FILE, "batch_max_events", 0),
        (FileSinkConfig, FILE, "batch_max_events", -5),
        (FileSinkConfig, FILE, "batch_max_bytes", 0),
        (FileSinkConfig, FILE, "batch_max_age_s", -1),
        (S3SinkConfig, S3, "batch_max_events", 0),  # a sink that redeclares the field with its own default
        (S3SinkConfig, S3, "batch_max_bytes", -1),
        (SplunkHecSinkConfig, HEC, "timeout_s", 0),
        (SplunkHecSinkConfig, HEC, "ack_timeout_s", -1),
        (SplunkHecSinkConfig, HEC, "ack_poll_interval_s", 0),
        (SentinelSinkConfig, SENTINEL, "timeout_s", 0),
    ],
)
def test_a_value_the_setting_rules_out_is_refused_naming_it(
    model: type[BaseModel], base: dict[str, Any], key: str, value: float
) -> None:
    model(**base)  # the rest is valid
    with pytest.raises(ValidationError, match=key):
        model(**{**base, key: value})


def test_a_batch_that_need_not_wait_is_still_allowed() -> None:
    assert FileSinkConfig(**FILE, batch_max_age_s=0).batch_max_age_s == 0
