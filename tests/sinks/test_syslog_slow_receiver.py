"""A syslog receiver that stops reading: ``send`` may only return once no byte of the batch is
left in this process, since the delivery layer commits the offset right after it and a kill -9
would lose whatever was still in asyncio's buffers (``drain()`` alone leaves up to 64 KiB)."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from forwarder.record import Record
from sinks.base import RetryableError
from sinks.syslog.config import SyslogSinkConfig
from sinks.syslog.sink import SyslogSink
from tests.support.rsyslog import Pki, make_pki

pytestmark = pytest.mark.integration


class StalledReceiver:
    """Accepts one connection (and its TLS handshake), then reads nothing until ``drain``."""

    def __init__(self, pki: Pki | None) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        if pki is not None:
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.conn: socket.socket | None = None
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        conn, _ = self.server.accept()
        self.conn = self.context.wrap_socket(conn, server_side=True) if self.context else conn
        self.accepted.set()

    def drain(self) -> bytes:
        assert self.accepted.wait(5) and self.conn is not None
        self.conn.settimeout(1.0)
        data = b""
        try:
            while chunk := self.conn.recv(1 << 16):
                data += chunk
        except (TimeoutError, ssl.SSLError):
            pass
        return data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture(params=["tcp", "tls"])
def receiver(request: pytest.FixtureRequest, pki: Pki) -> Iterator[tuple[str, StalledReceiver]]:
    transport = request.param
    stalled = StalledReceiver(pki if transport == "tls" else None)
    yield transport, stalled
    stalled.close()


def batch(first: int, size: int = 20) -> list[Record]:
    return [
        Record(
            n,
            f"ev{n}",
            "src",
            "org",
            1_700_000_000_000,
            orjson.dumps({"id": f"ev{n}", "pad": "x" * 400}),
            "codacy",
            "a",
            "c",
            "success",
        )
        for n in range(first, first + size)
    ]


async def test_send_returns_only_once_nothing_is_left_in_the_process(
    receiver: tuple[str, StalledReceiver], pki: Pki
) -> None:
    transport, stalled = receiver
    tls = {"ca_file": str(pki.ca), "server_name": "localhost"} if transport == "tls" else {}
    config = SyslogSinkConfig(
        type="syslog", host="127.0.0.1", port=stalled.port, transport=transport, send_timeout_s=0.5, **tls
    )
    sink = SyslogSink("slow", config)
    confirmed = 0
    with pytest.raises(RetryableError, match=r"write failed: the receiver took no data for send_timeout_s=0\.5s"):
        for first in range(0, 1_000_000, 20):  # until the kernel's buffers are full too
            await sink.send(batch(first))
            assert sum(t.get_write_buffer_size() for t in sink._transports) == 0
            confirmed = first + 20
    assert confirmed > 0
    received = stalled.drain()
    await sink._disconnect()
    # what send confirmed was in the kernel, so the receiver gets all of it once it reads again
    assert set(range(confirmed)) <= {int(n) for n in re.findall(rb'"id":"ev(\d+)"', received)}


async def test_a_connection_reset_while_waiting_fails_the_batch(
    receiver: tuple[str, StalledReceiver], pki: Pki
) -> None:
    """A reset empties asyncio's buffers: the bytes are gone, not sent, so the wait for empty
    buffers must not read it as success."""
    transport, stalled = receiver
    tls = {"ca_file": str(pki.ca), "server_name": "localhost"} if transport == "tls" else {}
    config = SyslogSinkConfig(
        type="syslog", host="127.0.0.1", port=stalled.port, transport=transport, send_timeout_s=20, **tls
    )
    sink = SyslogSink("reset", config)
    pending = None
    for first in range(0, 1_000_000, 200):  # until a batch stays (partly) in the process
        pending = asyncio.create_task(sink.send(batch(first, 200)))
        await asyncio.sleep(0.05)
        if not pending.done():
            break
        pending.result()
    assert pending is not None and not pending.done()
    assert stalled.accepted.wait(5) and stalled.conn is not None
    stalled.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stalled.conn.close()  # with linger 0: a TCP reset
    with pytest.raises(RetryableError, match="write failed"):
        await asyncio.wait_for(pending, 10)
    await sink._disconnect()
