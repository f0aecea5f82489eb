"""Promise 2 for every source's page walk: whatever the vendor answers,
a poll yields pages or fails with a ``SourceError`` the poller logs, and stops.

Each example draws a sequence of HTTP responses (any JSON, envelopes with fields of the
wrong type, huge numbers, bytes that are not JSON, error statuses) and serves them in order
through ``httpx.MockTransport``, the last one repeating forever: no network, the source's
own client, retry policy and paging code. The properties:

* only ``Page``s of (raw, key) pairs with a JSON-serializable cursor come out, or a
  ``SourceError``; never another exception, never more than a bounded number of requests;
* a cursor never goes beyond the window whose responses were all processed: on a failure,
  the window being read lies beyond the last cursor yielded;
* every yielded entry is normalized or quarantined with a reason by ``Poller._normalize``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast
from unittest.mock import patch

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarder.event import format_time, parse_time
from forwarder.polling import Poller
from forwarder.sources import SOURCES, codescoring, codestax
from forwarder.sources.base import Page
from forwarder.sources.codacy import CodacyConfig, CodacySource
from forwarder.sources.codescoring import CodescoringConfig, CodescoringSource
from forwarder.sources.codestax import CodeStaxConfig, CodeStaxSource
from forwarder.sources.configcat import ConfigCatConfig, ConfigCatSource
from forwarder.sources.http import SourceError
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig
from forwarder.sources.ratelimit import RateLimitWaitTooLong
from forwarder.sources.window import now_ms
from tests.support.hostile import OBSERVED, entries, json_values, text

# HOSTILE_EXAMPLES=1000 for a deeper hunt than the suite's quick one
EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "60"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_REQUESTS = 200  # far above what the small page limits below allow: more is a loop
MAX_PAGES = 8  # the module-level walk limits of codescoring/codestax (100 000) made test-sized
CONFIGCAT_ORG = "08d86d63-2726-47cd-8bfc-59608ecb91e2"
# rate_limit: a drawn reset header may ask for any wait; a poll then fails instead (RateLimitWaitTooLong)
FAST: dict[str, Any] = {
    "initial_lookback_days": 2,
    "lag_s": 0,
    "overlap_s": 600,
    "max_attempts": 1,
    "backoff_initial_s": 0.01,
    "backoff_max_s": 0.01,
    "rate_limit": {"max_wait_s": 0},
}

# --- strategies ---------------------------------------------------------------------------


def _ago(ms: int) -> str:
    return format_time(datetime.now(UTC) - timedelta(milliseconds=ms))


# Mostly times inside the walked windows (so entries get through to the page), plus garbage:
# dates out of range once shifted to UTC, numbers, nested values.
times = (
    st.integers(0, 2 * 86_400_000).map(_ago)
    | st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "", "yesterday"])
    | json_values
)
ids = st.integers(-(2**70), 2**70) | text | json_values
huge = st.sampled_from([2**63, 2**64, 2**70, -(2**63) - 1, 10**40])
anything = json_values | huge


def vendor_entry(id_key: str, time_key: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An entry shaped like the vendor's, any field possibly missing or of the wrong type,
    or any entry at all."""
    optional = {id_key: ids, time_key: times, **fields}
    return st.fixed_dictionaries({}, optional=optional) | entries


GARBAGE = [b"", b"<!doctype html><p>Maintenance</p>", b'{"data": [', b"\xff\xfe\x00", b"NaN", b"[1e400]"]


NO_HEADERS: st.SearchStrategy[dict[str, str]] = st.just({})


@st.composite
def responses(
    draw: st.DrawFn, body: st.SearchStrategy[Any], headers: st.SearchStrategy[dict[str, str]] = NO_HEADERS
) -> tuple[int, bytes, dict[str, str]]:
    status = draw(st.sampled_from([200] * 8 + [404, 429, 500]))
    if draw(st.integers(0, 9)) == 0:
        content = draw(st.sampled_from(GARBAGE) | st.binary(max_size=40))
    else:  # the stdlib writes what orjson may refuse: huge integers, Infinity
        content = json.dumps(draw(body)).encode()
    return status, content, draw(headers)


def sequences(body: st.SearchStrategy[Any], **kw: Any) -> st.SearchStrategy[list[tuple[int, bytes, dict[str, str]]]]:
    return st.lists(responses(body, **kw), min_size=1, max_size=6)


ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)

