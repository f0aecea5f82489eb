"""Where a backfill keeps its progress: a row of the ``cursors`` table named
``SOURCE#backfill:SINCE:UNTIL``. Apart from ``tools/backfill.py`` (which pulls in the daemon and
rich) so that ``state show`` can tell such a row from a live cursor without loading them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

TAG = "#backfill:"
STAMP = "%Y%m%dT%H%M%SZ"


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(STAMP)


def backfill_key(source: str, since_ms: int, until_ms: int) -> str:
    return f"{source}{TAG}{stamp(since_ms)}:{stamp(until_ms)}"


@dataclass(frozen=True)
class BackfillWindow:
    source: str
    since_ms: int
    until_ms: int


def window_of(key: str) -> BackfillWindow | None:
    """The window a progress row's name holds; None for a live cursor (or a name not ours)."""
    source, tag, bounds = key.partition(TAG)
    since, _, until = bounds.partition(":")
    if not tag:
        return None
    try:
        since_ms, until_ms = (
            int(datetime.strptime(b, STAMP).replace(tzinfo=UTC).timestamp()) * 1000 for b in (since, until)
        )
    except ValueError:
        return None
    return BackfillWindow(source, since_ms, until_ms)
