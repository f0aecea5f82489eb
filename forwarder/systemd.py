"""sd_notify without a dependency: a few datagrams over ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd considers the service started only once it sends ``READY=1``
(so ``systemctl start`` fails loudly when the journal cannot be opened), and with
``WatchdogSec=`` it restarts a daemon whose event loop stopped sending ``WATCHDOG=1``.
Outside systemd ``NOTIFY_SOCKET`` is unset and every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send ``KEY=value`` fields; False when not under systemd or the send failed. Non-blocking,
    so it is safe on the event loop: a lost datagram is better than a stalled daemon."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not fields:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half systemd's timeout), or None if not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


def monotonic_usec() -> str:
    """The field systemd wants with ``RELOADING=1`` to tell one reload from the next."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


async def ping_watchdog(interval: float) -> None:
    """Pinging from the loop itself: a blocked or wedged loop stops the pings and systemd restarts us."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
