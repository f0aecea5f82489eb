"""``type: http_json``: any JSON audit API described entirely in the YAML.

A vendor without a dedicated module can still be forwarded: the URL, auth, paging style,
where the records sit, how their time reads and how fields map to the normalized event are
all configuration. The incremental strategy is the same as the dedicated sources' (time
windows with overlap, dedup on an id or a content hash, ``forwarder.sources.window``).

The field mapping itself (``forwarder.mapping``) is shared with the ConfigCat module, so a
vendor described here and a dedicated source map entries the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import orjson
import structlog

from forwarder.mapping import Mapper, get_path
from forwarder.sources.base import Page
from forwarder.sources.http import HttpFetcher, MalformedResponse, RetryableHTTPError, SourceError, make_client
from forwarder.sources.http_auth import credentials
from forwarder.sources.http_json_config import HttpJsonConfig
from forwarder.sources.pagination import follow_link, next_link, next_token
from forwarder.sources.split import Part, split, split_keys
from forwarder.sources.walk import TWIN_BYTES, PageGuard, Resume, WalkBudget, WalkTooLarge
from forwarder.sources.window import format_instant, parse_instant, sent_window, walk_keys
from forwarder.sources.windowed import HOUR_MS, Walk, WindowedSource

log = structlog.get_logger("forwarder.sources.http_json")
# Styles whose next link or token goes on from where a page ended: each page is journaled as it
# comes (when the vendor lists oldest first). Page numbers and offsets shift under entries written
# meanwhile, an unpaged answer is the whole slice, and pages listed newest first would journal a
# slice backwards: those walks are held to their end, bound by max_walk_bytes.
PAGED_STYLES = ("cursor", "next_link_body", "link_header")


# --- the source ----------------------------------------------------------------------------
class HttpJsonSource(WindowedSource[HttpJsonConfig]):
    type_name: ClassVar[str] = "http_json"
    vendor: ClassVar[str] = "http_json"  # events carry the configured vendor name instead
    display_name: ClassVar[str] = "http_json"
    check_message: ClassVar[str] = "{vendor} answered for {n} organization(s)"

    def __init__(self, name: str, config: HttpJsonConfig) -> None:
        super().__init__(name, config)
        self.mapper = Mapper(config.mapping)
        pg = config.pagination
        self.paged = pg.style in PAGED_STYLES and pg.order == "oldest_first"  # journaled page by page

    def make_client(self) -> httpx.AsyncClient:
        """The auth method's headers after the configured ones: a credential is never replaced by a
        header of the same name. Which method gives what: ``forwarder.sources.http_auth``."""
        cfg = self.config
        given = credentials(cfg.auth, cfg.vendor, cfg.timeout_s)
        headers = {**{k: v.get_secret_value() for k, v in cfg.headers.items()}, **given.headers}
        return make_client(cfg, headers=headers, auth=given.auth, request_hooks=given.request_hooks)

    @property
    def label(self) -> str:
        return self.config.vendor

    @property
    def event_vendor(self) -> str:
        return self.config.vendor

    def _fetcher(self, sink: list[httpx.Response]) -> HttpFetcher:
        """One per walk: the hook keeps that walk's last response (Link header, URL to resolve
        a relative next link against) without sharing state between organizations."""

        async def keep(response: httpx.Response) -> None:
            sink[:] = [response]

        return HttpFetcher.for_source(self.client, self.config.vendor, self.config, on_response=keep)

    def _budget(self, organization: str) -> WalkBudget:
        cfg = self.config
        if self.paged:
            remedy = "each page is journaled; what grows is the hashes of entries without an id: set id_field"
        elif cfg.from_param or cfg.window_param:
            remedy = "lower slice_hours"
        else:
            remedy = "set from_param and to_param, then lower slice_hours"
        return self.walk_budget(organization, remedy)

    async def fetch_window(self, organization: str, lo_ms: int | None, hi_ms: int | None) -> list[Any]:
        """Every record of a walk, held until it ends (page number, offset and unpaged styles,
        whose order within a slice is unknown, and pages listed newest first): bound by
        ``max_walk_bytes``."""
        records: list[Any] = []
        async for page, _, _ in self.answers(organization, lo_ms, hi_ms, self._budget(organization)):
            records.extend(page)
        return records

    async def answers(
        self,
        organization: str,
        lo_ms: int | None,
        hi_ms: int | None,
        budget: WalkBudget,
        resume: str | None = None,
        walked: int = 0,
    ) -> AsyncIterator[tuple[list[Any], bool, str | None]]:
        """Each answer's records, whether it is the walk's last, and the next link or token to go
        on from (next link and cursor styles). ``resume`` goes on from such a point, ``walked``
        answers into the walk: ``max_pages`` counts the whole walk. The guards against a link or
        token that repeats the page just read live here, once for both ways in."""
        cfg, pg = self.config, self.config.pagination
        url = cfg.url.replace("{organization}", quote(organization, safe="/@:"))
        params: dict[str, Any] = dict(cfg.params)
        if cfg.from_param and lo_ms is not None:
            params[cfg.from_param] = format_instant(lo_ms, cfg.window_format)
        if cfg.to_param and hi_ms is not None:
            params[cfg.to_param] = format_instant(hi_ms, cfg.window_format)
        if cfg.window_param and lo_ms is not None and hi_ms is not None:
            lo_text, hi_text = format_instant(lo_ms, cfg.window_format), format_instant(hi_ms, cfg.window_format)
            params[cfg.window_param] = cfg.window_template.replace("{from}", lo_text).replace("{to}", hi_text)
        last: list[httpx.Response] = []
        fetcher = self._fetcher(last)
        page_no, offset = pg.first_page, 0
        next_url: str | None = None  # a next link carries its own query
        if resume is not None:
            if pg.style == "cursor":
                params[pg.cursor_param] = resume
            else:
                next_url = resume
        guard = self.page_guard(organization, pg.max_pages, "raise it or narrow slice_hours")
        guard.pages = walked
        if params.get(pg.cursor_param) is not None:
            guard.token = str(params[pg.cursor_param])
        previous: bytes | None = None  # digest of the page just read (next link and cursor styles)
        while True:
            guard.next_page()
            query = dict(params)
            if pg.style == "page_number":
                query[pg.page_param] = page_no
                if pg.size_param:
                    query[pg.size_param] = pg.page_size
            elif pg.style == "offset":
                query[pg.offset_param], query[pg.limit_param] = offset, pg.page_size
            body = await fetcher.get_json(organization, next_url or url, None if next_url else query, budget=budget)
            page = get_path(body, cfg.records_path)
            if page is None and cfg.records_optional and isinstance(body, dict):
                page = []
            if not isinstance(page, list):
                where = f"at {cfg.records_path!r}" if cfg.records_path else "as the body"
                raise MalformedResponse(
                    f"{cfg.vendor} sent {type(page).__name__} {where} for organization {organization!r}, "
                    "expected a list of records; check records_path"
                )
            records = len(page)  # the vendor's count: paging counts records, not the events split from them
            digest = _digest(page) if page and pg.style in PAGED_STYLES else None
            page = split(page, cfg.split_path)
            has_next = get_path(body, pg.has_next_path) if pg.has_next_path else None
            if digest is not None and digest == previous:
                # The page just read, again, under another link or token (a last page that points
                # on to itself with a new cursor): following it re-read the same entries as new
                # ones at every turn. Nothing new lies there: the walk ends.
                log.warning(
                    f"{cfg.vendor} sent the page just read again under a new next link or cursor; the walk ends there",
                    source=self.name,
                    organization=organization,
                    pages=guard.pages,
                )
                yield [], True, None
                return
            previous = digest or previous
            # An empty page ends a walk that counts (page numbers, offsets: nothing lies beyond),
            # but not one a next link or cursor goes on from: a vendor may answer a page boundary
            # or filtered-out entries with an empty page and a link to more, and ending there
            # moved the cursor past every entry after it, for good. A link or token that repeats
            # the page just read still ends it (``_next``), max_pages bounds the rest.
            if pg.style == "none" or has_next is False or (not records and pg.style not in PAGED_STYLES):
                yield page, True, None
                return
            if pg.style in ("page_number", "offset"):
                total = get_path(body, pg.total_pages_path) if pg.total_pages_path else None
                done_by_total = isinstance(total, int) and page_no - pg.first_page + 1 >= total
                if done_by_total or (pg.stop_on_short_page and records < pg.page_size):
                    yield page, True, None
                    return
                page_no, offset = page_no + 1, offset + records
                del body
                yield page, False, None
                del page  # before the next answer is read: the walk holds one page, not two
                continue
            nxt = self._next(organization, url, body, last, guard)
            if nxt is None and has_next is True and not self._names_next(body, last):
                raise SourceError(self._no_next(organization))
            del body
            yield page, nxt is None, nxt
            del page
            if nxt is None:
                return
            if pg.style == "cursor":
                params[pg.cursor_param] = nxt
            else:
                next_url = nxt

    def _next(self, organization: str, url: str, body: Any, last: list[httpx.Response], guard: PageGuard) -> str | None:
        """The next link or token after ``body``, None at the end (none, or one that repeats the
        page just read: the guard holds what fetched it). The rules: ``forwarder.sources.pagination``."""
        cfg, pg = self.config, self.config.pagination
        if pg.style == "cursor":
            return next_token(body, pg.next_path, guard)
        nxt = (
            get_path(body, pg.next_path)
            if pg.style == "next_link_body"
            else next_link(last[0].headers.get("Link") if last else None)
        )
        response = last[0] if last else None
        return follow_link(
            nxt, url, response, cfg.auth.query_param(), guard, vendor=cfg.vendor, organization=organization
        )

    def _names_next(self, body: Any, last: list[httpx.Response]) -> bool:
        """Whether the answer names a next page at all (one that repeats the page is a name)."""
        pg = self.config.pagination
        if pg.style == "link_header":
            return next_link(last[0].headers.get("Link") if last else None) is not None
        return get_path(body, pg.next_path) not in (None, "")

    def _no_next(self, organization: str) -> str:
        """has_next_path says more follows, yet no next page is named: a misspelled next_path
        ended the walk after one page and moved the cursor past the rest, for good. The poll
        fails instead (the cursor stays), naming the settings to check."""
        cfg, pg = self.config, self.config.pagination
        where = (
            'no Link header with rel="next" (pagination.style link_header)'
            if pg.style == "link_header"
            else f"nothing at pagination.next_path {pg.next_path!r}"
        )
        return (
            f"{cfg.vendor} said more pages follow for organization {organization!r} "
            f"(pagination.has_next_path {pg.has_next_path!r} is true) but named none: {where}; "
            "check next_path (or has_next_path)"
        )

    def keys(self, organization: str, items: list[Any], twins: dict[str, int] | None = None) -> list[str]:
        cfg = self.config

        def whole(records: list[Any]) -> list[str]:
            return walk_keys(records, cfg.vendor, organization, cfg.id_field, f"{cfg.vendor}:", twins)

        return split_keys(items, whole) if cfg.split_path else whole(items)

    def time_ms(self, raw: Any) -> int | None:
        try:
            return int(parse_instant(get_path(raw, self.config.time_field), self.config.time_format).timestamp() * 1000)
        except (ValueError, TypeError, OverflowError, OSError):  # OSError: an epoch past the C time_t
            return None

    def within(self, lo_ms: int, hi_ms: int) -> tuple[int, int]:
        return sent_window(lo_ms, hi_ms, self.config.window_format)

    def warn_outside(self, organization: str, count: int) -> None:
        """Said only where a time filter is sent: without one every answer lists the whole log,
        and the entries before the window are those an earlier poll took. With one, an entry
        outside was skipped without a word, for good, whether the server ignores the filter or
        the entry's own time is far from the one the server filtered on."""
        cfg = self.config
        if not (cfg.from_param or cfg.window_param):
            return
        log.warning(
            f"{cfg.vendor} sent entries whose {cfg.time_field} lies outside the window asked for; they were "
            "skipped. Check that the server honours the window parameters and that time_field is the "
            "time it filters on",
            source=self.name,
            organization=organization,
            entries=count,
        )

    def bound_pad_ms(self) -> int:
        """One unit of ``window_format`` beyond each end (``WindowedSource.bound_pad_ms``): a
        millisecond vanishes when the bound is written in whole seconds, and the entry at a
        boundary second is lost again. Nothing without a time filter: no bound is sent."""
        cfg = self.config
        if cfg.time_bounds == "inclusive" or not (cfg.from_param or cfg.to_param or cfg.window_param):
            return 0
        return 1000 if cfg.window_format in ("epoch_s", "iso8601_s") else 1

    def slice_ms(self, start_ms: int, end_ms: int) -> int:
        """Without a time filter a run asks once: the whole run is one slice."""
        cfg = self.config
        return int(cfg.slice_hours * HOUR_MS) if cfg.from_param or cfg.window_param else max(end_ms - start_ms, 1)

    def resume_point(self, cursor: dict[str, Any] | None) -> Resume | None:
        return Resume.load(cursor) if self.paged else None

    def walk_slice(self, walk: Walk, lo: int, hi: int, resume: Resume | None = None) -> AsyncIterator[Page]:
        if self.paged:
            return self._paged(walk, lo, hi, resume)
        return super().walk_slice(walk, lo, hi, resume)

    async def _paged(self, walk: Walk, lo: int, hi: int, resume: Resume | None) -> AsyncIterator[Page]:
        """One slice journaled answer by answer (next link and cursor styles): each page's cursor
        resumes after it, the watermark moves to ``hi`` with the last. Memory holds one page.
        A resume point the vendor refuses (an expired token) walks the slice again from its
        start: entries journaled before may come twice, none is lost."""
        organization, state = walk.organization, walk.state
        budget = self._budget(organization)
        point = resume or Resume(lo, hi, "")
        pad = self.bound_pad_ms()  # asked beyond each end, as ``WindowedSource.walk_slice`` does
        answers = self.answers(organization, lo - pad, hi + pad, budget, resume.next if resume else None, point.pages)
        if resume is not None:
            try:
                first = await anext(answers)
            except (WalkTooLarge, RetryableHTTPError, MalformedResponse):
                raise
            except SourceError as exc:
                log.warning(
                    "the vendor refused to go on from where the last poll stopped; walking the slice again "
                    "from its start (entries may come twice, none is lost)",
                    source=self.name,
                    organization=organization,
                    error=str(exc),
                )
                point = Resume(lo, hi, "")
                answers = self.answers(organization, lo - pad, hi + pad, budget)
            else:
                answers = _chain(first, answers)
        within = self.within(lo - pad, hi + pad)
        async for records, final, nxt in answers:
            point.pages += 1
            keys = self.keys(organization, records, point.twins)
            # keys are kept down to what the next read re-reads: the overlap and the pad before it
            fresh, outside = state.take(
                records, keys, self.time_ms, hi, walk.overlap + pad, within=within, page=not final
            )
            if outside and not walk.warned:
                walk.warned = True
                self.warn_outside(organization, outside)
            if final:
                cursor = state.dump()
            else:
                point.next = nxt or ""
                cursor = {**state.dump(), "walk": point.dump()}
            del records, keys
            # what stays once this page is journaled: the hashes that number a twin on a later page
            budget.hold(len(point.twins) * TWIN_BYTES)
            page = walk.page(fresh, cursor)
            del fresh
            yield page
            del page

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        """A record split from a larger one (``split_path``) says its position in
        ``details.split_index``: the id is recomputed from the event alone (docs/schema.md)."""
        cfg = self.config
        try:
            time = parse_instant(get_path(raw, cfg.time_field), cfg.time_format)
        except (ValueError, TypeError, OverflowError, OSError) as exc:  # quarantined: say what to check
            raise ValueError(
                f"{exc}; check time_field {cfg.time_field!r} and time_format {cfg.time_format!r}"
            ) from None
        event = self.mapper.event(
            raw=raw,
            key=key,
            time=time,
            observed=observed,
            vendor=cfg.vendor,
            source=self.name,
            organization=organization,
        )
        if isinstance(raw, Part):
            event["details"] = {**event["details"], "split_index": raw.index}
        return event


def _digest(page: list[Any]) -> bytes:
    """What tells one page from the next without holding both: a page byte for byte the same as
    the one before it is a repeat (with ids, it cannot be new entries; without, it would take a
    whole page of twins identical to the whole page before)."""
    return hashlib.blake2b(orjson.dumps(page, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item
