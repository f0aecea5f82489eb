"""The generic ``http_json`` source: ConfigCat described in YAML alone must give the very events of
the dedicated source; each paging style, auth style and time format against a scripted API."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from forwarder.emulators.configcat import DEFAULT_ORG_ID, DEFAULT_PASSWORD, DEFAULT_USER
from forwarder.event import NormalizedEvent, content_id
from forwarder.mapping import Mapper, match_glob
from forwarder.sources.http import MalformedResponse
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig
from tests.support.daemon import cli, read_ndjson, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.vendors import HTTP_JSON_COMMON as COMMON
from tests.support.vendors import configcat_as_http_json


@pytest.fixture
def configcat() -> Iterator[EmulatorProcess]:
    emulator = running("configcat", entries=60, options={"span_s": 3 * 86400, "config": {"has_next_lies": True}})
    yield emulator
    emulator.stop()


def test_configcat_through_http_json_equals_the_dedicated_source(tmp_path: Path, configcat: EmulatorProcess) -> None:
    dedicated = {
        "type": "configcat",
        "base_url": configcat.url,
        "username": DEFAULT_USER,
        "password": DEFAULT_PASSWORD,
        "organizations": [DEFAULT_ORG_ID],
        "page_size": 10,
        **COMMON,
    }
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {"cc": dedicated, "hj": configcat_as_http_json(configcat.url)},
            "sinks": {
                "out": {"type": "file", "path": str(tmp_path / "out" / "{source}.ndjson"), "batch_max_age_s": 0.05}
            },
        },
    )
    for _ in range(2):  # the second run adds nothing to either
        result = cli(cfg, "once")
        assert result.returncode == 0, result.stderr
    events = read_ndjson(tmp_path / "out")
    by_source: dict[str, dict[str, dict[str, Any]]] = {"cc": {}, "hj": {}}
    for event in events:
        assert event["id"] not in by_source[event["source"]], "duplicate"
        name = event.pop("source")
        # the evidence chain is per stream, so its hashes differ between the two sources
        by_source[name][event["id"]] = {k: v for k, v in event.items() if k not in ("observed_time", "chain")}
    assert len(by_source["cc"]) == 60
    assert by_source["hj"] == by_source["cc"]  # every field but source, observed_time and chain


# --- a scripted API, for each paging style ---------------------------------------------------
RECORDS = [
    {
        "id": i,
        "ts": 1_700_000_000_000 + i * 1000,
        "user": {"email": f"u{i}@example.com"},
        "action": ["login", "repo.delete", "repo.create"][i % 3],
        "ok": i % 4 != 0,
    }
    for i in range(25)
]
PAGE = 10


def api(
    style: str, seen: list[httpx.Request], records: list[dict[str, Any]] = RECORDS
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        q = request.url.params
        lo, hi = int(q.get("since", 0)), int(q.get("until", 2**62))
        rows = [r for r in records if lo <= int(r["ts"]) <= hi]  # type: ignore[call-overload]
        if style == "none":
            return httpx.Response(200, json=rows)
        if style == "page_number":
            page = int(q["page"])
            return httpx.Response(200, json={"items": rows[(page - 1) * PAGE : page * PAGE]})
        if style == "offset":
            off, lim = int(q["offset"]), int(q["limit"])
            return httpx.Response(200, json={"items": rows[off : off + lim]})
        start = int(q.get("cursor", q.get("after", 0)))
        chunk, more = rows[start : start + PAGE], start + PAGE < len(rows)
        if style == "cursor":
            return httpx.Response(200, json={"items": chunk, "meta": {"next": str(start + PAGE) if more else None}})
        link = f"/audit/acme?after={start + PAGE}"
        if style == "next_link_body":
            return httpx.Response(200, json={"items": chunk, "links": {"next": link if more else None}})
        headers = {"Link": f'<http://api.test{link}>; rel="next"'} if more else {}
        return httpx.Response(200, json={"items": chunk}, headers=headers)

    return handler


def make_source(handler: Callable[[httpx.Request], httpx.Response], **overrides: Any) -> HttpJsonSource:
    cfg: dict[str, Any] = {
        "type": "http_json",
        "vendor": "acme",
        "url": "http://api.test/audit/{organization}",
        "organizations": ["acme"],
        "records_path": "items",
        "id_field": "id",
        "time_field": "ts",
        "time_format": "epoch_ms",
        "from_param": "since",
        "to_param": "until",
        "window_format": "epoch_ms",
        "initial_lookback_days": 365 * 10,
        "slice_hours": 24 * 365 * 11,
        "lag_s": 0,
        "mapping": {
            "action": "action",
            "actor.email": "user.email",
            "outcome": {"path": "ok", "map": {"true": "success", "false": "failure"}},
            "category": {"map": {"login": "authentication", "repo.*": "configuration"}},
            "activity": {"map": {"*.delete": "delete", "*.create": "create", "login": "login"}},
        },
    }
    cfg.update(overrides)
    source = HttpJsonSource("hj", HttpJsonConfig.model_validate(cfg))
    old = source.client
    source.client = httpx.AsyncClient(
        transport=httpx.MockTransport(handler), headers=old.headers, auth=old.auth, event_hooks=old.event_hooks
    )
    return source


async def collect(source: HttpJsonSource, cursor: dict[str, Any] | None = None) -> tuple[list[Any], dict[str, Any]]:
    keys: list[Any] = []
    async for page in source.pages("acme", cursor):
        keys += [key for _, key in page.entries]
        cursor = page.cursor
    assert cursor is not None
    await source.client.aclose()
    return keys, cursor


PAGINATIONS = {
    "none": ({"style": "none"}, ""),
    "page_number": ({"style": "page_number", "size_param": None, "page_size": PAGE}, "items"),
    "offset": ({"style": "offset", "page_size": PAGE}, "items"),
    "cursor": ({"style": "cursor", "next_path": "meta.next"}, "items"),
    "next_link_body": ({"style": "next_link_body", "next_path": "links.next"}, "items"),
    "link_header": ({"style": "link_header"}, "items"),
}


@pytest.mark.parametrize("style", sorted(PAGINATIONS))
async def test_each_paging_style_collects_everything_once(style: str) -> None:
    pagination, records_path = PAGINATIONS[style]
    seen: list[httpx.Request] = []
    source = make_source(api(style, seen), pagination=pagination, records_path=records_path)
    keys, cursor = await collect(source)
    assert keys == [f"acme:{i}" for i in range(25)]
    assert len(seen) == (1 if style == "none" else 3)  # 10 + 10 + 5, and no request past the end
    again = make_source(api(style, seen), pagination=pagination, records_path=records_path)
    assert (await collect(again, cursor))[0] == []


async def test_mapping_time_formats_and_content_hash() -> None:
    seen: list[httpx.Request] = []
    rows = [{**r, "ts": int(r["ts"]) // 1000} for r in RECORDS[:3]]  # type: ignore[call-overload]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": rows})

    source = make_source(handler, id_field=None, time_format="epoch_s", window_format="iso8601")
    keys, _ = await collect(source)
    assert keys == [content_id("acme", "acme", r) for r in rows]
    assert seen[0].url.params["since"].endswith("Z")
    observed = datetime(2026, 1, 1, tzinfo=UTC)
    events = [source.normalize("acme", r, k, observed) for r, k in zip(rows, keys, strict=True)]
    for event in events:
        NormalizedEvent.model_validate(event)
    summary = [(e["action"], e["category"], e["activity"], e["outcome"], e["actor"]["email"]) for e in events]
    assert summary == [
        ("login", "authentication", "login", "failure", "u0@example.com"),
        ("repo.delete", "configuration", "delete", "success", "u1@example.com"),
        ("repo.create", "configuration", "create", "success", "u2@example.com"),
    ]
    assert events[0]["time"] == "2023-11-14T22:13:20.000Z" and events[0]["vendor"] == "acme"


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ({"type": "header", "header": "X-API-Key", "token": "k-123"}, "X-API-Key", "k-123"),
        ({"type": "bearer", "token": "t-456"}, "Authorization", "Bearer t-456"),
        ({"type": "basic", "username": "u", "password": "p"}, "Authorization", "Basic dTpw"),
    ],
)
async def test_auth_styles(auth: dict[str, Any], header: str, value: str) -> None:
    seen: list[httpx.Request] = []
    source = make_source(api("none", seen), auth=auth, records_path="")
    await collect(source)
    assert seen[0].headers[header] == value
    assert "k-123" not in repr(source.config) and "t-456" not in repr(source.config)


async def test_query_auth_goes_with_every_request_next_links_included() -> None:
    seen: list[httpx.Request] = []
    auth = {"type": "query", "param": "apikey", "token": "q-789"}
    source = make_source(
        api("next_link_body", seen),
        auth=auth,
        records_path="items",
        pagination={"style": "next_link_body", "next_path": "links.next"},
    )
    keys, _ = await collect(source)
    assert len(keys) == 25 and len(seen) == 3
    assert [r.url.params["apikey"] for r in seen] == ["q-789"] * 3
    assert "q-789" not in repr(source.config)


async def test_query_auth_still_sees_a_link_back_to_the_same_page_as_the_end() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:  # the last page links to itself
        seen.append(request)
        after = int(request.url.params.get("after", 0))
        rows = [r for r in RECORDS if int(r["ts"]) > 0][after : after + PAGE]  # type: ignore[call-overload]
        link = f"/audit/acme?after={min(after + PAGE, 10)}"
        return httpx.Response(200, json={"items": rows}, headers={"Link": f'<http://api.test{link}>; rel="next"'})

    auth = {"type": "query", "param": "apikey", "token": "q-789"}
    source = make_source(handler, auth=auth, records_path="items", pagination={"style": "link_header", "max_pages": 20})
    keys, _ = await collect(source)
    assert len(seen) == 2 and len(keys) == 2 * PAGE


def test_token_file_and_config_errors(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    base = {
        "type": "http_json",
        "vendor": "acme",
        "url": "https://x/{organization}",
        "organizations": ["a"],
        "time_field": "t",
        "mapping": {"action": "a"},
    }
    cfg = HttpJsonConfig.model_validate({**base, "auth": {"type": "bearer", "token_file": str(token)}})
    assert cfg.auth.token is not None and cfg.auth.token.get_secret_value() == "from-a-file"
    for bad in (
        {"auth": {"type": "bearer"}},
        {"auth": {"type": "query", "param": "key"}},
        {"mapping": {"action": "a", "category": {"map": {"x*": "not-a-category"}}}},
        {"mapping": {"nonsense": "a"}},
        {"url": "ftp://x"},
    ):
        with pytest.raises(ValidationError):
            HttpJsonConfig.model_validate({**base, **bad})


def test_most_specific_glob_wins_whatever_the_order() -> None:
    table = {"*Removed": "delete", "teamMemberRemoved": "remove_member", "team*": "x", "teamMember*": "y"}
    assert match_glob("teamMemberRemoved", table) == "remove_member"
    assert match_glob("teamMemberInvited", dict(reversed(table.items()))) == "y"
    assert match_glob("fooRemoved", table) == "delete" and match_glob("zzz", table) is None


async def test_pagination_that_never_ends_fails_clearly() -> None:
    served = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:  # a new page and a new cursor every time
        record = {**RECORDS[0], "id": next(served)}
        return httpx.Response(200, json={"items": [record], "meta": {"next": str(time.monotonic())}})

    source = make_source(handler, pagination={"style": "cursor", "next_path": "meta.next", "max_pages": 5})
    with pytest.raises(Exception, match="max_pages=5"):
        await collect(source)


async def test_the_same_page_under_ever_new_cursors_ends_the_walk() -> None:
    """The page just read, again, under a new cursor: the walk ends there (a warning), instead
    of reading it to max_pages and failing every poll."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [RECORDS[0]], "meta": {"next": str(time.monotonic())}})

    source = make_source(handler, pagination={"style": "cursor", "next_path": "meta.next", "max_pages": 5})
    keys, _ = await collect(source)
    assert len(seen) == 2 and len(keys) == 1, keys


