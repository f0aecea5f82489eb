"""Time windows with overlap and a set of recently seen keys: the incremental strategy for
APIs filtered by time (research notes §5).

The cursor is ``{"watermark_ms": int, "recent": {key: time_ms}}``. Each run reads from
``watermark - overlap`` to ``now - lag`` in slices; entries whose key is in ``recent`` were
already journaled (they sat in the overlap or on a slice boundary) and are skipped. Keys are
kept only while they can still be re-read, so the cursor stays small.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from forwarder.event import content_ids, format_ms, format_time, parse_ms, parse_time
from forwarder.mapping import entry_time, id_value
from forwarder.sources.http import MalformedResponse


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

    def take(
        self,
        items: list[Any],
        keys: list[str],
        time_ms: Callable[[Any], int | None],
        hi: int,
        overlap_ms: int,
        within: tuple[int, int] | None = None,
        *,
        page: bool = False,
    ) -> tuple[list[tuple[Any, str]], int]:
        """A slice's entries not journaled before, oldest first (ties by key, numeric ids in
        number order), with the cursor advanced to ``hi``; and how many were dropped for lying
        outside ``within`` (a server that ignores the time filter sends everything). An entry
        whose time does not read counts as ``hi``: normalize quarantines it, and it is
        remembered until it leaves the overlap.

        ``page``: one page of a slice journaled page by page. The watermark stays until the
        slice ends, and of this page's keys only those the next slice's overlap re-reads (time
        at or after ``hi - overlap``) are remembered, so the cursor does not grow with the walk.
        An entry a later page of the same walk shows again comes again: a duplicate, never a loss."""
        new_keys: dict[str, int] = {}
        fresh: list[tuple[Any, str]] = []
        outside = 0
        recent = self.recent
        for item, key in zip(items, keys, strict=True):
            if key in recent or key in new_keys:
                continue  # re-read from the overlap, a slice boundary, or a page shift
            ts = time_ms(item)
            ts = hi if ts is None else ts
            if within is not None and not within[0] <= ts <= within[1]:
                outside += 1
                continue
            new_keys[key] = ts
            fresh.append((item, key))
        fresh.sort(key=lambda pair: (new_keys[pair[1]], len(pair[1]), pair[1]))
        if page:
            floor = hi - overlap_ms
            self.recent.update({key: ts for key, ts in new_keys.items() if ts >= floor})
        else:
            self.advance(hi, new_keys, overlap_ms)
        return fresh, outside

    def advance(self, slice_end_ms: int, new_keys: dict[str, int], overlap_ms: int) -> None:
        self.recent.update(new_keys)
        floor = slice_end_ms - overlap_ms
        self.recent = {k: t for k, t in self.recent.items() if t >= floor}
        self.watermark_ms = max(self.watermark_ms, slice_end_ms)


def now_ms() -> int:
    return int(time.time() * 1000)


# A watermark later than now by more than this means the clock was ahead when it was written.
CLOCK_TOLERANCE_MS = 60_000


def clock_step(cursor: dict[str, Any] | None, now: int, lag_ms: int) -> tuple[dict[str, Any] | None, str | None]:
    """The cursor to poll from, and why it was pulled back if it was.

    The watermark is the local clock's slice end. After the clock ran ahead (an NTP step, a VM
    restored from a snapshot, a wrong RTC at boot) and came back, the next windows would start
    in the future: nothing asked for until real time caught up, the entries in between lost.
    A watermark more than ``CLOCK_TOLERANCE_MS`` ahead of ``now`` is pulled back to
    ``now - lag``: the window re-reads the overlap before it, never more (a backward step
    re-reads no older history), and the remembered keys drop what was journaled already.
    Checked by the poller on every cursor it loads, for every source whose cursor is a
    ``WindowCursor`` (all of them)."""
    if not cursor or not isinstance(cursor.get("watermark_ms"), int):
        return cursor, None
    watermark = cursor["watermark_ms"]
    if watermark <= now + CLOCK_TOLERANCE_MS:
        return cursor, None
    pulled = now - lag_ms
    problem = (
        f"the cursor's watermark {format_ms(watermark)} is {(watermark - now) / 1000:.0f}s ahead of this "
        f"machine's clock: the clock was ahead when it was written (or has just stepped back). Pulled back to "
        f"{format_ms(pulled)}; entries recorded while the clock was ahead, older than the overlap before that, "
        "may be missing: check the clock (NTP) and run a backfill for the time it was wrong"
    )
    return {**cursor, "watermark_ms": pulled}, problem


def slices(start_ms: int, end_ms: int, size_ms: int) -> Iterator[tuple[int, int]]:
    lo = start_ms
    while lo < end_ms:
        hi = min(lo + size_ms, end_ms)
        yield lo, hi
        lo = hi


def with_occurrence(keys: list[str], seen: dict[str, int] | None = None) -> list[str]:
    """Two byte-identical entries in one walk stay two events: the second gets ``#1``. Counted
    over the whole walk, not per response: with a keyset cursor a twin on the next page is a
    real second event, and only a duplicate (never a loss) comes of an entry that an offset
    page shift shows twice. ``seen`` carries the count over the pages of a walk journaled page
    by page (``forwarder.sources.walk.Resume.twins``)."""
    seen = {} if seen is None else seen
    out = []
    for key in keys:
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(key if n == 0 else f"{key}#{n}")
    return out


def walk_keys(
    items: list[Any],
    vendor: str,
    organization: str,
    id_field: str | list[str] | None = None,
    id_prefix: str = "",
    twins: dict[str, int] | None = None,
) -> list[str]:
    """The key of each entry of one walk: ``id_prefix`` and the vendor's id at ``id_field`` where
    it has one (an empty one is none), else a hash of the entry, twins numbered. An id seen
    again with the same content is the same event (a page shift showed it twice); with other
    content it is numbered, since dropping it could lose one. ``twins``: the hashes counted on
    earlier pages of the walk (an id's versions are compared within ``items`` only)."""
    if not id_field:
        return with_occurrence(content_ids(vendor, organization, items), twins)
    ids = [None if (ident := id_value(item, id_field)) in (None, "") else f"{id_prefix}{ident}" for item in items]
    unkeyed = [item for item, ident in zip(items, ids, strict=True) if ident is None]
    hashed = iter(with_occurrence(content_ids(vendor, organization, unkeyed), twins))
    versions: dict[str, list[Any]] = {}
    out = []
    for item, ident in zip(items, ids, strict=True):
        if ident is None:
            out.append(next(hashed))
            continue
        seen = versions.setdefault(ident, [])
        n = next((n for n, earlier in enumerate(seen) if earlier == item), len(seen))
        if n == len(seen):
            seen.append(item)
        out.append(ident if n == 0 else f"{ident}#{n}")
    return out


def entry_keys(
    vendor: str, label: str, organization: str, items: list[Any], id_field: str | list[str] | None, id_prefix: str
) -> list[str]:
    """``walk_keys`` for entries that must be objects.

    One entry that is not an object amid objects is a poisoned entry: it is keyed by its hash
    like an entry without an id and the source's normalizer quarantines it. Refusing the page
    for it held the organization's cursor at that page for good. A page where no entry is an
    object is not a listing of audit entries at all (a proxy's answer, the wrong endpoint): the
    walk fails and the cursor stays, so that a glitch does not skip the window."""
    strays = [item for item in items if not isinstance(item, dict)]
    if strays and len(strays) == len(items):
        raise MalformedResponse(
            f"{label} sent a {type(strays[0]).__name__} where an audit entry belongs, and no audit entry, "
            f"for {organization!r}; the cursor stays where it was. If it persists, check the source's "
            "base_url or path"
        )
    return walk_keys(items, vendor, organization, id_field, id_prefix)


def audit_entry(label: str, raw: Any) -> dict[str, Any]:
    """``raw`` as the object an audit entry is; else the reason it is quarantined, which
    ``entry_keys`` let through."""
    if not isinstance(raw, dict):
        raise ValueError(f"a {label} audit entry is an object, not {type(raw).__name__}")
    return raw


def time_at(field: str) -> Callable[[Any], int | None]:
    """An entry's time at ``field`` (a dotted path) in epoch ms, or None where it does not read."""

    def time_ms(item: Any) -> int | None:
        try:
            return parse_ms(entry_time(item, field))
        except ValueError:
            return None

    return time_ms


TimeFormat = Literal["iso8601", "iso8601_s", "epoch_s", "epoch_ms"]  # how a configured source writes and reads instants


def parse_instant(value: Any, fmt: TimeFormat) -> datetime:
    if value is None or isinstance(value, bool):
        raise ValueError("entry has no time")
    if fmt in ("iso8601", "iso8601_s"):
        return parse_time(str(value))
    number = float(value)
    return datetime.fromtimestamp(number / 1000 if fmt == "epoch_ms" else number, tz=UTC)


def sent_window(lo_ms: int, hi_ms: int, fmt: TimeFormat) -> tuple[int, int]:
    """The times an API may return for ``[lo_ms, hi_ms]`` once the bounds are written in ``fmt``:
    whole seconds stand for the whole second. Filtering on the exact milliseconds instead
    dropped entries early in a slice boundary's second from both slices, for good."""
    if fmt in ("epoch_s", "iso8601_s"):
        return lo_ms // 1000 * 1000, hi_ms // 1000 * 1000 + 999
    return lo_ms, hi_ms


def format_instant(ms: int, fmt: TimeFormat) -> str:
    if fmt == "epoch_ms":
        return str(ms)
    if fmt == "epoch_s":
        return str(ms // 1000)
    if fmt == "iso8601_s":
        return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return format_time(datetime.fromtimestamp(ms / 1000, tz=UTC))
