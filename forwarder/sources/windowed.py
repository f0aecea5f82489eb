"""What every HTTP source shares, and the window walk every time-filtered source shares.

``HttpSource`` holds a source's name, config, client and fetcher, and says on the class how
the vendor is named (``display_name``: messages, the SIEM formats) and how long it keeps its
audit log (``retention_days``). ``WindowedSource`` is the incremental strategy of research notes
§5 written once: from the cursor's watermark minus the overlap (never before the retention) to
now minus the lag, in slices; each slice fetched (``fetch_window``), keyed (``keys``), its new
entries taken oldest first by ``WindowCursor`` and journaled with the cursor at the slice's end,
with the retention gap (``forwarder.sources.gaps``) on the first page. A vendor module gives
the hooks: how to read one window, how to key and time an entry. A slice may also be walked
page by page (``walk_slice``, ``resume_point``: http_json's next links and cursors).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from forwarder.sources.answer_size import SliceSizer, occupied_ms
from forwarder.sources.base import Page, SourceConfig
from forwarder.sources.gaps import retention_gap
from forwarder.sources.http import HttpFetcher
from forwarder.sources.tenants import Tenants
from forwarder.sources.walk import PageGuard, Resume, WalkBudget
from forwarder.sources.window import WindowCursor, entry_keys, now_ms, slices

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
C = TypeVar("C", bound=SourceConfig)


class HttpSource(Generic[C]):
    """A source that reads one vendor over HTTP; subclasses build the client (``make_client``
    from ``forwarder.sources.http``) and register in ``forwarder/sources/__init__.py``."""

    type_name: ClassVar[str]
    vendor: ClassVar[str]
    display_name: ClassVar[str]  # the vendor as people write it: messages, CEF/LEEF/ECS/OCSF vendor fields
    retention_days: ClassVar[float | None] = None  # how long the vendor keeps entries; None: not known
    unit: ClassVar[str] = "organization"  # what one of ``organizations()`` is, in messages

    def __init__(
        self,
        name: str,
        config: C,
        *,
        on_response: Callable[[httpx.Response], Awaitable[None]] | None = None,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.client = self.make_client()
        self.slice_widths: dict[str, int] = {}  # per organization, the width its last walk ended with
        self.fetcher = HttpFetcher.for_source(
            self.client, self.label, config, on_response=on_response, before_attempt=before_attempt
        )
        # discovered or typed organizations, and those with credentials of their own (forwarder.sources.tenants)
        self.tenants = Tenants(self.label, getattr(config, "organizations", []))
        self.children: dict[str, HttpSource[C]] = {
            org: type(self)(name, org_config) for org, org_config in getattr(config, "credentials", {}).items()
        }

    def make_client(self) -> httpx.AsyncClient:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The vendor's name in messages (http_json: the configured vendor)."""
        return self.display_name

    def organizations(self) -> list[str]:
        return list(self.tenants.current)

    async def refresh_organizations(self, *, force: bool = False) -> bool:
        """Reads the vendor's organization listing again when due (``organizations.discover``);
        the ``Poller`` calls it before each cycle. True if the list changed."""
        config = self.config
        base = str(getattr(config, "base_url", None) or getattr(config, "url", ""))
        return await self.tenants.refresh(self._list_organizations, base, force=force)

    async def _list_organizations(self, url: str, params: Any) -> tuple[Any, httpx.Headers]:
        last: list[httpx.Response] = []

        async def keep(response: httpx.Response) -> None:
            last[:] = [response]

        fetcher = HttpFetcher.for_source(self.client, self.label, self.config, on_response=keep)
        body = await fetcher.get_json("(organization listing)", url, params)
        return body, last[0].headers if last else httpx.Headers()

    def page_guard(self, organization: str, limit: int, setting: str | None = None) -> PageGuard:
        """The guard of one walk's paging (``forwarder.sources.walk.PageGuard``)."""
        return PageGuard(self.label, organization, limit, self.unit, setting)

    def walk_budget(self, organization: str, remedy: str) -> WalkBudget:
        """The memory bound of one walk held to its end; ``remedy`` names the setting to lower."""
        return WalkBudget(self.label, organization, self.config.max_walk_bytes, remedy)

    async def close(self) -> None:
        for child in self.children.values():
            await child.close()
        await self.client.aclose()


@dataclass
class Walk:
    """One poll of one organization: the cursor it moves, and the retention gap, journaled with
    the first page it yields (so in the same transaction as the cursor that moves past it)."""

    organization: str
    state: WindowCursor
    overlap: int
    gap: list[dict[str, Any]] = field(default_factory=list)
    warned: bool = False  # entries outside the window asked for were reported this poll
    answered: int = 0  # new entries the last slice's answer held (``answer_size``)
    occupied: int = 0  # the span they occupy in it, ms (``answer_size.occupied_ms``)

    def page(self, entries: list[tuple[Any, str]], cursor: dict[str, Any]) -> Page:
        page = Page(entries=entries, cursor=cursor, extra_events=self.gap)
        self.gap = []
        return page


