"""Syslog transports: UDP datagrams, and TCP or TLS streams with their connecting, TLS setup,
reconnecting and the wait until a write has left the process. They move bytes already encoded
and framed; the guarantees each gives are in ``sinks.syslog.sink``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Iterator, Sequence
from typing import NoReturn

import structlog

from sinks.base import FatalSinkError, RetryableError
from sinks.syslog.config import SyslogSinkConfig

log = structlog.get_logger("sinks.syslog")


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# OpenSSL's X509_V_ERR_* codes, grouped by what the operator must change
_UNTRUSTED = frozenset({2, 18, 19, 20, 21})  # no issuer, self-signed, issuer not trusted locally
_OUT_OF_DATE = frozenset({9, 10})  # not yet valid, expired
_WRONG_NAME = frozenset({62, 64})  # hostname or IP address mismatch


def _tls_hint(code: int, config: SyslogSinkConfig) -> str:
    """What to fix when the receiver's certificate does not verify: the sink keeps refusing
    it (``verify`` stays on) and only the operator can change one of these."""
    if code in _UNTRUSTED:
        return "its issuer is not trusted here: set ca_file to the CA that signed the receiver's certificate"
    if code in _OUT_OF_DATE:
        return "renew the receiver's certificate, or check this host's clock"
    if code in _WRONG_NAME:
        return (
            f"the certificate does not name {config.server_name or config.host}: set server_name to a name it "
            "holds, or connect by that name"
        )
    return "fix the receiver's certificate, ca_file or server_name"


def where(name: str, config: SyslogSinkConfig) -> str:
    """Which sink and receiver, for errors and logs."""
    return f"syslog sink {name!r}: {config.transport} {config.host}:{config.port}"


class StreamConnection:
    """TCP or TLS: one connection, opened lazily and reopened once the receiver closed it."""

    def __init__(self, name: str, config: SyslogSinkConfig) -> None:
        self.name = name
        self.config = config
        self._ssl: ssl.SSLContext | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.transports: tuple[asyncio.WriteTransport, ...] = ()  # the stream's, and TCP's under TLS

    @property
    def _where(self) -> str:
        return where(self.name, self.config)

    async def send(self, data: bytes) -> None:
        """Return once all of ``data`` is in the kernel, or raise ``RetryableError``."""
        writer = await self.connect()
        try:
            async with asyncio.timeout(self.config.send_timeout_s):
                writer.write(data)
                await writer.drain()
                # asyncio has no event for "the socket's own buffer is empty" under TLS: poll it
                while not writer.transport.is_closing() and any(  # noqa: ASYNC110
                    transport.get_write_buffer_size() for transport in self.transports
                ):
                    await asyncio.sleep(0.005)  # a slow receiver: the rest is still in this process
                await writer.drain()  # a connection lost meanwhile emptied the buffers: this raises
        except TimeoutError as exc:  # its own line: "TimeoutError" alone sent operators to the network
            await self.disconnect()
            raise RetryableError(
                f"{self._where}: write failed: the receiver took no data for send_timeout_s="
                f"{self.config.send_timeout_s:g}s (it stopped reading: overloaded or hung?); reconnecting and "
                "sending the batch again"
            ) from exc
        except OSError as exc:
            await self.disconnect()
            raise RetryableError(
                f"{self._where}: write failed: {_why(exc)}; reconnecting and sending the batch again"
            ) from exc

    async def connect(self) -> asyncio.StreamWriter:
        # A receiver that closed the connection (restart, idle timeout) has sent a FIN, which
        # the loop has turned into EOF on the reader: reconnect now rather than write into a
        # dead socket and lose the batch.
        stale = self._writer is not None and self._writer.is_closing()
        if stale or (self._reader is not None and self._reader.at_eof()):
            log.info("syslog_reconnect", sink=self.name, reason="closed by receiver")
            await self.disconnect()
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
                self.transports = (writer.transport, tcp)
                return reader, writer
        except ssl.SSLCertVerificationError as exc:
            why = exc.verify_message or _why(exc)
            hint = _tls_hint(exc.verify_code, cfg)
            raise RetryableError(
                f"{self._where}: TLS certificate verification failed: {why}; {hint} (retrying: the events stay "
                "journaled)"
            ) from exc
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
        with self._tls_file("ca_file", cfg.ca_file):
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not cfg.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cfg.client_cert:
            key = "client_cert" if cfg.client_key is None else "client_cert/client_key"
            with self._tls_file(key, f"{cfg.client_cert}" + (f", {cfg.client_key}" if cfg.client_key else "")):
                context.load_cert_chain(cfg.client_cert, cfg.client_key)
        return context

    @contextlib.contextmanager
    def _tls_file(self, key: str, value: str | None) -> Iterator[None]:
        """ssl's errors name no file ("[Errno 2] No such file or directory"): say which setting."""
        try:
            yield
        except ssl.SSLError as exc:  # e.g. not PEM, or a key that does not match the certificate
            raise OSError(f"sinks.{self.name}.{key} {value}: {exc.reason or exc}") from None
        except OSError as exc:
            raise OSError(f"sinks.{self.name}.{key} {value}: {exc.strerror or exc}") from None

    async def disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def probe(self) -> str:
        """Connect once, apart from the sink's own connection, for ``audit-forwarder check``."""
        _, writer = await self._open()
        detail = ""
        if ssl_object := writer.get_extra_info("ssl_object"):
            verified = "certificate verified" if self.config.verify else "certificate NOT verified (verify: false)"
            detail = f" ({ssl_object.version()}, {verified})"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return f"{self._where}: connected{detail}"