# --- the harness --------------------------------------------------------------------------


@dataclass
class Replay:
    """The vendor: answers the drawn responses in order, the last one forever, and notes the
    end of the window each request asked for."""

    answers: list[tuple[int, bytes, dict[str, str]]]
    to_param: str
    to_ms: Callable[[str], int]
    requests: int = 0
    window_end: int | None = None
    urls: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert self.requests <= MAX_REQUESTS, f"still paging after {MAX_REQUESTS} requests: {self.urls[-3:]}"
        self.urls.append(str(request.url))
        end = request.url.params.get(self.to_param)
        if end is not None:
            self.window_end = self.to_ms(end)
        status, content, headers = self.answers[min(self.requests, len(self.answers)) - 1]
        return httpx.Response(status, content=content, headers={"Content-Type": "application/json", **headers})


def iso_ms(value: str) -> int:
    return int(parse_time(value).timestamp() * 1000)


class Walkable(Protocol):
    """What the harness needs of a source (all four have it; the Source protocol has no client)."""

    client: httpx.AsyncClient
    name: str

    def organizations(self) -> list[str]: ...
    async def close(self) -> None: ...


async def drain(source: Any, organization: str, replay: Replay) -> None:
    walkable = cast(Walkable, source)
    # The source's own client, only its transport swapped: no request can leave the process.
    walkable.client._transport = httpx.MockTransport(replay)
    walkable.client._mounts = {}
    poller = Poller(source, cast(Any, None), lambda: None)
    last_watermark: int | None = None
    yielded = 0
    try:
        async with asyncio.timeout(20):
            async for page in source.pages(organization, None):
                yielded += 1
                assert yielded <= MAX_REQUESTS
                assert isinstance(page, Page)
                keys = [key for _, key in page.entries]
                assert all(isinstance(pair, tuple) and len(pair) == 2 for pair in page.entries)
                assert all(isinstance(key, str) and key for key in keys)
                assert len(set(keys)) == len(keys), "a key twice in one page"
                assert orjson.loads(orjson.dumps(page.cursor)) == page.cursor, "cursor not JSON"
                watermark = page.cursor["watermark_ms"]
                assert replay.window_end is not None and watermark <= replay.window_end, (
                    "the cursor moved beyond every window the vendor was asked for"
                )
                last_watermark = watermark
                normalized, quarantined = await poller._normalize(organization, page.entries, OBSERVED)
                assert len(normalized) + len(quarantined) == len(page.entries)
                assert all(reason.strip() for reason, _ in quarantined)
                assert {entry.event_id for entry in normalized} <= set(keys)
    except SourceError as exc:  # the poller logs it; the cursor stays before the failed window
        assert str(exc)
        if last_watermark is not None and not isinstance(exc, RateLimitWaitTooLong):  # that one asked nothing
            assert replay.window_end is not None and replay.window_end > last_watermark, (
                "a window whose response failed lies within the cursor already yielded"
            )
    finally:
        await walkable.close()


# --- Codacy -------------------------------------------------------------------------------
codacy_entries = st.lists(
    vendor_entry("id", "timestamp", action=text | anything, actor=anything, result=anything, details=anything),
    max_size=4,
)
codacy_pagination = st.fixed_dictionaries({}, optional={"cursor": anything, "limit": anything, "total": anything})
codacy_envelope = {"data": codacy_entries | anything, "pagination": codacy_pagination | anything}
codacy_bodies = codacy_entries | st.fixed_dictionaries({}, optional=codacy_envelope) | anything


@PROPERTY
@given(answers=sequences(codacy_bodies))
def test_codacy_pages(answers: list[tuple[int, bytes, dict[str, str]]]) -> None:
    config = CodacyConfig(
        type="codacy",
        base_url="http://codacy.invalid/api/v3",
        api_token="t",
        organizations=["gh/acme"],
        slice_hours=12,
        **FAST,
    )
    asyncio.run(drain(CodacySource("codacy", config), "gh/acme", Replay(answers, "to", int)))


