"""What one walk over a vendor's listing may hold (issue 18, item 1), against a loopback vendor
through the real Poller and journal: a next link that never ends is journaled page by page
(one page held at a time) or, for a walk that cannot be committed before it ends, stops with a
``max_walk_bytes`` error naming the remedy; a walk resumed after a failure mid-slice loses
nothing, not even a twin split across two pages; the other organization carries on."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.event import format_ms
from forwarder.journal import SqliteJournal
from forwarder.polling import Poller
from forwarder.sources.codacy import CodacyConfig, CodacySource
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig

pytestmark = pytest.mark.integration

PAGE_RECORDS = 1_000
PAD = "x" * 900  # ~1 KB a record


# A request's target -> (status, JSON body); the server keeps every target it was asked for.
Route = Callable[[str], tuple[int, Any]]


@asynccontextmanager
async def vendor(route: Route, asked: list[str]) -> AsyncIterator[str]:
    """A loopback HTTP/1.1 vendor: one answer per connection, its body written by ``route``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            asked.append(target)
            status, body = route(target)
            data = orjson.dumps(body)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def page_number(target: str) -> int:
    return int(target.rpartition("p=")[2]) if "p=" in target else 1


def endless(ts: int) -> Route:
    """Every page a next link to one more page, with 1,000 records of about 1 KB each."""

    def route(target: str) -> tuple[int, Any]:
        n = page_number(target)
        records = [{"id": f"{n}-{i}", "ts": ts, "action": "login", "pad": PAD} for i in range(PAGE_RECORDS)]
        return 200, {"items": records, "next": f"/audit/acme?p={n + 1}", "offset_next": n + 1}

    return route


def http_json(url: str, **overrides: Any) -> HttpJsonSource:
    cfg: dict[str, Any] = {
        "type": "http_json",
        "vendor": "acme",
        "url": f"{url}/audit/{{organization}}",
        "organizations": ["acme"],
        "records_path": "items",
        "id_field": "id",
        "time_field": "ts",
        "time_format": "epoch_ms",
        "from_param": "since",
        "to_param": "until",
        "window_format": "epoch_ms",
        "initial_lookback_days": 1,
        "pagination": {"style": "next_link_body", "next_path": "next"},
        "mapping": {"action": "action"},
        "max_attempts": 1,
    }
    cfg.update(overrides)
    return HttpJsonSource("hj", HttpJsonConfig.model_validate(cfg))


@asynccontextmanager
async def journal_at(path: Path) -> AsyncIterator[SqliteJournal]:
    journal = SqliteJournal(path / "journal.sqlite3")
    await journal.open()
    try:
        yield journal
    finally:
        await journal.close()


def counting_appends(journal: SqliteJournal) -> list[int]:
    """How many entries each journal append carried: what the poll held before committing."""
    counts: list[int] = []
    append = journal.append

    async def spy(source: str, organization: str, entries: Any, *args: Any, **kw: Any) -> None:
        counts.append(entries.count)
        await append(source, organization, entries, *args, **kw)

    journal.append = spy  # type: ignore[method-assign]
    return counts


async def walk_endless(tmp_path: Path, pages: int) -> tuple[int, list[int], dict[str, Any] | None, str | None]:
    """The poll's peak allocation, its appends' sizes, the cursor and the error after ``pages``."""
    asked: list[str] = []
    ts = int(time.time() * 1000) - 12 * 3_600_000
    async with vendor(endless(ts), asked) as url, journal_at(tmp_path / str(pages)) as journal:
        source = http_json(url, pagination={"style": "next_link_body", "next_path": "next", "max_pages": pages})
        appends = counting_appends(journal)
        poller = Poller(source, journal, lambda: None)
        tracemalloc.start()
        try:
            assert not await poller.poll()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await source.close()
        assert (await journal.stats()).events == pages * PAGE_RECORDS and len(asked) == pages
        return peak, appends, await journal.get_cursor("hj", "acme"), poller.status["acme"].error


async def test_an_endless_next_link_is_journaled_page_by_page_in_flat_memory(tmp_path: Path) -> None:
    """1,000 ~1 KB records a page: each page journaled alone with a cursor resuming mid-slice, and
    the poll's peak allocation the same after 16 pages as after 4 (holding the walk, it grows by
    over 2 MB a page)."""
    short_peak, _, _, _ = await walk_endless(tmp_path, 4)
    peak, appends, cursor, error = await walk_endless(tmp_path, 16)
    assert "max_pages=16" in str(error)
    assert appends == [PAGE_RECORDS] * 16  # one vendor page per commit
    assert cursor is not None and cursor["walk"]["next"].endswith("p=17") and cursor["walk"]["pages"] == 16
    assert cursor["recent"] == {} and cursor["walk"]["twins"] == {}  # keys the overlap won't re-read: not kept
    assert peak < short_peak * 1.3, (short_peak, peak)


