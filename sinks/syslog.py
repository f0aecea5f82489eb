"""Syslog sink: RFC 5424 (or legacy RFC 3164) over UDP, TCP or TLS.

Wire facts are in ``shared/research/sinks-schemas.md`` §2. Each record becomes one message::

    <PRI>1 TIMESTAMP HOST APP PROCID MSGID [audit@32473 id=".." vendor=".." org=".." action=".."
    outcome=".." category=".."] BOM MSG

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
  lose after the offset moved; ``_send_stream`` waits until the transports hold nothing.) Any
  connection error drops the connection and raises ``RetryableError``; the delivery layer
  resends the whole batch (receivers discard a half-received frame) and the connection is
  reopened lazily. A connection the receiver has closed is noticed before the next write, so a
  receiver restart between batches costs nothing. A TLS certificate that does not verify is
  retryable too: the server may be mid-rotation, and the journal keeps everything meanwhile.
* UDP: fire and forget, one message per datagram. Messages over ``max_message_bytes`` are cut
  at a UTF-8 boundary and end with ``...[truncated]``, logged once per batch with their count
  (every attempt, retries included); the cap also applies to TCP/TLS when set. ICMP errors are
  logged as they arrive; they come after the fact and cannot say which datagram was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

import structlog
from pydantic import BeforeValidator, Field, field_validator, model_validator

from forwarder.event import format_ms
from forwarder.formats import get_formatter
from sinks.base import DeliveryReport, FatalSinkError, Record, RetryableError, SinkConfig, plain_fields

log = structlog.get_logger("sinks.syslog")

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "security": 13,
    "alert": 14, "clock": 15, **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip
ERROR, WARNING, NOTICE, INFORMATIONAL = 3, 4, 5, 6
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
UDP_MAX_PAYLOAD = 65_507
BOM = b"\xef\xbb\xbf"
TRUNCATION_MARKER = b"...[truncated]"
SD_PARAMS = ("id", "vendor", "org", "action", "outcome", "category")
SD_VALUE_MAX_BYTES = 255  # escaped, per SD value but the id: an endless one cut the header and lost the body
_SECONDS_DOT = [b"%02d." % s for s in range(60)]
_MILLIS_Z = [b"%03dZ" % ms for ms in range(1000)]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _facility(value: Any) -> Any:
    """Accept ``local0``, ``LOCAL0``, ``16`` or 16, as syslog configurations spell it."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in FACILITIES:
            return FACILITIES[text]
        if not text.isdigit():
            raise ValueError(f"unknown facility {value!r}; expected 0-23 or one of {', '.join(FACILITIES)}")
        return int(text)
    return value


class SyslogSinkConfig(SinkConfig):
    type: Literal["syslog"]
    host: str
    port: int = Field(0, ge=0, le=65_535, description="0 picks the transport's usual port (514, TLS 6514).")
    transport: Literal["udp", "tcp", "tls"] = "tcp"
    rfc: Literal["5424", "3164"] = "5424"
    framing: Literal["octet_counting", "lf"] = Field(
        "octet_counting",
        description="TCP/TLS only; RFC 5425 receivers expect octet counting over TLS. LF framing replaces LF inside "
        "messages by '\\n'.",
    )
    max_message_bytes: int | None = Field(
        None, ge=480,
        description="Cap per message; UDP defaults to 2048 (RFC 3164 over UDP: 1024, the RFC's limit; set more "
        "for receivers that take it), TCP/TLS are "
        "uncapped unless set. Each structured-data value is cut at 255 bytes.",
    )
    facility: Annotated[int, BeforeValidator(_facility), Field(ge=0, le=23)] = FACILITIES["local0"]
    app_name: str = "audit-forwarder"
    hostname: str = Field(default_factory=socket.gethostname)
    sd_id: str = Field("audit@32473", description="Private SD-ID 'name@PEN'; 32473 is the documentation PEN.")
    ca_file: str | None = None
    server_name: str | None = Field(None, description="Name the server certificate must match; default host.")
    verify: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    connect_timeout_s: float = Field(10.0, gt=0)
    send_timeout_s: float = Field(30.0, gt=0, description="A receiver that stops reading fails the batch.")

    @field_validator("sd_id")
    @classmethod
    def _check_sd_id(cls, value: str) -> str:
        name, at, pen = value.partition("@")
        bad = set('= ]"@')
        if (
            not at
            or not name
            or len(value) > 32
            or any(not "!" <= c <= "~" or c in bad for c in name)
            or not all(part.isdigit() and part.isascii() for part in pen.split("."))
        ):
            raise ValueError(f"sd_id {value!r} must look like name@PEN (printable ASCII, at most 32 chars)")
        return value

    @model_validator(mode="after")
    def _transport_defaults(self) -> SyslogSinkConfig:
        if self.port == 0:
            self.port = DEFAULT_PORTS[self.transport]
        if self.transport == "udp":  # RFC 3164 4.1: "The total length of the packet MUST be 1024 bytes or less"
            default = 1024 if self.rfc == "3164" else 2048
            self.max_message_bytes = min(self.max_message_bytes or default, UDP_MAX_PAYLOAD)
        if self.transport == "tls" and self.framing == "lf":  # RFC 5425 4.3: SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG
            log.warning("syslog over TLS with framing: lf; RFC 5425 receivers (syslog-ng) expect octet_counting")
        tls_options = [n for n in ("ca_file", "server_name", "client_cert", "client_key") if getattr(self, n)]
        if tls_options and self.transport != "tls":
            raise ValueError(f"{', '.join(tls_options)} need transport: tls (transport is {self.transport})")
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        return self


