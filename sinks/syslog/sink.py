"""Syslog sink: RFC 5424 (or legacy RFC 3164) over UDP, TCP or TLS.

Wire facts are in ``shared/research/sinks-schemas.md`` §2. Each record becomes one message::

    <PRI>1 TIMESTAMP HOST APP PROCID MSGID [audit@32473 id=".." vendor=".." org=".." action=".."
    outcome=".." category=".."] BOM MSG          (BOM unless bom: false)

TIMESTAMP is the time of the audited action (SIEMs index on it), MSGID the vendor's action
(receivers filter on it cheaply), MSG the record in ``format`` (the event JSON by default),
and the structured data repeats the fields a receiver needs for routing without parsing MSG.
RFC 3164 (``<PRI>Mmm dd hh:mm:ss HOST TAG: MSG``, UTC since the format has no zone) exists for
receivers that only speak it; it has no structured data.

Severity comes from the event's outcome and category, so that a SIEM's default severity
filters surface what an auditor would look at first:

    ==========  ==================================  =====================
    outcome     category                            severity
    ==========  ==================================  =====================
    failure     forwarder (the forwarder's own)     error (3)
    failure     any other, authentication included  warning (4)
    not failed  access_management, user_management  notice (5)
    not failed  any other                           informational (6)
    ==========  ==================================  =====================

Delivery guarantees, by transport:

* TCP and TLS: the batch counts as delivered once all of it is written to the kernel, the
  usual syslog guarantee, since syslog has no application-level acknowledgement. (asyncio's
  ``drain()`` alone returns with up to 64 KiB still in the process, which a kill -9 would
  lose after the offset moved; ``StreamConnection.send`` waits until the transports hold nothing.) Any
  connection error drops the connection and raises ``RetryableError``; the delivery layer
  resends the whole batch (receivers discard a half-received frame) and the connection is
  reopened lazily. A connection the receiver has closed is noticed before the next write, so a
  receiver restart between batches costs nothing. A TLS certificate that does not verify is
  retryable too: the server may be mid-rotation, and the journal keeps everything meanwhile; the
  message says what to change (ca_file for an untrusted issuer, server_name for a name the
  certificate lacks, the certificate or the clock when it is out of date).
* UDP: fire and forget, one message per datagram. Messages over ``max_message_bytes`` are cut
  at a UTF-8 boundary and end with ``...[truncated]``, logged once per batch with their count
  (every attempt, retries included). TCP/TLS are capped too, at 8192 bytes unless set (RFC 5425
  4.3.1): a receiver reads what is past its own limit as new messages (rsyslog's default), so an
  uncapped long value could carry a forged message. An ICMP error
  (nobody listens on the port) reported while a batch is sent fails it, so it is retried
  (``DatagramConnection.send``); one that arrives later (the batch counted, its datagrams lost)
  fails the next batch before it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import structlog

from forwarder.record import Record
from sinks.base import DeliveryReport
from sinks.syslog.config import SyslogSinkConfig
from sinks.syslog.encoding import SyslogEncoder
from sinks.syslog.framing import frame
from sinks.syslog.transport import DatagramConnection, StreamConnection

log = structlog.get_logger("sinks.syslog")


class SyslogSink:
    """Encodes each batch, frames it for a stream, and hands it to the configured transport;
    one batch at a time, so a reconnect never interleaves two batches' frames."""

    type_name: ClassVar[str] = "syslog"

    def __init__(self, name: str, config: SyslogSinkConfig) -> None:
        self.name = name
        self.config = config
        self.encoder = SyslogEncoder(config)
        self._lock = asyncio.Lock()
        self._stream = StreamConnection(name, config)  # both lazy: only the configured one connects
        self._datagrams = DatagramConnection(name, config)

    @property
    def truncated_count(self) -> int:
        return self.encoder.truncated_count

    @property
    def _transports(self) -> tuple[asyncio.WriteTransport, ...]:
        """What holds the stream's unsent bytes in this process (empty once a send returned)."""
        return self._stream.transports

    async def start(self) -> None:
        async with self._lock:
            if self.config.transport == "udp":
                await self._datagrams.endpoint()
            else:
                await self._stream.connect()

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        truncated = self.encoder.truncated_count
        messages = [self.encoder.encode(record) for record in batch]
        if truncated := self.encoder.truncated_count - truncated:  # one line a batch, not one an event
            log.warning(
                "syslog messages truncated to max_message_bytes",
                sink=self.name,
                messages=truncated,
                limit=self.config.max_message_bytes,
                last_event_id=self.encoder.last_truncated,
            )
        async with self._lock:
            if self.config.transport == "udp":
                await self._datagrams.send(messages)
            else:
                await self._stream.send(frame(messages, self.config.framing))
        return None

    async def check(self) -> str:
        if self.config.transport == "udp":
            return await self._datagrams.probe()
        return await self._stream.probe()

    async def _disconnect(self) -> None:
        await self._stream.disconnect()

    async def close(self) -> None:
        async with self._lock:
            await self._disconnect()
            self._datagrams.close()
