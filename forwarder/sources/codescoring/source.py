"""The CodeScoring source: DRF paging (404 "Invalid page." past the end) and one walk per poll
from the newest page down to the cursor's floor, journaled as one page (the package's docstring)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar

import httpx
import structlog

from forwarder.event import format_ms
from forwarder.sources.base import Page
from forwarder.sources.codescoring.config import CodescoringConfig
from forwarder.sources.codescoring.mapping import normalize_entry
from forwarder.sources.http import MalformedResponse, make_client
from forwarder.sources.walk import WalkBudget
from forwarder.sources.window import WindowCursor, entry_keys, now_ms, time_at
from forwarder.sources.windowed import DAY_MS, HttpSource

log = structlog.get_logger("forwarder.sources.codescoring")
# An entry dated later than this after now is said: a clock or time zone that is wrong, not one
# written during the walk (those are only ``lag_s`` ahead of the walk's end).
AHEAD_MS = 5 * 60_000
MAX_SHOWN_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z: format_ms cannot write later
MAX_PAGES = 100_000  # a server that always says "next" must not keep a poll alive forever
REMEDY = (
    "poll more often (interval_s), lower initial_lookback_days for a first run, or set order: newest_first "
    "if the server lists newest first"
)


class _PastLastPage(Exception):
    """DRF answers 404 "Invalid page." past the last page: the end of the walk, not an error."""


async def _past_last_page(response: httpx.Response) -> None:
    if response.status_code == 404 and response.request.url.params.get("page", "1") != "1":
        raise _PastLastPage


class CodescoringSource(HttpSource[CodescoringConfig]):
    type_name: ClassVar[str] = "codescoring"
    vendor: ClassVar[str] = "codescoring"
    display_name: ClassVar[str] = "CodeScoring"
    unit: ClassVar[str] = "installation"

    def __init__(self, name: str, config: CodescoringConfig) -> None:
        super().__init__(name, config, on_response=_past_last_page)

    def make_client(self) -> httpx.AsyncClient:
        cfg = self.config
        return make_client(
            cfg,
            cfg.base_url,
            {"Authorization": f"Token {cfg.token.get_secret_value()}"},
            follow_redirects=True,  # Django's APPEND_SLASH redirects a path without its slash
        )

    def organizations(self) -> list[str]:
        return [self.config.installation_name]

    async def fetch_page(
        self,
        organization: str,
        page: int,
        per_page: int,
        window: tuple[int, int] | None,
        *,
        budget: WalkBudget | None = None,
    ) -> tuple[list[Any], bool | None]:
        """One page of entries, and whether the server says another follows (None: a bare
        list, which says nothing; another page is asked for while pages come back full)."""
        cfg = self.config
        params: dict[str, Any] = {"page": page, "per_page": per_page}
        if window is not None and cfg.use_time_filter:
            params[cfg.from_param], params[cfg.to_param] = format_ms(window[0]), format_ms(window[1])
        for name, value in ((cfg.user_param, cfg.user), (cfg.search_param, cfg.search)):
            if value:
                params[name] = value
        try:
            body = await self.fetcher.get_json(organization, cfg.path, params, budget=budget)
        except _PastLastPage:
            return [], False
        if isinstance(body, list):
            return body, None
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            return body["results"], bool(body.get("next"))
        raise MalformedResponse(
            f"CodeScoring answered with {type(body).__name__} for installation {organization!r}, "
            "expected a list of audit entries or a {count, next, results} envelope"
        )

    async def walk(self, organization: str, floor: int, end: int) -> list[tuple[Any, str, int]]:
        """Every entry from ``floor`` to ``end`` (ms, inclusive) as (raw, key, time), each key
        once: entries written during the walk push older ones onto the next page, which then
        repeats them. Newest first, the walk stops at the first page reaching below ``floor``,
        but only while every page so far really came newest first: an entry older than the one
        before it proves the order wrong, and a walk stopped there would skip the new entries
        at the end of an oldest-first listing."""
        per_page = self.config.per_page
        newest_first = self.config.order == "newest_first"
        time_ms = time_at(self.config.time_field)
        walked: list[tuple[Any, int]] = []
        guard = self.page_guard(organization, MAX_PAGES)
        seen = guard.seen
        previous: int | None = None  # time of the last parseable entry walked, across pages
        out_of_order = descending = False
        ahead = now_ms() + AHEAD_MS
        future: list[int] = []  # times of entries dated well after now, left for a later poll
        # One walk, journaled as one page (the module's docstring), so what it holds is bound.
        budget = self.walk_budget(organization, REMEDY)
        # 1 ms beyond each end unless the bounds are known inclusive: with overlap_s 0 the next
        # poll's window starts at this one's end, and an exclusive filter kept that instant out of
        # both (``WindowedSource.bound_pad_ms``); what lies beyond is still cut below, by time
        pad = 0 if self.config.time_bounds == "inclusive" else 1
        asked = (floor - pad, end + pad)
        while True:
            page = guard.next_page()
            items, more = await self.fetch_page(organization, page, per_page, asked, budget=budget)
            keys = self._keys(organization, items, self.config.id_field)
            if guard.stale(keys):
                if more is None:
                    break  # a bare list that ignores ``page``: the same entries again
                raise guard.looped(str(page))
            reached_floor = False
            for item, key in zip(items, keys, strict=True):
                read = time_ms(item)
                ts = end if read is None else read  # unparseable: quarantined by normalize, kept in the overlap
                if read is not None and key not in seen:  # a page shift's repeat says nothing of the order
                    if previous is not None:
                        out_of_order |= ts > previous
                        descending |= ts < previous
                    previous = ts
                if ts < floor:
                    reached_floor = True
                elif ts <= end:  # newer than now - lag: the next poll takes it, once it has settled
                    walked.append((item, ts))
                elif ts > ahead and key not in seen:
                    future.append(ts)
            guard.remember(keys)
            if reached_floor and newest_first and not out_of_order:
                break
            if not items or more is False or (more is None and len(items) < per_page):
                break
        if future:
            log.warning(
                "CodeScoring listed entries dated after now; each is collected by the poll after the clock "
                "reaches its time. Entries hours ahead mean the server writes local time without its offset: "
                "check the installation's time zone and time_field",
                source=self.name,
                installation=organization,
                entries=len(future),
                latest=format_ms(min(max(future), MAX_SHOWN_MS)),
            )
        if newest_first and out_of_order:
            log.warning(
                "CodeScoring listed entries oldest first (or unordered) although order is newest_first; "
                "every page was walked instead of stopping at the watermark. Set order: oldest_first "
                "if the server lists oldest first",
                source=self.name,
                installation=organization,
            )
        elif not newest_first and descending and not out_of_order:
            log.info(
                "CodeScoring listed every entry newest first although order is oldest_first; "
                "order: newest_first would stop walks at the watermark",
                source=self.name,
                installation=organization,
            )
        found: dict[str, tuple[Any, str, int]] = {}  # keyed over the whole walk: no twin is lost
        for (item, ts), key in zip(
            walked, self._keys(organization, [i for i, _ in walked], self.config.id_field), strict=True
        ):
            found.setdefault(key, (item, key, ts))
        return list(found.values())

    @staticmethod
    def _keys(organization: str, items: list[Any], id_field: str | None = "id") -> list[str]:
        """``codescoring:<installation>:<id>``, or a hash of the whole entry without an id."""
        return entry_keys("codescoring", "CodeScoring", organization, items, id_field, f"codescoring:{organization}:")

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        cfg = self.config
        now = now_ms()
        state = WindowCursor.load(cursor, now - int(cfg.initial_lookback_days * DAY_MS))
        overlap = int(cfg.overlap_s * 1000)
        end = now - int(cfg.lag_s * 1000)
        found = await self.walk(organization, state.watermark_ms - overlap, end)
        fresh = sorted((f for f in found if f[1] not in state.recent), key=lambda f: (f[2], f[1]))
        state.advance(end, {key: ts for _, key, ts in fresh}, overlap)
        yield Page(entries=[(item, key) for item, key, _ in fresh], cursor=state.dump())

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        cfg = self.config
        return normalize_entry(
            self.name,
            organization,
            raw,
            key,
            observed,
            cfg.time_field,
            actor_field=cfg.actor_field,
            message_field=cfg.message_field,
            duration_field=cfg.duration_field,
        )

    async def check(self) -> str:
        await self.fetch_page(self.config.installation_name, 1, 1, None)
        return f"credentials accepted for installation {self.config.installation_name!r}"