def severity(outcome: Any, category: Any) -> int:
    if outcome == "failure":
        return ERROR if category == "forwarder" else WARNING
    if category in ("access_management", "user_management"):
        return NOTICE
    return INFORMATIONAL


def header_token(value: str, limit: int, forbidden: str = "") -> bytes:
    """PRINTUSASCII only (RFC 5424 §6): anything else, and spaces, become ``_``; empty is ``-``."""
    text = "".join(c if "!" <= c <= "~" and c not in forbidden else "_" for c in value[:limit])
    return text.encode("ascii") or b"-"


def _sd_value(value: str) -> bytes:
    """Escaped, then cut at ``SD_VALUE_MAX_BYTES``: at a character, and never after the
    backslash of an escape (escaping can double a value's length, so cutting first was not enough)."""
    escaped = sd_escape(value)
    if len(escaped) <= SD_VALUE_MAX_BYTES:
        return escaped
    cut = escaped[:SD_VALUE_MAX_BYTES].decode(errors="ignore").encode()
    if (len(cut) - len(cut.rstrip(b"\\"))) % 2:
        cut = cut[:-1]
    return cut


def sd_escape(value: str) -> bytes:
    if "\\" in value or '"' in value or "]" in value:  # rare: testing first costs a fifth of replacing
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return value.encode()


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _utf8_cut(data: bytes, limit: int) -> bytes:
    """Cut before a UTF-8 continuation byte so the kept part stays valid text."""
    while 0 < limit < len(data) and data[limit] & 0xC0 == 0x80:
        limit -= 1
    return data[:limit]


