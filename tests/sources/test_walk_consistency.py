"""What a walk over several responses must get right, against the emulators over loopback
(and two unit tests of the keys):
an entry pushed onto the next page by one written meanwhile is one event, not two; a server
that ignores the time filter does not get its entries journaled at every slice; an entry
without the vendor's id is keyed on its content instead of failing the window for good."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from forwarder.emulators.base import Fault, start_in_thread
from forwarder.emulators.codacy import CodacyEmulator
from forwarder.emulators.codestax import DEFAULT_API_KEY, CodeStaxEmulator
from forwarder.emulators.configcat import DEFAULT_ORG_ID, ConfigCatEmulator
from forwarder.event import format_ms
from forwarder.sources.base import Page
from forwarder.sources.codacy import CodacyConfig, CodacySource
from forwarder.sources.codestax import CodeStaxConfig, CodeStaxSource
from forwarder.sources.configcat import ConfigCatConfig, ConfigCatSource
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig
from forwarder.sources.window import entry_keys, walk_keys

pytestmark = pytest.mark.integration


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Any] = []

    def start(emulator: Any) -> str:
        server, url = start_in_thread(emulator)
        servers.append(server)
        return str(url)

    yield start
    for server in servers:
        server.shutdown()


async def keys_of(pages: AsyncIterator[Page]) -> tuple[list[str], dict[str, Any] | None]:
    keys: list[str] = []
    cursor = None
    async for page in pages:
        keys += [key for _, key in page.entries]
        cursor = page.cursor
    return keys, cursor


def after_first_response(client: httpx.AsyncClient, act: Any) -> None:
    """Someone acts in the vendor's UI while the walk is between its first and second page."""
    calls = 0

    async def hook(response: httpx.Response) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            act()

    client.event_hooks["response"] = [hook]


async def test_http_json_a_shifted_entry_with_an_id_is_one_event(serve: Any) -> None:
    emulator = CodeStaxEmulator()
    emulator.generate(12, span_s=3600, end_ms=int(time.time() * 1000) - 300_000)
    url = serve(emulator)
    source = HttpJsonSource(
        "generic",
        HttpJsonConfig(
            type="http_json",
            vendor="codestax_generic",
            url=f"{url}/api/audit-logs",
            organizations=["default"],
            auth={"type": "header", "header": "X-API-Key", "token": DEFAULT_API_KEY},
            pagination={"style": "offset", "offset_param": "skip", "limit_param": "limit", "page_size": 5},
            id_field="id",
            time_field="timestamp",
            mapping={"action": "action"},
            initial_lookback_days=1,
            max_attempts=1,
        ),
    )
    after_first_response(source.client, lambda: emulator.add_entries([{"action": "auth.login"}]))
    try:
        keys, _ = await keys_of(source.pages("default", None))
    finally:
        await source.close()
    assert len(keys) == len(set(keys)) == 12  # each once (the new one is newer than now - lag)
    assert not [key for key in keys if "#" in key]