async def test_an_endless_listing_that_cannot_be_committed_stops_at_max_walk_bytes(tmp_path: Path) -> None:
    """Offsets shift under new entries, so an offset walk is held to its end: the endless one stops
    once it holds max_walk_bytes, naming the organization and slice_hours; nothing is journaled."""
    asked: list[str] = []
    ts = int(time.time() * 1000) - 12 * 3_600_000
    async with vendor(endless(ts), asked) as url, journal_at(tmp_path) as journal:
        source = http_json(url, pagination={"style": "offset", "page_size": PAGE_RECORDS}, max_walk_bytes=5_000_000)
        poller = Poller(source, journal, lambda: None)
        try:
            assert not await poller.poll()
        finally:
            await source.close()
        error = str(poller.status["acme"].error)
        assert "max_walk_bytes=5000000" in error and "'acme'" in error and "slice_hours" in error
        assert len(asked) == 6  # ~0.96 MB each: the sixth answer passes the bound, no seventh is asked for
        assert (await journal.stats()).events == 0 and await journal.get_cursor("hj", "acme") is None


async def test_a_walk_resumed_after_a_failure_mid_slice_loses_nothing_not_even_a_twin(tmp_path: Path) -> None:
    """Entries without an id; the vendor fails after the first page was journaled. The next poll goes
    on from the second page: the twin there is numbered after its sibling on the first page (taken
    for it, it would be skipped as seen), and every entry is journaled once."""
    now = int(time.time() * 1000)
    a, b, x, c, d = ({"ts": now - (9 - n) * 1_000_000, "action": name} for n, name in enumerate("abxcd"))
    pages = {1: [a, b, x], 2: [dict(x), c], 3: [d]}
    failing = {"page 2": True}

    def route(target: str) -> tuple[int, Any]:
        if "since=" in target:  # the first page of a slice: the time filter
            query = dict(part.split("=") for part in target.partition("?")[2].split("&"))
            if not int(query["since"]) <= now - 9_000_000 <= int(query["until"]):
                return 200, {"items": [], "next": None}
        n = page_number(target)
        if n == 2 and failing.pop("page 2", False):
            return 503, {"detail": "busy"}
        return 200, {"items": pages[n], "next": f"/audit/acme?p={n + 1}" if n < 3 else None}

    asked: list[str] = []
    async with vendor(route, asked) as url, journal_at(tmp_path) as journal:
        appends = counting_appends(journal)
        for attempt in (1, 2):
            source = http_json(url, id_field=None)
            poller = Poller(source, journal, lambda: None)
            try:
                assert await poller.poll() == (attempt == 2)
            finally:
                await source.close()
        events = [record.event() for record in await journal.read(0, 100, 1 << 20)]
    assert appends[:3] == [3, 2, 1] and not any(appends[3:])
    # went on from page 2, not from the slice's start (then the next, empty slice)
    assert [page_number(t) for t in asked][:4] == [1, 2, 2, 3]
    keys = [event["id"] for event in events]
    assert len(keys) == len(set(keys)) == 6
    assert sorted(event["raw"]["action"] for event in events) == ["a", "b", "c", "d", "x", "x"]
    assert len([key for key in keys if key.endswith("#1")]) == 1


async def test_a_windowed_source_over_the_bound_fails_that_organization_alone(tmp_path: Path) -> None:
    """Codacy answers a whole slice at once: an organization whose slice passes max_walk_bytes
    fails with a message naming Codacy, the organization, the bytes and slice_hours; the other
    organization's entries are journaled and its cursor moves."""
    now = int(time.time() * 1000)

    def entries(n: int) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": format_ms(now - 3_600_000 + i),
                "action": "organizations.people.join",
                "result": "succeed",
                "description": PAD,
            }
            for i in range(n)
        ]

    def route(target: str) -> tuple[int, Any]:
        return 200, entries(300 if "/gh/big/" in target else 3)

    asked: list[str] = []
    async with vendor(route, asked) as url, journal_at(tmp_path) as journal:
        source = CodacySource(
            "codacy",
            CodacyConfig(
                type="codacy",
                base_url=f"{url}/api/v3",
                api_token="t",
                organizations=["gh/big", "gh/small"],
                initial_lookback_days=1,
                slice_hours=48,
                max_attempts=1,
                max_walk_bytes=100_000,
            ),
        )
        poller = Poller(source, journal, lambda: None)
        try:
            assert not await poller.poll()
        finally:
            await source.close()
        big, small = poller.status["gh/big"], poller.status["gh/small"]
        assert big.state == "failed" and small.state == "ok"
        assert big.error is not None
        assert all(word in big.error for word in ("Codacy", "'gh/big'", "max_walk_bytes=100000", "slice_hours"))
        assert await journal.get_cursor("codacy", "gh/big") is None
        assert await journal.get_cursor("codacy", "gh/small") is not None
        assert (await journal.stats()).events == 3