# --- ConfigCat ----------------------------------------------------------------------------
configcat_entries = st.lists(
    vendor_entry("auditLogId", "auditLogDateTime", auditLogTypeEnum=text, userEmail=anything, details=anything),
    max_size=4,
)
paging = st.fixed_dictionaries(
    {}, optional={"hasNext": anything, "currentPage": anything | st.integers(0, 5), "totalPages": anything | huge}
)
configcat_bodies = (
    st.fixed_dictionaries({}, optional={"data": configcat_entries | anything, "paging": paging | anything})
    | configcat_entries
    | anything
)
rate_headers = st.fixed_dictionaries(
    {}, optional={"X-Rate-Limit-Remaining": st.sampled_from(["0", "1", "x", "-5"]), "X-Rate-Limit-Reset": ascii_text}
)


@PROPERTY
@given(answers=sequences(configcat_bodies, headers=rate_headers), version=st.sampled_from(["v1", "v2"]))
def test_configcat_pages(answers: list[tuple[int, bytes, dict[str, str]]], version: str) -> None:
    config = ConfigCatConfig(
        type="configcat",
        base_url="http://configcat.invalid",
        username="u",
        password="p",
        organizations=[CONFIGCAT_ORG],
        api_version=version,
        window_days=1,
        page_size=3,
        max_pages=4,
        max_throttle_s=0,
        **FAST,
    )
    asyncio.run(drain(ConfigCatSource("configcat", config), CONFIGCAT_ORG, Replay(answers, "toUtcDateTime", iso_ms)))


# --- Codescoring --------------------------------------------------------------------------
codescoring_entries = st.lists(
    vendor_entry("id", "created_at", message=text | anything, actor=anything, duration=anything), max_size=4
)
drf_envelope = {"count": anything, "next": anything, "previous": anything, "results": codescoring_entries | anything}
codescoring_bodies = codescoring_entries | st.fixed_dictionaries({}, optional=drf_envelope) | anything


@PROPERTY
@given(answers=sequences(codescoring_bodies))
def test_codescoring_pages(answers: list[tuple[int, bytes, dict[str, str]]]) -> None:
    config = CodescoringConfig(
        type="codescoring", base_url="http://codescoring.invalid", token="t", installation="default", per_page=3, **FAST
    )
    with patch.object(codescoring, "MAX_PAGES", MAX_PAGES):
        asyncio.run(
            drain(CodescoringSource("codescoring", config), "default", Replay(answers, "created_at_before", iso_ms))
        )


# --- CodeStax -----------------------------------------------------------------------------
codestax_entries = st.lists(
    vendor_entry("id", "timestamp", action=text | anything, user=anything, metadata=anything, target=anything),
    max_size=4,
)
codestax_bodies = codestax_entries | st.fixed_dictionaries({}, optional={"items": codestax_entries}) | anything


@PROPERTY
@given(answers=sequences(codestax_bodies))
def test_codestax_pages(answers: list[tuple[int, bytes, dict[str, str]]]) -> None:
    config = CodeStaxConfig(
        type="codestax",
        base_url="http://codestax.invalid/api",
        api_key="k",
        limit=3,
        slice_hours=24,
        hourly_request_budget=100_000,
        **FAST,
    )
    with patch.object(codestax, "MAX_PAGES", MAX_PAGES):
        asyncio.run(drain(CodeStaxSource("codestax", config), "default", Replay(answers, "end_date", iso_ms)))


# --- http_json ----------------------------------------------------------------------------
MAPPING: dict[str, Any] = {
    "action": "action",
    "actor.name": "user.name",
    "actor.type": {"path": "user.kind", "map": {"human": "user", "bot*": "service"}, "default": "unknown"},
    "category": {"path": "type", "map": {"login*": "authentication", "*": "configuration"}},
    "outcome": {"path": "ok", "map": {"true": "success", "false": "failure"}},
    "target.id": "object.id",
    "message": "description",
    "details.changes": {"path": "changes", "parse_json": True},
}
STYLES = ["none", "next_link_body", "link_header", "cursor", "page_number", "offset"]
links = (
    st.sampled_from(
        [
            "?page=2",
            "/audit?page=3",
            "http://vendor.invalid/o/audit?after=x",
            "http://other.invalid/a",
            "",
            "#",
            "http://[::1",
            "::::",
            "\x00",
            "//[",
            "javascript:alert(1)",
            "https://vendor.invalid:99999/",
        ]
    )
    | text
)


