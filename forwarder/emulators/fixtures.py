"""What the ConfigCat, Codescoring and CodeStax emulators share: a time-sorted store and fixtures.

The benchmark serves hundreds of thousands of entries page by page, so the store keeps them
sorted by (time, id) and answers a time window with two bisects instead of a scan per page.
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

T = TypeVar("T")

US_PER_DAY = 86_400 * 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PEOPLE = [
    ("Jane Doe", "jane.doe@example.com"),
    ("John Smith", "john.smith@example.com"),
    ("Alice Martin", "alice.martin@example.org"),
    ("Bob Nguyen", "bob.nguyen@example.net"),
    ("Carol Ivanova", "carol.ivanova@example.com"),
    ("Dmitry Petrov", "d.petrov@example.ru"),
    ("Erin O'Brien", "erin.obrien@example.com"),
    ("Farid Haddad", "farid.haddad@example.org"),
]


def timeline_ms(count: int, options: Mapping[str, Any]) -> list[int]:
    """``count`` instants spread evenly over ``span_s`` (default one day) ending at ``end_ms``
    (default now), oldest first: every emulator reads the generation options the same way."""
    span_ms = int(float(options.get("span_s", 86400)) * 1000)
    end_ms = int(options.get("end_ms") or time.time() * 1000)
    return [end_ms - int(span_ms * (count - 1 - i) / max(count, 1)) for i in range(count)]


def renamed(item: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``item`` with its top-level fields renamed (old name -> new name): the entry shapes of
    the vendors without a documented audit endpoint are guesses ([INF]), so an emulator can
    serve another guess and a test can check that a setting, not code, follows it."""
    return {names.get(k, k): v for k, v in item.items()} if names else item


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from the emulator's seeded generator, so fixtures repeat."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def documentation_ip(rng: random.Random) -> str:
    """An address from the RFC 5737 documentation ranges: realistic, never anyone's."""
    prefix = rng.choice(["192.0.2", "198.51.100", "203.0.113"])
    return f"{prefix}.{rng.randint(1, 254)}"


class Timeline(Generic[T]):
    """Records sorted by (time in µs, id); a window comes back newest first, ties by id desc."""

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []
        self._records: list[T] = []
        self._pending: list[tuple[tuple[int, int], T]] = []

    def add(self, ts_us: int, record_id: int, record: T) -> None:
        self._pending.append(((ts_us, record_id), record))

    def _settle(self) -> None:
        """Adding in bulk then sorting once is far cheaper than an insort per entry."""
        if self._pending:
            merged = sorted([*zip(self._keys, self._records, strict=True), *self._pending], key=lambda p: p[0])
            self._keys = [k for k, _ in merged]
            self._records = [r for _, r in merged]
            self._pending = []

    def window(self, lo_us: int | None = None, hi_us: int | None = None) -> list[T]:
        """Records with ``lo_us <= time <= hi_us`` (both inclusive), newest first."""
        self._settle()
        start = 0 if lo_us is None else bisect.bisect_left(self._keys, (lo_us, -(2**63)))
        end = len(self._keys) if hi_us is None else bisect.bisect_right(self._keys, (hi_us, 2**63))
        return self._records[start:end][::-1]

    def all(self) -> list[T]:
        """Oldest first, the order the entries happened in."""
        self._settle()
        return list(self._records)

    def __len__(self) -> int:
        return len(self._keys) + len(self._pending)


def epoch_us(dt: datetime) -> int:
    """Exact integer microseconds: float timestamps lose the last digit of a µs filter bound."""
    return (dt - EPOCH) // timedelta(microseconds=1)
