"""Slices sized to what the vendor's last answers held, so one answer stays a few thousand entries.

A vendor that answers a whole time slice at once (Codacy: no paging) sends as many entries as the
slice holds: a 1,000,000-entry backlog over 30 days is 33,000 entries (10 MB) per 24-hour slice,
and the forwarder holds a page's parsed entries and its events' JSON until the page is journaled
with its cursor in one transaction (the promise), so its peak memory grew with the answer: 205 MB
at that shape. The walk therefore starts a first slice narrow (``START_FRACTION`` of the
configured width), then sizes each next slice from the density the last answer showed, aiming at
``aim`` entries, growing at most twofold per answer (a burst is met by a narrower slice at once,
a quiet stretch widens it again) and never wider than configured nor narrower than ``MIN_MS``.
The density is the answer's new entries over the span they occupy, from the earliest of them to
the slice's end (``occupied_ms``), not over the whole slice: a backlog that begins inside a slice
(the first answers after a quiet stretch, whose doublings took the width to the configured one)
looked sparse over the whole width, so the next slice kept that width and held the configured
slice's worth of entries at once (10,000 in the 1,000,000-event benchmark, five times the aim:
docs/performance.md, round 11). The span is never taken shorter than ``MIN_MS``, so a burst at
one instant does not shrink the next slice below what a minute of it asks for.
The width is remembered per organization for the next poll. Nothing about the cursor changes:
slices are contiguous, each page is journaled with the cursor at its slice's end, and entries on
a boundary are dropped by the remembered keys as before.
"""

from __future__ import annotations

MIN_MS = 60_000  # a denser log than ``aim`` entries a minute still gets whole-minute slices
START_FRACTION = 16  # a walk with no width remembered starts at 1/16 of the configured slice


class SliceSizer:
    """The next slice's width for one organization's walk, from the last answer's size."""

    def __init__(self, aim: int, max_ms: int, remembered: int | None = None) -> None:
        self.aim = aim
        self.max_ms = max(1, max_ms)
        start = remembered if remembered is not None else self.max_ms // START_FRACTION
        self.width = max(min(self.max_ms, MIN_MS), min(self.max_ms, start))

    def answered(self, entries: int, width_ms: int) -> int:
        """Records an answer of ``entries`` over ``width_ms`` (less than ``width`` for the slice the
        walk's end cut short); the width for the next slice."""
        wanted = 2 * self.width if entries <= 0 else max(1, width_ms) * self.aim // entries
        self.width = max(min(self.max_ms, MIN_MS), min(wanted, 2 * self.width, self.max_ms))
        return self.width


def occupied_ms(lo_ms: int, hi_ms: int, earliest_ms: int | None) -> int:
    """The span an answer's new entries occupy in the slice ``lo_ms``..``hi_ms``: from the earliest
    of them (None: no new entry, or the earliest one's time does not read, which ``take`` counts
    as ``hi``: the whole slice, the cautious guess) to the slice's end, at least ``MIN_MS`` and at most the slice."""
    width = max(1, hi_ms - lo_ms)
    if earliest_ms is None:
        return width
    return max(min(width, MIN_MS), min(width, hi_ms - earliest_ms))
