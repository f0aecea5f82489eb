"""A syslog receiver over UDP that is not listening: the kernel answers each datagram with an
ICMP port unreachable. Those datagrams were dropped, so the real daemon must not count them as
delivered: the sink retries (its lag grows, the message says what is wrong), the file sink stays
current, and once a receiver listens on the port every event arrives.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.config import file_sink, make_config, sink_lag
from tests.support.daemon import DaemonProcess, read_ndjson
from tests.support.emulators import EmulatorProcess
from tests.support.ports import free_port
from tests.support.vendors import codacy_source, expected_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

EVENT_ID = re.compile(rb' id="([^"]+)"')


class UdpReceiver:
    """Binds the port late, as a syslog server started after the forwarder would."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.ids: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if found := EVENT_ID.search(data):
                self.ids.add(found.group(1).decode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def cleanup() -> Iterator[list[DaemonProcess | UdpReceiver]]:
    started: list[DaemonProcess | UdpReceiver] = []
    yield started
    for item in reversed(started):
        item.kill() if isinstance(item, DaemonProcess) else item.close()


def test_datagrams_refused_by_a_closed_port_are_retried_until_a_receiver_listens(
    tmp_path: Path, codacy: EmulatorProcess, cleanup: list[DaemonProcess | UdpReceiver]
) -> None:
    port = free_port(udp=True)
    out = tmp_path / "out"
    syslog = {"type": "syslog", "host": "127.0.0.1", "port": port, "transport": "udp", "batch_max_age_s": 0.05}
    cfg = make_config(tmp_path, codacy_source(codacy.url), {"file": file_sink(out), "siem": syslog})
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    cleanup.append(daemon)
    want = expected_ids(codacy)
    wait_until(
        "the file sink to get the backlog", lambda: {e["id"] for e in read_ndjson(out)} == want, detail=daemon.log
    )
    wait_until(
        "the refusal to be reported", lambda: "the receiver refused datagrams" in daemon.log(), detail=daemon.log
    )
    assert sink_lag(cfg, "siem") >= 1, "refused datagrams are not delivered: the offset stays"
    assert sink_lag(cfg, "file") == 0
    assert f"udp 127.0.0.1:{port}: the receiver refused datagrams" in daemon.log()

    receiver = UdpReceiver(port)
    cleanup.append(receiver)
    wait_until("every event at the receiver", lambda: receiver.ids >= want, detail=daemon.log)
    wait_until("the lag to drain", lambda: sink_lag(cfg, "siem") == 0, detail=daemon.log)
    assert daemon.stop() == 0


async def test_a_refusal_that_arrives_after_a_batch_was_counted_fails_the_next_before_it_is_sent() -> None:
    """From afar the ICMP comes one round trip after ``send`` returned: the next batch fails
    unsent (the sink backs off while nobody listens), and the retry after it sends."""
    from sinks.base import RetryableError
    from sinks.syslog.config import SyslogSinkConfig
    from sinks.syslog.transport import DatagramConnection

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    port = receiver.getsockname()[1]
    udp = DatagramConnection("late", SyslogSinkConfig(type="syslog", host="127.0.0.1", port=port, transport="udp"))
    try:
        await udp.send([b"first"])
        assert receiver.recv(100) == b"first"
        _, protocol = await udp.endpoint()
        protocol.error_received(ConnectionRefusedError(111, "Connection refused"))  # the late ICMP
        with pytest.raises(RetryableError, match="refused datagrams"):
            await udp.send([b"second"])
        await udp.send([b"second"])  # the retry
        assert receiver.recv(100) == b"second"
        receiver.settimeout(0.3)
        with pytest.raises(TimeoutError):
            receiver.recv(100)  # the failed attempt sent nothing
    finally:
        receiver.close()
        transport, _ = await udp.endpoint()
        transport.close()