class SyslogEncoder:
    """Turns records into complete messages (without transport framing)."""

    def __init__(self, config: SyslogSinkConfig) -> None:
        self.config = config
        self.formatter = get_formatter(config.format, config.format_options)
        self.hostname = header_token(config.hostname, 255)
        self.app_name = header_token(config.app_name, 48)
        self.tag = header_token(config.app_name, 32, forbidden=":[]")
        self.procid = str(os.getpid()).encode()
        self.sd_id = config.sd_id.encode()
        self.escape_lf = config.transport != "udp" and config.framing == "lf"
        self.truncated_count = 0
        self.last_truncated = ""
        self._headers: dict[tuple[Any, ...], tuple[bytes, bytes, bytes]] = {}
        self._minute: int | None = None
        self._minute_text = b""

    def encode(self, record: Record) -> bytes:
        if self.config.rfc == "5424":
            head = self._head_5424(record)
            body = BOM + self.formatter(record)
        else:
            head = self._head_3164(self._prival(record), record)
            body = self.formatter(record)
        if self.escape_lf:
            head, body = head.replace(b"\n", b"\\n"), body.replace(b"\n", b"\\n")
        return self._cap(head, body, record)

    def _prival(self, record: Record) -> int:
        return self.config.facility * 8 + severity(record.outcome, record.category)

    def _head_5424(self, record: Record) -> bytes:
        start, middle, end = self._header_parts(record)
        params = b' id="%s"' % sd_escape(record.event_id) if record.event_id else b""
        return b"".join((start, self._timestamp(record.time_ms), middle, params, end))

    def _timestamp(self, ms: int) -> bytes:
        """RFC 3339 with milliseconds; the date, hour and minute are formatted once per minute
        (formatting the whole time per event was a third of the encoding), the seconds and
        milliseconds come from tables (a quarter of the cost of ``%`` formatting them)."""
        minute, rest = divmod(ms, 60_000)
        if minute != self._minute:
            self._minute_text = format_ms(minute * 60_000)[:17].encode()  # YYYY-MM-DDTHH:MM:
            self._minute = minute
        second, millis = divmod(rest, 1000)
        return b"".join((self._minute_text, _SECONDS_DOT[second], _MILLIS_Z[millis]))

    def _header_parts(self, record: Record) -> tuple[bytes, bytes, bytes]:
        """The header around the timestamp and the event id: ``<PRI>1 ``, `` HOST APP PROCID
        MSGID [SD-ID`` and the other SD params with ``] ``. The same few combinations repeat for
        every event, so they are escaped once and remembered (this was most of the encoding CPU)."""
        vendor, organization, action = record.vendor, record.organization, record.action
        outcome, category = record.outcome, record.category
        key = (vendor, organization, action, outcome, category)
        cacheable = plain_fields(record)
        cached = self._headers.get(key) if cacheable else None
        if cached is None:
            values = {"vendor": vendor, "org": organization, "action": action, "outcome": outcome, "category": category}
            tail = b"".join(
                b' %s="%s"' % (k.encode(), _sd_value(str(v)))
                for k in SD_PARAMS[1:] if (v := values[k])
            )  # fmt: skip
            msgid = header_token(str(action or ""), 32)
            cached = (
                b"<%d>1 " % self._prival(record),
                b" %s %s %s %s [%s" % (self.hostname, self.app_name, self.procid, msgid, self.sd_id),
                tail + b"] ",
            )
            if cacheable and len(self._headers) < 10_000:
                self._headers[key] = cached
        return cached

    def _head_3164(self, prival: int, record: Record) -> bytes:
        t = datetime.fromtimestamp(record.time_ms / 1000, tz=UTC)
        stamp = f"{MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}".encode()
        return b"<%d>%s %s %s: " % (prival, stamp, self.hostname, self.tag)

    def _cap(self, head: bytes, body: bytes, record: Record) -> bytes:
        limit = self.config.max_message_bytes
        if limit is None or len(head) + len(body) <= limit:
            return head + body
        self.truncated_count += 1
        self.last_truncated = record.event_id
        room = limit - len(TRUNCATION_MARKER)
        if len(head) < room:
            return head + _utf8_cut(body, room - len(head)) + TRUNCATION_MARKER
        return _utf8_cut(head, room) + TRUNCATION_MARKER  # absurdly long SD values: still never over