class WindowedSource(HttpSource[C]):
    """The time-window walk; a vendor module implements ``fetch_window``, ``keys`` and ``time_ms``."""

    check_message: ClassVar[str] = "credentials accepted for {n} organization(s)"
    # Entries one answer should hold, for a vendor that answers a whole slice at once: slices are
    # then sized to it (``forwarder.sources.answer_size``); None keeps the configured width.
    answer_entries: ClassVar[int | None] = None

    async def fetch_window(self, organization: str, lo_ms: int, hi_ms: int) -> list[Any]:
        """Every entry the vendor lists from ``lo_ms`` to ``hi_ms``, in any order; a walk held to
        its end is bound by a ``WalkBudget``."""
        raise NotImplementedError

    def keys(self, organization: str, items: list[Any]) -> list[str]:
        """The stable key of each entry of one walk (``forwarder.sources.window.walk_keys``)."""
        raise NotImplementedError

    def time_ms(self, raw: Any) -> int | None:
        """An entry's time in epoch ms, None where it does not read (normalize quarantines it)."""
        raise NotImplementedError

    def entry_keys(self, organization: str, items: list[Any], id_field: str | None, id_prefix: str) -> list[str]:
        """``keys`` for entries that must be objects, under this source's vendor and name."""
        return entry_keys(self.vendor, self.label, organization, items, id_field, id_prefix)

    def within(self, lo_ms: int, hi_ms: int) -> tuple[int, int] | None:
        """The times a window may hold; an entry outside is dropped (None: no check)."""
        return None

    def warn_outside(self, organization: str, count: int) -> None:
        """Entries outside the window asked for were dropped: said once a poll."""

    def retention(self) -> float | None:
        """Days the vendor keeps entries: the setting ``retention_days`` where plans differ, else the class's."""
        days: float | None = getattr(self.config, "retention_days", self.retention_days)
        return days

    def bound_pad_ms(self) -> int:
        """How far beyond each end of a slice the vendor is asked. Codacy's, ConfigCat's and
        CodeStax's documents (and many an http_json vendor's) do not say whether their time
        filter includes the instants it names; under the exclusive reading, two adjacent exact
        windows both leave out the entry stamped at their common end, for good (only the last
        window's end is re-read by the next poll's overlap). One millisecond more on each side
        reads it either way; under the inclusive reading the repeat carries a key
        ``WindowCursor.take`` remembers and is dropped."""
        return 0 if getattr(self.config, "time_bounds", "inclusive") == "inclusive" else 1

    def slice_ms(self, start_ms: int, end_ms: int) -> int:
        return int(getattr(self.config, "slice_hours", 24.0) * HOUR_MS)

    def resume_point(self, cursor: dict[str, Any] | None) -> Resume | None:
        """A slice the last poll left mid-walk (walks committed page by page only)."""
        return None

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        child = self.children.get(organization)
        if isinstance(child, WindowedSource):  # an organization with credentials of its own
            async for page in child.pages(organization, cursor):
                yield page
                del page
            return
        cfg = self.config
        now = now_ms()
        state = WindowCursor.load(cursor, now - int(cfg.initial_lookback_days * DAY_MS))
        end = now - int(cfg.lag_s * 1000)
        walk = Walk(organization, state, int(cfg.overlap_s * 1000))
        start = state.watermark_ms - walk.overlap
        days = self.retention()
        oldest = None if days is None else now - int(days * DAY_MS)
        if oldest is not None:
            start = max(start, oldest)
            walk.gap = retention_gap(
                vendor=self.event_vendor,
                source=self.name,
                organization=organization,
                cursor_ms=state.watermark_ms if cursor else None,
                oldest_ms=oldest,
            )
        resume = self.resume_point(cursor)
        if resume is not None:  # a slice left mid-walk: finish it before the next
            async for page in self.walk_slice(walk, resume.lo, resume.hi, resume):
                yield page
                del page  # not held while the next answer is read
            start = max(start, resume.hi)
        width = self.slice_ms(start, end)
        if self.answer_entries is None:
            for lo, hi in slices(start, end, width):
                async for page in self.walk_slice(walk, lo, hi):
                    yield page
                    del page
        else:  # each answer's size sets the next slice's width, so no answer holds the whole backlog
            widths = self.slice_widths
            sizer = SliceSizer(self.answer_entries, width, widths.get(organization))
            lo = start
            while lo < end:
                hi = min(lo + sizer.width, end)
                async for page in self.walk_slice(walk, lo, hi):
                    yield page
                    del page
                widths[organization] = sizer.answered(walk.answered, walk.occupied)
                lo = hi
        if walk.gap and oldest is not None:  # nothing to walk (lag longer than the run's window): the gap is news
            state.watermark_ms = max(state.watermark_ms, oldest)
            yield walk.page([], state.dump())

    @property
    def event_vendor(self) -> str:
        """The vendor events (and gap events) carry."""
        return self.vendor

    async def walk_slice(self, walk: Walk, lo: int, hi: int, resume: Resume | None = None) -> AsyncIterator[Page]:
        """One slice as one page: read whole, its new entries journaled with the cursor at ``hi``."""
        pad = self.bound_pad_ms()
        items = await self.fetch_window(walk.organization, lo - pad, hi + pad)
        keys = self.keys(walk.organization, items)
        within = self.within(lo - pad, hi + pad)
        # keys are kept down to what the next read re-reads: the overlap and the pad before it
        fresh, outside = walk.state.take(items, keys, self.time_ms, hi, walk.overlap + pad, within=within)
        del items, keys  # only ``fresh`` is needed from here; the next fetch must not sit beside it
        walk.answered = len(fresh)  # oldest first: the first one's time says where the new entries begin
        walk.occupied = occupied_ms(lo, hi, self.time_ms(fresh[0][0]) if fresh else None)
        if outside and not walk.warned:  # at once: such a walk may spend a request budget before the poll ends
            walk.warned = True
            self.warn_outside(walk.organization, outside)
        page = walk.page(fresh, walk.state.dump())
        del fresh
        yield page
        del page

    async def check(self) -> str:
        now = now_ms()
        await self.refresh_organizations(force=True)
        units = self.organizations()
        for unit in units:
            source = self.children.get(unit, self)
            assert isinstance(source, WindowedSource)
            await source.fetch_window(unit, now - 60_000, now)
        return self.check_message.format(n=len(units), vendor=self.label)