def http_json_entry(time_format: str) -> st.SearchStrategy[Any]:
    recent = st.integers(0, 2 * 86_400_000).map(lambda ago: now_ms() - ago)
    # past what datetime can hold, each failing its own way: ValueError, OverflowError, OSError
    extreme = huge | st.sampled_from([1e18, -1e18, 1e300, 10**18, -(10**18), 2**63 - 1])
    when = times if time_format == "iso8601" else recent.map(lambda ms: ms // 1000 if time_format == "epoch_s" else ms)
    when = when | extreme
    fields = {"action": text | anything, "user": anything, "changes": anything, "type": text, "ok": anything}
    return st.fixed_dictionaries({"timestamp": when}, optional={"id": ids, **fields}) | vendor_entry(
        "id", "timestamp", **fields
    )


@st.composite
def http_json_case(draw: st.DrawFn) -> tuple[HttpJsonConfig, list[tuple[int, bytes, dict[str, str]]]]:
    time_format = draw(st.sampled_from(["iso8601", "epoch_s", "epoch_ms"]))
    records_path = draw(st.sampled_from(["", "data", "data.items"]))
    config = HttpJsonConfig.model_validate(
        {
            "type": "http_json",
            "vendor": "acme",
            "url": "http://vendor.invalid/{organization}/audit",
            "organizations": ["o"],
            "records_path": records_path,
            "time_field": "timestamp",
            "time_format": time_format,
            "id_field": draw(st.sampled_from([None, "id"])),
            "from_param": "since",
            "to_param": "until",
            "window_format": "epoch_ms",
            "slice_hours": 24,
            "retention_days": draw(st.sampled_from([None, 1.0])),
            "mapping": MAPPING,
            **FAST,
            "pagination": {
                "style": draw(st.sampled_from(STYLES)),
                "page_size": 3,
                "max_pages": 4,
                "total_pages_path": draw(st.sampled_from([None, "total"])),
                "has_next_path": draw(st.sampled_from([None, "has_more"])),
            },
        }
    )
    records = st.lists(http_json_entry(time_format), max_size=4)
    at_path = records if not records_path else records | anything
    if records_path == "data":
        envelope: dict[str, Any] = {"data": at_path}
    elif records_path == "data.items":
        envelope = {"data": st.fixed_dictionaries({"items": at_path}) | anything}
    else:
        envelope = {}
    # mostly the configured envelope with a next link, so paging goes on to the hostile parts
    shaped = st.fixed_dictionaries(
        {**envelope, "next": links}, optional={"total": anything, "has_more": anything, "cursor": anything}
    )
    loose = st.fixed_dictionaries(envelope, optional={"next": anything, "total": anything, "has_more": anything})
    body = st.one_of(shaped, shaped, shaped, loose, records, anything)
    link = st.fixed_dictionaries({}, optional={"Link": links.filter(str.isascii).map(lambda u: f'<{u}>; rel="next"')})
    return config, draw(sequences(body, headers=link))


@PROPERTY
@given(case=http_json_case())
def test_http_json_pages(case: tuple[HttpJsonConfig, list[tuple[int, bytes, dict[str, str]]]]) -> None:
    config, answers = case
    asyncio.run(drain(HttpJsonSource("acme", config), "o", Replay(answers, "until", int)))


@pytest.mark.parametrize("time_format", ["iso8601", "epoch_s", "epoch_ms"])
@PROPERTY
@given(batch=st.data())
def test_http_json_entry_is_normalized_or_quarantined_with_a_reason(time_format: str, batch: st.DataObject) -> None:
    """http_json has no module-level normalizer: its mapping is configuration, so the
    source built from one configuration is what maps."""
    config = HttpJsonConfig.model_validate(
        {
            "type": "http_json",
            "vendor": "acme",
            "url": "http://vendor.invalid/audit",
            "organizations": ["o"],
            "time_field": "timestamp",
            "time_format": time_format,
            "mapping": MAPPING,
        }
    )
    raws = batch.draw(st.lists(http_json_entry(time_format), max_size=6))
    source = HttpJsonSource("acme", config)
    try:
        keyed = [(raw, f"acme:key{i}") for i, raw in enumerate(raws)]
        poller = Poller(source, cast(Any, None), lambda: None)
        normalized, quarantined = asyncio.run(poller._normalize("o", keyed, OBSERVED))
    finally:
        asyncio.run(source.close())
    assert len(normalized) + len(quarantined) == len(raws)
    assert all(reason.strip() for reason, _ in quarantined)
    for entry in normalized:
        event = orjson.loads(entry.data)
        assert event["id"] == entry.event_id and entry.event_id.startswith("acme:key")
        assert event["vendor"] == "acme" and isinstance(event["time"], str) and isinstance(event["action"], str)


# --- presets (okta, github, google_workspace): http_json configured by packaged YAML --------------
def preset_config(name: str, **overrides: Any) -> HttpJsonConfig:
    model, _ = SOURCES[name]
    base = {
        "type": name,
        "organizations": ["o"],
        **FAST,
        "slice_hours": 24,
        "pagination": {"max_pages": 4},
        **overrides,
    }
    return cast(HttpJsonConfig, model.model_validate(base))


rate_limit_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Rate-Limit-Remaining": st.sampled_from(["0", "1", "x", "-5", "99999999999999999999"]),
        "X-Rate-Limit-Reset": st.sampled_from(["0", "1", str(2**40), "soon", "Wed, 21 Oct 2015 07:28:00 GMT"])
        | ascii_text,
        "x-ratelimit-remaining": st.sampled_from(["0", "3"]),
        "Retry-After": st.sampled_from(["0", "x", "-1"]),
    },
)


