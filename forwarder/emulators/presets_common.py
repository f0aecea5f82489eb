"""What the preset vendors' emulators (Okta, GitHub, Google Workspace) share.

* ``Store``: entries per organization with their event time and the time they become
  visible, so a test can post a *late arrival* (an entry whose time is already behind the
  forwarder's watermark, published ``_delay_s`` seconds later) as the vendors document them;
* keyset page tokens over (time, id), which stay right when entries arrive between pages;
* ``Quota``: a fixed-window request limit stated in the vendor's rate-limit headers, answered
  with the vendor's refusal (429, or 403 with zero remaining) once spent.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forwarder.emulators.base import Response


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Stored:
    time_ms: int
    key: str
    org: str
    entry: dict[str, Any]
    visible_ms: int = 0


@dataclass
class Store:
    items: list[Stored] = field(default_factory=list)

    def add(self, org: str, time_ms: int, key: str, entry: dict[str, Any], delay_s: float = 0.0) -> None:
        self.items.append(Stored(time_ms, key, org, entry, now_ms() + int(delay_s * 1000)))

    def window(self, org: str, lo_ms: int, hi_ms: int, after: tuple[int, str] | None = None) -> list[Stored]:
        """Visible entries of ``org`` with ``lo_ms <= time <= hi_ms``, oldest first, after ``after``."""
        now = now_ms()
        found = [s for s in self.items if s.org == org and lo_ms <= s.time_ms <= hi_ms and s.visible_ms <= now]
        found.sort(key=lambda s: (s.time_ms, s.key))
        if after is not None:
            found = [s for s in found if (s.time_ms, s.key) > after]
        return found

    def orgs(self) -> list[str]:
        return sorted({s.org for s in self.items})


def page_token(item: Stored) -> str:
    return base64.urlsafe_b64encode(f"{item.time_ms}|{item.key}".encode()).decode().rstrip("=")


def read_token(token: str | None) -> tuple[int, str] | None:
    """None for no token; raises ValueError for one this emulator did not write."""
    if not token:
        return None
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    when, _, key = raw.partition("|")
    return int(when), key


HeaderStyle = Callable[[int, int, int], dict[str, str]]


def okta_headers(limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    return {"X-Rate-Limit-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Reset": str(reset_s)}  # fmt: skip


def github_headers(limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(limit - remaining), "x-ratelimit-reset": str(reset_s),
            "x-ratelimit-resource": "audit_log"}  # fmt: skip


def no_headers(limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    return {}


@dataclass
class Quota:
    """``limit`` requests per fixed ``window_s`` window (aligned to the epoch, as the vendors'
    resets are); 0 means no limit. ``used`` and ``refused`` are for the tests."""

    limit: int = 0
    window_s: float = 60.0
    headers: HeaderStyle = no_headers
    used: int = 0
    refused: int = 0
    _window: int = -1
    _count: int = 0

    def take(self) -> tuple[bool, dict[str, str]]:
        if self.limit <= 0:
            self.used += 1
            return True, {}
        now = time.time()
        window = int(now // self.window_s)
        if window != self._window:
            self._window, self._count = window, 0
        reset_s = int((window + 1) * self.window_s)
        if self._count >= self.limit:
            self.refused += 1
            return False, {**self.headers(self.limit, 0, reset_s), "Retry-After": str(max(1, int(reset_s - now)))}
        self._count += 1
        self.used += 1
        return True, self.headers(self.limit, self.limit - self._count, reset_s)


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    response.headers.update(headers)
    return response
