"""Loopback ports for tests: always 127.0.0.1, never any other address."""

from __future__ import annotations

import socket


def free_port(udp: bool = False) -> int:
    """A TCP (or UDP) port free on 127.0.0.1 when this returns: bound and released, so nothing
    listens there (connections are refused at once) until a test starts something on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
