"""What the preset vendors' emulators (Okta, GitHub, Google Workspace) share.

* ``Store``: entries per organization with their event time and the time they become
  visible, so a test can post a *late arrival* (an entry whose time is already behind the
  forwarder's watermark, published ``_delay_s`` seconds later) as the vendors document them;
* keyset page tokens over (time, id), which stay right when entries arrive between pages;
* ``Quota``: a fixed-window request limit stated in the vendor's rate-limit headers, answered
  with the vendor's refusal (429, or 403 with zero remaining) once spent, with those headers
  and no ``Retry-After`` (Okta documents its three ``X-Rate-Limit-*`` headers only);
* ``PresetEmulator``: the emulator contract's organizations, generation and entries over a
  ``Store``, and the ``rate_limit``/``rate_window_s`` switches of its ``Quota``.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from forwarder.emulators.base import Emulator, Response
from forwarder.emulators.fixtures import timeline_ms


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
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(reset_s),
    }


def github_headers(limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-used": str(limit - remaining),
        "x-ratelimit-reset": str(reset_s),
        "x-ratelimit-resource": "audit_log",
    }


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
            # the vendor's own headers only: none of the three documents a Retry-After on a spent limit
            self.refused += 1
            return False, self.headers(self.limit, 0, reset_s)
        self._count += 1
        self.used += 1
        return True, self.headers(self.limit, self.limit - self._count, reset_s)


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    response.headers.update(headers)
    return response


class PresetEmulator(Emulator):
    """A preset vendor's emulator: its entries in a ``Store`` by organization, its ``Quota``."""

    default_organizations: ClassVar[tuple[str, ...]]  # one, so the contract suite's source reads them all

    def __init__(self, seed: int, quota: Quota) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.store = Store()
        self.quota = quota

    def configure(self, options: dict[str, Any]) -> None:
        """``rate_limit`` (requests per ``rate_window_s``) on top of the generic switches."""
        options = dict(options)
        if "rate_limit" in options:
            self.quota.limit = int(options.pop("rate_limit"))
        if "rate_window_s" in options:
            self.quota.window_s = float(options.pop("rate_window_s"))
        super().configure(options)

    def organizations(self, given: list[str] | None = None) -> list[str]:
        """The organizations asked for, else the ones held, else the default one."""
        return [str(org) for org in given or []] or self.store.orgs() or list(self.default_organizations)

    def make_entry(self, ts: int, org: str) -> tuple[dict[str, Any], str]:
        """A generated entry at ``ts`` and the key the store orders it by."""
        raise NotImplementedError

    def generate(self, count: int, **options: Any) -> list[dict[str, Any]]:
        created = []
        for org in self.organizations(options.get("orgs")):
            for ts in timeline_ms(count, options):
                entry, key = self.make_entry(ts, org)
                self.store.add(org, ts, key, entry)
                created.append(entry)
        return created

    def all_entries(self) -> list[dict[str, Any]]:
        return [{**s.entry, "_org": s.org} for s in self.store.items]
