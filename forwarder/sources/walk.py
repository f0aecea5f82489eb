"""What one walk over a vendor's listing may hold, and where a walk committed page by page resumes.

A walk whose pages cannot be journaled before it ends (a time slice in an unknown order, a page
number walk that must see every page before the watermark may move) holds every answer of
it in memory: without a bound, a listing that never ends took the daemon, and every other
source with it, out of memory, again after each restart. ``WalkBudget`` is that bound, counted
once, in ``HttpFetcher``, over the raw bytes of every answer; a source names the remedy.

A walk that can be committed page by page (a next link, a keyset token) holds one page: its
cursor carries ``Resume``, the slice being walked and the point to go on from, and the watermark
moves to the slice's end only once the slice is complete.

``PageGuard`` is the one guard against a vendor whose paging does not end: a page limit, a next
token that repeats the one that fetched the page, a page holding only entries already walked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from forwarder.sources.http import MalformedResponse, SourceError

log = structlog.get_logger("forwarder.sources.walk")

# What remembering one id-less entry's hash costs a walk committed page by page (key, count, dict slot).
TWIN_BYTES = 160


class WalkTooLarge(SourceError):
    """One walk held more than ``max_walk_bytes``: that organization fails, the others carry on."""


class WalkBudget:
    """The bytes one walk holds before it can be journaled; over ``limit`` the walk fails with a
    message naming the vendor, the organization, the bytes and ``remedy`` (the setting to lower).
    One per walk and organization: organizations are polled concurrently."""

    def __init__(self, vendor: str, organization: str, limit: int, remedy: str) -> None:
        self.vendor = vendor
        self.organization = organization
        self.limit = limit
        self.remedy = remedy
        self.held = 0

    def charge(self, size: int) -> None:
        """One more answer of ``size`` bytes is held until the walk is journaled."""
        self.hold(self.held + size)

    def hold(self, held: int) -> None:
        """The walk now holds ``held`` bytes (a page was journaled: only what it must remember)."""
        self.held = held
        if held > self.limit:
            raise WalkTooLarge(
                f"{self.vendor} listed more than max_walk_bytes={self.limit} for organization "
                f"{self.organization!r} in one walk ({held} bytes held before any of it could be journaled); "
                f"{self.remedy}. The cursor stays where it was"
            )


@dataclass
class Resume:
    """A slice walked page by page and not finished: ``next`` is the next link or token, ``pages``
    the answers walked so far (``max_pages`` counts over the whole walk, across restarts) and
    ``twins`` how often each id-less entry's hash was seen, so a twin on a page read after a
    restart is numbered after its sibling instead of being taken for it."""

    lo: int
    hi: int
    next: str
    pages: int = 0
    twins: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, cursor: dict[str, Any] | None) -> Resume | None:
        walk = (cursor or {}).get("walk")
        if not isinstance(walk, dict) or not isinstance(walk.get("next"), str):
            return None
        twins = walk.get("twins") or {}
        return cls(
            int(walk["lo"]),
            int(walk["hi"]),
            walk["next"],
            int(walk.get("pages", 0)),
            {str(k): int(v) for k, v in twins.items()},
        )

    def dump(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "next": self.next, "pages": self.pages, "twins": dict(self.twins)}


@dataclass
class PageGuard:
    """One walk's guard against paging that does not end, checked as each page comes (in the
    manner of singer_sdk's ``BaseAPIPaginator.advance``, which refuses a token equal to the last).

    Ending a walk early skips the rest of its window for good, looping holds the poll (and the
    memory of the walk) for ever: each source asks the guard and decides whether a repeat means
    the end (a token equal to the last: nothing more) or an error (the cursor stays). ``unit``
    names what the walk reads ("organization", "installation"); ``setting`` is the remedy when
    the limit is a setting (``max_pages``), None when it is the module's own safety bound.
    """

    label: str
    organization: str
    limit: int
    unit: str = "organization"
    setting: str | None = None
    pages: int = 0  # answers read so far, earlier polls of a resumed walk included
    token: object = None  # what fetched the page just read (a token or a URL)
    seen: set[str] = field(default_factory=set)
    earlier: set[str] = field(default_factory=set)  # what fetched the pages before it, this poll

    def next_page(self) -> int:
        """Before each request: one more page of the walk (returns how many), or fail past the limit."""
        if self.pages >= self.limit:
            if self.setting is not None:
                raise SourceError(
                    f"{self.label} paging for {self.unit} {self.organization!r} went past max_pages={self.limit}; "
                    f"{self.setting}"
                )
            raise MalformedResponse(f"{self.label} paging for {self.unit} {self.organization!r} never ended")
        self.pages += 1
        return self.pages

    def repeats(self, token: object) -> bool:
        """Whether the vendor's next token is the one that fetched the page just read, or one
        that fetched an earlier page of this walk: following it would read the same pages for
        ever. Only the first was caught, so a cycle of two pages (A, B, A, ...) ran to the page
        limit at every poll (10,000 requests by default) and failed there, asking for a higher
        limit. A cycle is said; the caller decides what a repeat means, as for the first. The
        token is the current one from here on."""
        same = token is not None and token == self.token
        if not same and token is not None and str(token) in self.earlier:
            same = True
            log.warning(
                f"{self.label} paging came back to a page this walk had already read (its next link or "
                "cursor loops); the walk does not follow it",
                organization=self.organization,
                unit=self.unit,
                pages=self.pages,
            )
        if self.token is not None:
            self.earlier.add(str(self.token))
        self.token = token
        return same

    def stale(self, keys: list[str]) -> bool:
        """Whether a page after the first holds only entries an earlier page of this walk held
        (a server that ignores the paging parameter); ``remember`` adds a page's keys."""
        return self.pages > 1 and bool(keys) and set(keys) <= self.seen

    def remember(self, keys: list[str]) -> None:
        self.seen.update(keys)

    def looped(self, where: str) -> MalformedResponse:
        """The error for a stale page: ``where`` names the page (``3``, ``skip=300``)."""
        return MalformedResponse(
            f"{self.label} sent page {where} with only entries already seen for {self.unit} "
            f"{self.organization!r}; the walk stops instead of looping"
        )

    def token_repeated(self) -> MalformedResponse:
        """The error for a token that repeats (or is not a token) where a repeat cannot be the end."""
        return MalformedResponse(
            f"{self.label} pagination for {self.unit} {self.organization!r} returned a cursor it had given "
            "before in this walk (or not a cursor at all); the cursor stays where it was"
        )