class _UdpProtocol(asyncio.DatagramProtocol):
    """Flow control for datagrams: asyncio buffers when the socket is full and pauses us."""

    def __init__(self, sink: str, receiver: str) -> None:
        self.sink, self.receiver = sink, receiver  # for the log: an ICMP error says neither
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self.refused: OSError | None = None  # the last ICMP error the kernel reported, until a send reads it

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def error_received(self, exc: Exception) -> None:
        log.warning("syslog_udp_error", sink=self.sink, receiver=self.receiver, error=str(exc))
        if isinstance(exc, OSError):
            self.refused = exc

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()


def _pending_error(transport: asyncio.DatagramTransport) -> OSError | None:
    """The error the kernel holds for the socket (an ICMP unreachable), read and cleared."""
    sock = transport.get_extra_info("socket")
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if sock is not None else 0
    return OSError(code, os.strerror(code)) if code else None


class DatagramConnection:
    """UDP: one socket, fire and forget, reopened after an error closed it."""

    def __init__(self, name: str, config: SyslogSinkConfig) -> None:
        self.name = name
        self.config = config
        self._udp: tuple[asyncio.DatagramTransport, _UdpProtocol] | None = None

    @property
    def _where(self) -> str:
        return where(self.name, self.config)

    async def endpoint(self) -> tuple[asyncio.DatagramTransport, _UdpProtocol]:
        if self._udp is not None and self._udp[1].closed:
            self._udp = None
        if self._udp is None:
            loop = asyncio.get_running_loop()
            try:
                self._udp = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self.name, f"{self.config.host}:{self.config.port}"),
                    remote_addr=(self.config.host, self.config.port),
                )
            except OSError as exc:
                raise RetryableError(f"{self._where}: cannot open socket: {exc}") from exc
        return self._udp

    async def send(self, messages: Sequence[bytes]) -> None:
        """One datagram per message, as fast as the socket takes them. UDP has no answer, but the
        kernel reports an ICMP error (port or host unreachable: nobody listens there) as the
        socket's error: one reported while the batch is sent, or pending once its last datagram
        left, fails the batch (retried: the datagrams were dropped). On loopback the error is
        there before ``sendto`` returns; from afar it may come after the batch was counted (those
        datagrams are lost: UDP cannot say), and then fails the next batch before it is sent, so
        that the sink backs off while nobody listens. The error is taken as it fails a batch: the
        retry sends."""
        transport, protocol = await self.endpoint()
        if stale := _pending_error(transport):
            protocol.error_received(stale)
        if protocol.refused is not None:  # arrived after the last batch was counted
            self._refused(protocol)
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
        if pending := _pending_error(transport):
            protocol.error_received(pending)
        if protocol.refused is not None:
            self._refused(protocol)

    def _refused(self, protocol: _UdpProtocol) -> NoReturn:
        refused, protocol.refused = protocol.refused, None
        raise RetryableError(
            f"{self._where}: the receiver refused datagrams ({_why(refused or OSError())}): is the syslog "
            "server listening on this UDP port? The batch is sent again; UDP says nothing when datagrams are "
            "lost silently, so prefer tcp or tls for audit data"
        )

    async def probe(self) -> str:
        """Resolve the receiver for ``audit-forwarder check``: UDP has nothing else to try."""
        cfg = self.config
        try:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise RetryableError(f"{self._where}: cannot resolve: {exc}") from exc
        return f"{self._where}: resolves to {infos[0][4][0]}; UDP has no handshake, nothing was sent"

    def close(self) -> None:
        if self._udp is not None:
            self._udp[0].close()
            self._udp = None