class _UdpProtocol(asyncio.DatagramProtocol):
    """Flow control for datagrams: asyncio buffers when the socket is full and pauses us."""

    def __init__(self, sink: str, receiver: str) -> None:
        self.sink, self.receiver = sink, receiver  # for the log: an ICMP error says neither
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def error_received(self, exc: Exception) -> None:
        log.warning("syslog_udp_error", sink=self.sink, receiver=self.receiver, error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()


class SyslogSink:
    type_name: ClassVar[str] = "syslog"

    def __init__(self, name: str, config: SyslogSinkConfig) -> None:
        self.name = name
        self.config = config
        self.encoder = SyslogEncoder(config)
        self._lock = asyncio.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._transports: tuple[asyncio.WriteTransport, ...] = ()  # the stream's, and TCP's under TLS
        self._udp: tuple[asyncio.DatagramTransport, _UdpProtocol] | None = None

    @property
    def truncated_count(self) -> int:
        return self.encoder.truncated_count

    @property
    def _where(self) -> str:
        return f"syslog sink {self.name!r}: {self.config.transport} {self.config.host}:{self.config.port}"

    async def start(self) -> None:
        async with self._lock:
            if self.config.transport == "udp":
                await self._datagram_endpoint()
            else:
                await self._stream()

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        truncated = self.encoder.truncated_count
        messages = [self.encoder.encode(record) for record in batch]
        if truncated := self.encoder.truncated_count - truncated:  # one line a batch, not one an event
            log.warning(
                "syslog messages truncated to max_message_bytes", sink=self.name, messages=truncated,
                limit=self.config.max_message_bytes, last_event_id=self.encoder.last_truncated,
            )  # fmt: skip
        async with self._lock:
            if self.config.transport == "udp":
                await self._send_datagrams(messages)
            else:
                await self._send_stream(self._frame(messages))
        return None

    def _frame(self, messages: list[bytes]) -> bytes:
        if self.config.framing == "lf":
            return b"".join(m + b"\n" for m in messages)
        return b"".join(b"%d %s" % (len(m), m) for m in messages)

    async def _send_stream(self, data: bytes) -> None:
        writer = await self._stream()
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                writer.write(data)
                await writer.drain()
                # asyncio has no event for "the socket's own buffer is empty" under TLS: poll it
                while not writer.transport.is_closing() and any(  # noqa: ASYNC110
                    transport.get_write_buffer_size() for transport in self._transports
                ):
                    await asyncio.sleep(0.005)  # a slow receiver: the rest is still in this process
                await writer.drain()  # a connection lost meanwhile emptied the buffers: this raises
        except (OSError, TimeoutError) as exc:
            await self._disconnect()
            raise RetryableError(f"{self._where}: write failed: {_why(exc)}") from exc

    async def _stream(self) -> asyncio.StreamWriter:
        # A receiver that closed the connection (restart, idle timeout) has sent a FIN, which
        # the loop has turned into EOF on the reader: reconnect now rather than write into a
        # dead socket and lose the batch.
        stale = self._writer is not None and self._writer.is_closing()
        if stale or (self._reader is not None and self._reader.at_eof()):
            log.info("syslog_reconnect", sink=self.name, reason="closed by receiver")
            await self._disconnect()
        if self._writer is None:
            self._reader, self._writer = await self._open()
        return self._writer

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        cfg = self.config
        context = await self._ssl_context() if cfg.transport == "tls" else None
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
                tcp = writer.transport
                if context is not None:  # TLS over the socket's own transport, which keeps its own buffer
                    try:
                        await writer.start_tls(context, server_hostname=cfg.server_name or cfg.host)
                    except BaseException:
                        tcp.abort()
                        raise
                self._transports = (writer.transport, tcp)
                return reader, writer
        except ssl.SSLCertVerificationError as exc:
            why = exc.verify_message or _why(exc)
            raise RetryableError(f"{self._where}: TLS certificate verification failed: {why}") from exc
        except (OSError, TimeoutError) as exc:
            raise RetryableError(f"{self._where}: cannot connect: {_why(exc)}") from exc

    async def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                self._ssl = await asyncio.to_thread(self._build_ssl_context)
            except (OSError, ssl.SSLError) as exc:  # a missing or bad file: retrying cannot help
                raise FatalSinkError(f"{self._where}: bad TLS files: {exc}") from exc
        return self._ssl

    def _build_ssl_context(self) -> ssl.SSLContext:
        cfg = self.config
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not cfg.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cfg.client_cert:
            context.load_cert_chain(cfg.client_cert, cfg.client_key)
        return context

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _datagram_endpoint(self) -> tuple[asyncio.DatagramTransport, _UdpProtocol]:
        if self._udp is not None and self._udp[1].closed:
            self._udp = None
        if self._udp is None:
            loop = asyncio.get_running_loop()
            try:
                receiver = f"{self.config.host}:{self.config.port}"
                self._udp = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self.name, receiver), remote_addr=(self.config.host, self.config.port)
                )
            except OSError as exc:
                raise RetryableError(f"{self._where}: cannot open socket: {exc}") from exc
        return self._udp

    async def _send_datagrams(self, messages: list[bytes]) -> None:
        transport, protocol = await self._datagram_endpoint()
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                for message in messages:
                    await protocol.writable.wait()
                    if protocol.closed:
                        raise ConnectionError("socket closed")
                    transport.sendto(message)
                await protocol.writable.wait()
        except (OSError, TimeoutError) as exc:
            protocol.closed = True  # the next send opens a fresh socket
            transport.close()
            raise RetryableError(f"{self._where}: send failed: {_why(exc)}") from exc

    async def check(self) -> str:
        cfg = self.config
        if cfg.transport == "udp":
            try:
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise RetryableError(f"{self._where}: cannot resolve: {exc}") from exc
            return f"{self._where}: resolves to {infos[0][4][0]}; UDP has no handshake, nothing was sent"
        _, writer = await self._open()
        detail = ""
        if ssl_object := writer.get_extra_info("ssl_object"):
            verified = "certificate verified" if cfg.verify else "certificate NOT verified (verify: false)"
            detail = f" ({ssl_object.version()}, {verified})"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return f"{self._where}: connected{detail}"

    async def close(self) -> None:
        async with self._lock:
            await self._disconnect()
            if self._udp is not None:
                self._udp[0].close()
                self._udp = None