async def test_codacy_envelope_twins_on_two_pages_are_two_events_and_a_shift_loses_nothing(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries without an id: a twin on the next page may be a real second event (a keyset
    cursor shifts nothing), so twins are numbered over the whole walk; an entry that an
    offset shift shows twice then comes twice, under ``#1``: a duplicate, never a loss."""
    monkeypatch.setattr(CodacySource, "answer_entries", None)  # the pages of one slice, not slices
    emulator = CodacyEmulator()
    emulator.envelope, emulator.page_limit = True, 5
    now = int(time.time() * 1000)
    emulator.generate(12, orgs=["gh/acme"], span_s=3600, end_ms=now - 600_000)
    entries = emulator.orgs[("gh", "acme")]
    twin = dict(entries[-5])  # newest first: the last of page 1 and the first of page 2
    entries.insert(len(entries) - 5, twin)
    url = serve(emulator)
    source = CodacySource(
        "codacy",
        CodacyConfig(
            type="codacy",
            base_url=f"{url}/api/v3",
            api_token=emulator.token,
            organizations=["gh/acme"],
            initial_lookback_days=1,
            max_attempts=1,
        ),
    )
    late = emulator.make_entry(now - 650_000)  # written late, inside the window, newer than most
    after_first_response(source.client, lambda: entries.append(late))
    try:
        keys, _ = await keys_of(source.pages("gh/acme", None))
    finally:
        await source.close()
    assert len(keys) == len(set(keys))
    assert len({key.split("#")[0] for key in keys}) == 12  # every distinct entry
    assert len([key for key in keys if key.endswith("#1")]) >= 1  # the twin kept as its own event


async def test_codestax_entries_outside_the_window_are_not_journaled_again(serve: Any) -> None:
    """The filter names are guesses: a server that knows others ignores them and sends everything."""
    emulator = CodeStaxEmulator()
    emulator.start_param, emulator.end_param = "from", "to"
    entries = emulator.generate(60, span_s=30 * 86400, end_ms=int(time.time() * 1000) - 300_000)
    url = serve(emulator)
    source = CodeStaxSource(
        "codestax",
        CodeStaxConfig(
            type="codestax",
            base_url=f"{url}/api",
            api_key=DEFAULT_API_KEY,
            hourly_request_budget=100_000,
            max_attempts=1,
        ),
    )
    try:
        with capture_logs() as logs:
            first, cursor = await keys_of(source.pages("default", None))
        second, _ = await keys_of(source.pages("default", cursor))
    finally:
        await source.close()
    assert len([e for e in logs if "ignores the time filter" in e["event"]]) == 1  # once a poll, not a slice
    assert Counter(first + second) == Counter(f"codestax:default:{e['id']}" for e in entries)
    assert second == []


async def test_configcat_an_entry_without_its_id_is_keyed_on_its_content(serve: Any) -> None:
    emulator = ConfigCatEmulator()
    url = serve(emulator)
    now = int(time.time() * 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 600))
    with_id = {"auditLogId": 1, "auditLogDateTime": stamp, "auditLogTypeEnum": "settingChanged"}
    without = {"auditLogDateTime": stamp, "auditLogTypeEnum": "settingChanged", "details": "legacy"}
    paging = {
        "currentPage": 1,
        "totalPages": 1,
        "pageSize": 100,
        "totalCount": 3,
        "hasPrevious": False,
        "hasNext": False,
    }
    emulator.faults.append(
        Fault(status=200, count=1, body=json.dumps({"data": [with_id, without, without], "paging": paging}))
    )
    source = ConfigCatSource(
        "configcat",
        ConfigCatConfig(
            type="configcat",
            base_url=url,
            username="configcat-user",
            password="configcat-pass",
            organizations=[DEFAULT_ORG_ID],
            max_attempts=1,
        ),
    )
    try:
        keys, cursor = await keys_of(source.pages(DEFAULT_ORG_ID, {"watermark_ms": now - 3_600_000, "recent": {}}))
    finally:
        await source.close()
    assert "configcat:1" in keys
    hashed = sorted(key for key in keys if key != "configcat:1")
    assert len(hashed) == 2 and hashed[1] == f"{hashed[0]}#1"  # twins in one response stay two events
    assert cursor is not None and cursor["watermark_ms"] > now - 3_600_000


def test_keys_over_a_walk_number_twins_and_keep_an_id_once_per_content() -> None:
    a, b, c = ({"timestamp": "2026-11-24T10:00:00Z", "action": name} for name in ("a", "b", "c"))
    hashed = walk_keys([a, b, dict(b), c], "codacy", "gh/acme")
    assert len(set(hashed)) == 4 and hashed[2] == f"{hashed[1]}#1"  # a twin, wherever its page

    same, changed = {"id": 7, "action": "x"}, {"id": 7, "action": "y"}
    keys = entry_keys("acme", "Acme", "o", [same, dict(same), changed, {"id": "", "action": "z"}], "id", "acme:o:")
    assert keys[:3] == ["acme:o:7", "acme:o:7", "acme:o:7#1"]  # a page shift's repeat is one event
    assert keys[3].startswith("acme:") and keys[3] != "acme:o:"  # an empty id is no id


async def test_codacy_twins_on_two_keyset_pages_are_both_journaled() -> None:
    """A keyset cursor shifts nothing: a twin on the next page is a second event (unit: stubbed vendor)."""
    now = int(time.time() * 1000)
    a, b, c = (
        {"timestamp": format_ms(now - ms), "action": f"x.{n}", "result": "succeed"}
        for n, ms in (("a", 7_000_000), ("b", 6_000_000), ("c", 5_000_000))
    )
    source = CodacySource(
        "codacy", CodacyConfig(type="codacy", api_token="t", organizations=["gh/acme"], slice_hours=48)
    )

    async def get_json(organization: str, url: str, params: Any = None, *, budget: Any = None) -> Any:
        if "cursor" not in params:
            return {"data": [a, b], "pagination": {"cursor": "k1"}}
        return {"data": [dict(b), c], "pagination": {}}

    source.fetcher.get_json = get_json  # type: ignore[method-assign]
    try:
        keys, _ = await keys_of(source.pages("gh/acme", {"watermark_ms": now - 86_400_000, "recent": {}}))
    finally:
        await source.close()
    assert len(keys) == len(set(keys)) == 4