@pytest.mark.parametrize(
    "target", ["http://elsewhere.test/audit/acme?after=10", "https://api.test/audit/acme?after=10"]
)
async def test_next_link_to_another_origin_is_refused_before_credentials_go_there(target: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": RECORDS[:PAGE], "links": {"next": target}})

    source = make_source(
        handler,
        auth={"type": "bearer", "token": "t-456"},
        pagination={"style": "next_link_body", "next_path": "links.next"},
    )
    with pytest.raises(MalformedResponse, match="another origin"):
        await collect(source)
    assert [r.url.host for r in seen] == ["api.test"]


async def test_whole_second_windows_lose_nothing_at_slice_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """``window_format: epoch_s`` sends each slice boundary rounded down to its second; an entry
    in that second after the round-down but before the exact boundary is only returned by the
    later slice, whose filter must still take it."""
    hour, now = 3_600_000, 1_700_000_000_437
    monkeypatch.setattr("forwarder.sources.windowed.now_ms", lambda: now)
    boundary = now - 6 * hour + hour  # the first slice's end, at .437 like every boundary
    rows = [
        {"id": name, "ts": ts, "action": "login"}
        for name, ts in (("a", boundary - 5_000), ("b", boundary // 1000 * 1000 + 100), ("c", boundary + 5_000))
    ]

    def handler(request: httpx.Request) -> httpx.Response:  # compares full-precision times, as most APIs do
        lo, hi = int(request.url.params["since"]) * 1000, int(request.url.params["until"]) * 1000
        return httpx.Response(200, json={"items": [r for r in rows if lo <= r["ts"] <= hi]})

    source = make_source(handler, window_format="epoch_s", initial_lookback_days=6 / 24, slice_hours=1, overlap_s=0)
    keys, _ = await collect(source)
    assert sorted(keys) == ["acme:a", "acme:b", "acme:c"]


def test_mapped_values_of_the_wrong_shape_fall_back_instead_of_quarantining() -> None:
    """Schema drift (a list or an object where a word was) must not stop events."""
    mapping = HttpJsonConfig.model_validate(
        {
            "type": "http_json",
            "vendor": "acme",
            "url": "https://x/{organization}",
            "organizations": ["a"],
            "time_field": "t",
            "mapping": {"action": "a", "outcome": "result", "category": "meta.cat", "actor.name": "who"},
        }
    ).mapping
    fields = Mapper(mapping).fields({"a": "login", "result": ["ok"], "meta": {"cat": {"n": 1}}, "who": {"id": 5}})
    assert (fields["outcome"], fields["category"]) == ("unknown", "unknown")
    assert fields["actor.name"] == '{"id":5}'  # JSON, not Python's repr


@pytest.mark.parametrize("style", ["offset", "page_number"])
async def test_records_split_into_events_do_not_move_the_offset_past_unread_records(style: str) -> None:
    """``split_path`` makes more events than records: paging must count the vendor's records
    (an offset that counted the events skipped the records after them, and the cursor moved)."""
    records = [{**r, "events": [{"n": 0}, {"n": 1}]} if i % 3 == 0 else r for i, r in enumerate(RECORDS)]
    pagination, records_path = PAGINATIONS[style]
    seen: list[httpx.Request] = []
    handler = api(style, seen, records)
    source = make_source(handler, pagination=pagination, records_path=records_path, split_path="events")
    keys, _ = await collect(source)
    whole = [f"acme:{i}" for i in range(25)]
    assert sorted(k.split("|")[0] for k in keys) == sorted(whole + [f"acme:{i}" for i in range(0, 25, 3)])
    assert sum("|1" in k for k in keys) == 9


def test_a_split_path_through_a_list_index_is_refused_at_load() -> None:
    base = {"type": "http_json", "vendor": "v", "url": "https://api.test/{organization}", "organizations": ["o"]}
    for path in ("items.0.events", "events..x"):
        with pytest.raises(ValidationError, match="each step must name an object's key"):
            HttpJsonConfig.model_validate({**base, "time_field": "t", "split_path": path})
