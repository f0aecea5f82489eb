"""Time windows with overlap and a set of recently seen keys: the incremental strategy for
APIs filtered by time (research notes §5).

The cursor is ``{"watermark_ms": int, "recent": {key: time_ms}}``. Each run reads from
``watermark - overlap`` to ``now - lag`` in slices; entries whose key is in ``recent`` were
already journaled (they sat in the overlap or on a slice boundary) and are skipped. Keys are
kept only while they can still be re-read, so the cursor stays small.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class WindowCursor:
    watermark_ms: int
    recent: dict[str, int]

    @classmethod
    def load(cls, cursor: dict[str, Any] | None, initial_ms: int) -> WindowCursor:
        if not cursor:
            return cls(initial_ms, {})
        return cls(int(cursor["watermark_ms"]), {str(k): int(v) for k, v in cursor.get("recent", {}).items()})

    def dump(self) -> dict[str, Any]:
        return {"watermark_ms": self.watermark_ms, "recent": dict(self.recent)}

    def advance(self, slice_end_ms: int, new_keys: dict[str, int], overlap_ms: int) -> None:
        self.recent.update(new_keys)
        floor = slice_end_ms - overlap_ms
        self.recent = {k: t for k, t in self.recent.items() if t >= floor}
        self.watermark_ms = max(self.watermark_ms, slice_end_ms)


def now_ms() -> int:
    return int(time.time() * 1000)


def slices(start_ms: int, end_ms: int, size_ms: int) -> Iterator[tuple[int, int]]:
    lo = start_ms
    while lo < end_ms:
        hi = min(lo + size_ms, end_ms)
        yield lo, hi
        lo = hi


def with_occurrence(keys: list[str]) -> list[str]:
    """Two byte-identical entries in one response stay two events: the second gets ``#1``."""
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(key if n == 0 else f"{key}#{n}")
    return out
