"""The window walk written once (``forwarder.sources.windowed``): a vendor is its hooks, the walk,
the retention gap, the page guard and the client come with the base (unit: stubbed vendor)."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import httpx
import pytest

from forwarder.event import format_ms
from forwarder.formats._common import vendor_name
from forwarder.sources import SOURCES
from forwarder.sources.base import SourceConfig
from forwarder.sources.http import MalformedResponse, SourceError, make_client
from forwarder.sources.walk import PageGuard
from forwarder.sources.window import time_at
from forwarder.sources.windowed import DAY_MS, HOUR_MS, WindowedSource


class TinyConfig(SourceConfig):
    type: Literal["tiny"]
    organizations: list[str]
    slice_hours: float = 24.0


class TinySource(WindowedSource[TinyConfig]):
    """A whole vendor: what a new module writes."""

    type_name: ClassVar[str] = "tiny"
    vendor: ClassVar[str] = "tiny"
    display_name: ClassVar[str] = "Tiny Inc."
    retention_days: ClassVar[float | None] = 2.0

    def __init__(self, name: str, config: TinyConfig, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.asked: list[tuple[int, int]] = []
        super().__init__(name, config)

    def make_client(self) -> httpx.AsyncClient:
        return make_client(self.config, "http://tiny.invalid/")

    async def fetch_window(self, organization: str, lo_ms: int, hi_ms: int) -> list[Any]:
        self.asked.append((lo_ms, hi_ms))
        return [e for e in self.entries if lo_ms <= e["ms"] <= hi_ms]

    def keys(self, organization: str, items: list[Any]) -> list[str]:
        return self.entry_keys(organization, items, "id", "tiny:")

    def time_ms(self, raw: Any) -> int | None:
        return time_at("at")(raw)


def tiny(entries: list[dict[str, Any]], **settings: Any) -> TinySource:
    config = TinyConfig(type="tiny", organizations=["o"], lag_s=0, overlap_s=600, **settings)
    return TinySource("t", config, entries)


def entry(ident: str, ms: int) -> dict[str, Any]:
    return {"id": ident, "ms": ms, "at": format_ms(ms)}


async def test_a_source_of_hooks_only_walks_slices_oldest_first_and_keeps_its_cursor() -> None:
    now = int(time.time() * 1000)
    entries = [entry("b", now - 30 * HOUR_MS), entry("a", now - 40 * HOUR_MS), entry("c", now - HOUR_MS)]
    source = tiny(entries, initial_lookback_days=3, slice_hours=12)
    try:
        pages = [page async for page in source.pages("o", None)]
        keys = [key for page in pages for _, key in page.entries]
        assert keys == ["tiny:a", "tiny:b", "tiny:c"]
        # the retention (2 days, on the class) bounds the first run's 3-day lookback
        assert source.asked[0][0] >= now - 2 * DAY_MS
        assert [lo for lo, _ in source.asked] == sorted(lo for lo, _ in source.asked)
        assert pages[-1].cursor["watermark_ms"] == source.asked[-1][1]
        assert all(not page.extra_events for page in pages)  # a first run promises nothing older
        # the next poll re-reads the overlap and journals nothing twice
        again = [page async for page in source.pages("o", pages[-1].cursor)]
        assert [key for page in again for _, key in page.entries] == []
        assert await source.check() == "credentials accepted for 1 organization(s)"
    finally:
        await source.close()


async def test_a_cursor_past_the_class_retention_journals_one_gap_with_the_first_page() -> None:
    now = int(time.time() * 1000)
    source = tiny([entry("x", now - HOUR_MS)], slice_hours=12)
    try:
        pages = [page async for page in source.pages("o", {"watermark_ms": now - 10 * DAY_MS, "recent": {}})]
    finally:
        await source.close()
    gaps = [event for page in pages for event in page.extra_events]
    assert len(gaps) == 1 and gaps[0]["action"] == "forwarder.gap" and gaps[0]["vendor"] == "tiny"
    assert pages[0].extra_events == gaps
    assert [key for page in pages for _, key in page.entries] == ["tiny:x"]


def test_the_formats_name_each_vendor_as_its_registered_source_class_does() -> None:
    for _, factory in SOURCES.values():
        vendor, display = factory.vendor, factory.display_name
        if vendor != "http_json":  # events of http_json carry the configured vendor, named as written
            assert vendor_name(vendor) == display
    assert vendor_name("forwarder") == "audit-forwarder"
    assert vendor_name("acme") == "acme"


async def test_the_client_factory_asks_for_json_within_the_timeout_and_verifies_tls() -> None:
    config = TinyConfig(type="tiny", organizations=["o"], timeout_s=7)
    client = make_client(config, "https://tiny.invalid/api/", {"X-Key": "k"})
    try:
        assert client.headers["Accept"] == "application/json" and client.headers["X-Key"] == "k"
        assert str(client.base_url) == "https://tiny.invalid/api/"  # httpx keeps one slash
        assert client.timeout.read == 7
    finally:
        await client.aclose()


def test_the_page_guard_stops_a_repeated_token_a_stale_page_and_a_walk_past_its_limit() -> None:
    guard = PageGuard("Tiny", "o", 3)
    assert guard.next_page() == 1
    assert not guard.repeats("k1")
    guard.remember(["a", "b"])
    assert guard.next_page() == 2
    assert guard.repeats("k1")  # the token that fetched this page again: following it would loop
    assert guard.stale(["b", "a"]) and not guard.stale(["a", "c"])
    assert "already seen" in str(guard.looped("2"))
    guard.next_page()
    with pytest.raises(MalformedResponse, match="never ended"):
        guard.next_page()
    with pytest.raises(SourceError, match="max_pages=1; raise it"):
        limited = PageGuard("Tiny", "o", 1, setting="raise it")
        limited.next_page()
        limited.next_page()
