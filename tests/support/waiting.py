"""Waiting for a condition instead of sleeping a fixed time: the machine running the suite
may be loaded, and a fixed sleep is either too long or flaky."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_until(
    what: str,
    condition: Callable[[], Any],
    timeout: float = 60.0,
    every: float = 0.1,
    detail: Callable[[], str] = lambda: "",
) -> Any:
    """Calls ``condition`` until it returns something truthy, and returns that.

    A condition that raises a network or parse error (a server still starting, a file half
    written) counts as not yet true. A timeout fails the test naming ``what``, the last
    answer and ``detail()`` (typically the daemon's log tail).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = condition()
        except (httpx.HTTPError, OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n{detail()[-4000:]}"
            )
        time.sleep(every)
