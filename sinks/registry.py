"""Sink registry: adding a sink is one module in this folder plus one line here.

Each entry maps the ``type`` used in the YAML to the sink's config model and its class,
which is built as ``SinkClass(name, config)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sinks.base import Sink, SinkConfig
from sinks.file import FileSink
from sinks.file_config import FileSinkConfig
from sinks.s3 import S3Sink, S3SinkConfig
from sinks.security_lake.config import SecurityLakeSinkConfig
from sinks.security_lake.sink import SecurityLakeSink
from sinks.sentinel.config import SentinelSinkConfig
from sinks.sentinel.sink import SentinelSink
from sinks.splunk_hec import SplunkHecSink, SplunkHecSinkConfig
from sinks.syslog.config import SyslogSinkConfig
from sinks.syslog.sink import SyslogSink

# The factory is typed so that mypy checks each class against the Sink protocol.
SINKS: dict[str, tuple[type[SinkConfig], Callable[[str, Any], Sink]]] = {
    "file": (FileSinkConfig, FileSink),
    "s3": (S3SinkConfig, S3Sink),
    "security_lake": (SecurityLakeSinkConfig, SecurityLakeSink),
    "sentinel": (SentinelSinkConfig, SentinelSink),
    "splunk_hec": (SplunkHecSinkConfig, SplunkHecSink),
    "syslog": (SyslogSinkConfig, SyslogSink),
}