@st.composite
def link_and_limits(draw: st.DrawFn) -> dict[str, str]:
    headers = dict(draw(rate_limit_headers))
    link = draw(st.none() | links.filter(str.isascii))
    if link is not None:
        headers["Link"] = f'<{link}>; rel="next"'
    return headers


okta_entries = st.lists(
    vendor_entry(
        "uuid",
        "published",
        eventType=text | anything,
        actor=anything,
        target=anything,
        outcome=anything,
        client=anything,
    ),
    max_size=4,
)


@PROPERTY
@given(answers=sequences(okta_entries | anything, headers=link_and_limits()))
def test_okta_preset_pages(answers: list[tuple[int, bytes, dict[str, str]]]) -> None:
    config = preset_config("okta", url="http://okta.invalid/{organization}/api/v1/logs", auth={"token": "t"})
    asyncio.run(drain(HttpJsonSource("okta", config), "o", Replay(answers, "until", iso_ms)))


github_times = st.integers(0, 2 * 86_400_000).map(lambda ago: now_ms() - ago) | huge | anything
github_entries = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "_document_id": ids,
            "@timestamp": github_times,
            "action": text | anything,
            "actor": anything,
            "user": anything,
            "repo": anything,
        },
    )
    | entries,
    max_size=4,
)


def phrase_end(phrase: str) -> int:
    """The end of the ``created:FROM..TO`` window the GitHub preset writes into ``phrase``."""
    return iso_ms(phrase.split("..", 1)[1]) + 999  # whole seconds: the whole last second


@PROPERTY
@given(answers=sequences(github_entries | anything, headers=link_and_limits()))
def test_github_preset_pages(answers: list[tuple[int, bytes, dict[str, str]]]) -> None:
    config = preset_config("github", url="http://github.invalid/orgs/{organization}/audit-log", auth={"token": "t"})
    asyncio.run(drain(HttpJsonSource("github", config), "o", Replay(answers, "phrase", phrase_end)))


google_ids = st.fixed_dictionaries({}, optional={"time": times, "uniqueQualifier": ids, "applicationName": text})
google_entries = st.lists(
    st.fixed_dictionaries({}, optional={"id": google_ids | anything, "events": anything, "actor": anything}) | entries,
    max_size=4,
)
google_bodies = (
    st.fixed_dictionaries(
        {}, optional={"items": google_entries | anything, "nextPageToken": text | anything, "kind": text}
    )
    | anything
)


@PROPERTY
@given(answers=sequences(google_bodies, headers=rate_limit_headers))
def test_google_workspace_preset_pages(answers: list[tuple[int, bytes, dict[str, str]]]) -> None:
    # the token exchange has its own tests (tests/presets); here a bearer token keeps the walk offline
    config = preset_config(
        "google_workspace",
        url="http://google.invalid/applications/{organization}",
        auth={"type": "bearer", "token": "t"},
    )
    asyncio.run(drain(HttpJsonSource("google_workspace", config), "o", Replay(answers, "endTime", iso_ms)))
