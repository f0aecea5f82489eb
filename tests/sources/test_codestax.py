"""CodeStax: the emulator over real HTTP, the real CLI with a file sink, budget pacing, golden mappings."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from forwarder.emulators.codestax import DEFAULT_API_KEY, format_timestamp
from forwarder.event import NormalizedEvent, content_id, parse_ms
from forwarder.sources.codestax import CodeStaxConfig, CodeStaxSource, TokenBucket, entry_key, normalize_entry
from forwarder.sources.http import MalformedResponse
from tests.support.daemon import delivered_ids as ids
from tests.support.daemon import file_sink_config as config
from tests.support.daemon import once_ok as once
from tests.support.daemon import read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.repeating_pages import assert_a_repeated_page_stops_the_walk

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codestax"
DAY_MS = 86_400_000


@pytest.fixture
def codestax() -> Iterator[EmulatorProcess]:
    emulator = running("codestax", entries=60, options={"span_s": 3 * 86400})
    yield emulator
    emulator.stop()


def source(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "codestax",
        "base_url": f"{url}/api",
        "api_key": DEFAULT_API_KEY,
        "organization": "acme",
        "limit": 10,
        "initial_lookback_days": 7,
        "lag_s": 0,
        "overlap_s": 600,
        "max_attempts": 4,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "hourly_request_budget": 100_000,
        **overrides,
    }


def expected_ids(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(f"codestax:acme:{e['id']}" for e in emulator.entries())


def test_first_run_incremental_run_and_boundary_ties(tmp_path: Path, codestax: EmulatorProcess) -> None:
    cfg = config(tmp_path, {"codestax": source(codestax.url, slice_hours=24)})
    tie = format_timestamp((int(time.time()) - 2) * 1_000_000)
    entry = {
        "timestamp": tie,
        "user": {"name": "Tie", "email": "tie@example.com"},
        "category": "auth",
        "target": "tie@example.com",
        "metadata": {"ip": "192.0.2.9"},
    }
    codestax.control("POST", "entries", [{**entry, "action": "auth.login"}, {**entry, "action": "auth.logout"}])
    once(cfg)
    assert ids(tmp_path) == expected_ids(codestax)
    assert sum(ids(tmp_path).values()) == 62
    once(cfg)
    assert sum(ids(tmp_path).values()) == 62
    codestax.control("POST", "entries", {"generate": 5, "span_s": 1})
    codestax.control("POST", "entries", [{**entry, "action": "api_key.created", "target": "siem"}])  # the same ms
    once(cfg)
    got = ids(tmp_path)
    assert got == expected_ids(codestax) and max(got.values()) == 1
    assert sum(got.values()) == 68
    events = read_ndjson(tmp_path / "out")
    assert sorted(e["action"] for e in events if e["actor"]["email"] == "tie@example.com") == [
        "api_key.created",
        "auth.login",
        "auth.logout",
    ]
    for event in events:
        NormalizedEvent.model_validate(event)


def test_429_storm_is_retried_honouring_retry_after(tmp_path: Path, codestax: EmulatorProcess) -> None:
    # the emulator's own hourly budget (3 requests a second here) answers 429 with Retry-After: 1
    codestax.control("POST", "config", {"hourly_budget": 3, "budget_window_s": 1.0, "retry_after": 1})
    cfg = config(tmp_path, {"codestax": source(codestax.url, max_attempts=6)})
    stderr = once(cfg)
    assert "source request retried" in stderr and "Rate limit exceeded" in stderr
    log = codestax.control("GET", "requests")
    throttled = [i for i, r in enumerate(log) if r[3] == 429]
    assert throttled
    for i in throttled:
        assert log[i + 1][0] - log[i][0] >= 0.95  # Retry-After: 1
    assert ids(tmp_path) == expected_ids(codestax)


def test_auth_failure_is_isolated_and_detail_surfaced(tmp_path: Path, codestax: EmulatorProcess) -> None:
    bad_key = "ch_" + "f" * 64
    cfg = config(tmp_path, {"good": source(codestax.url), "bad": source(codestax.url, api_key=bad_key)})
    stderr = once(cfg, code=1)
    assert "CodeStax answered 401" in stderr and "Not authenticated" in stderr
    assert bad_key not in stderr and DEFAULT_API_KEY not in stderr
    events = read_ndjson(tmp_path / "out")
    assert {e["source"] for e in events} == {"good"} and len(events) == 60


def insert_after_first_page(emulator: EmulatorProcess, entries: list[dict[str, Any]]) -> None:
    deadline = time.time() + 20
    while time.time() < deadline and not emulator.control("GET", "requests"):
        time.sleep(0.02)
    emulator.control("POST", "entries", entries)


def test_entries_written_mid_walk_shift_pages_without_loss(tmp_path: Path, codestax: EmulatorProcess) -> None:
    pass_then_hold = [
        {"status": 0, "count": 1, "path_contains": "audit"},
        {"status": 0, "count": 1, "delay_s": 1.5, "path_contains": "audit"},
    ]
    codestax.control("POST", "faults", pass_then_hold)
    now_us = int(time.time() * 1_000_000)
    late = [
        {
            "timestamp": format_timestamp(now_us - n * 1000),
            "user": {"email": "late@example.com"},
            "action": "scan.triggered",
            "category": "scans",
            "target": "acme/web-app",
        }
        for n in range(15)
    ]
    writer = threading.Thread(target=insert_after_first_page, args=(codestax, late))
    cfg = config(tmp_path, {"codestax": source(codestax.url, slice_hours=24 * 30)})  # one walk
    original = set(expected_ids(codestax))
    writer.start()
    once(cfg)
    writer.join()
    first = ids(tmp_path)
    assert original <= set(first) and max(first.values()) == 1
    once(cfg)
    assert ids(tmp_path) == expected_ids(codestax)


async def test_cursor_older_than_retention_emits_a_gap_event(codestax: EmulatorProcess) -> None:
    src = CodeStaxSource("cx", CodeStaxConfig.model_validate(source(codestax.url, slice_hours=24 * 30)))
    old = int(time.time() * 1000) - 120 * DAY_MS
    try:
        assert "acme" in await src.check()
        pages = [p async for p in src.pages("acme", {"watermark_ms": old, "recent": {}})]
        fresh = [p async for p in src.pages("acme", None)]  # a first run is no gap
    finally:
        await src.close()
    gaps = [e for p in pages for e in p.extra_events]
    assert len(gaps) == 1 and gaps[0]["action"] == "forwarder.gap" and gaps[0]["category"] == "forwarder"
    assert datetime.fromisoformat(gaps[0]["details"]["to"]) > datetime.now(UTC).replace(year=2000)
    NormalizedEvent.model_validate(gaps[0])
    assert sum(len(p.entries) for p in pages) == 60
    assert not [e for p in fresh for e in p.extra_events]
    requests = codestax.control("GET", "requests")
    assert all("start_date" in r[2] for r in requests[1:])


async def test_token_bucket_spreads_a_backlog_within_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    stamps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(100, clock=lambda: now[0], sleep=fake_sleep)
    for _ in range(250):
        await bucket.acquire("cx")
        stamps.append(now[0])
    assert stamps[9] == 0.0 and stamps[10] > 0  # a burst of a tenth, then paced
    for i, start in enumerate(stamps):  # any hour holds at most the budget
        assert sum(1 for t in stamps[i:] if t < start + 3600) <= 100
    assert stamps[-1] < 3 * 3600  # and the backlog still moves at the budget's pace


async def test_a_wait_for_budget_longer_than_the_request_timeout_is_no_timeout(codestax: EmulatorProcess) -> None:
    config = CodeStaxConfig.model_validate(
        source(codestax.url, hourly_request_budget=100, timeout_s=0.5, max_attempts=1)
    )
    src = CodeStaxSource("cx", config)
    src.bucket.tokens = 1 - 0.03  # the next token in 0.03 / (90 per hour) = 1.2 s, over timeout_s
    started = time.monotonic()
    try:
        assert "acme" in await src.check()
    finally:
        await src.close()
    assert time.monotonic() - started >= 1.0


async def test_requests_including_retries_spend_the_budget(codestax: EmulatorProcess) -> None:
    class Counting(TokenBucket):
        calls = 0

        async def acquire(self, source: str) -> float:
            Counting.calls += 1
            return 0.0

    codestax.control("POST", "faults", {"status": 503, "count": 2, "path_contains": "audit"})
    src = CodeStaxSource("cx", CodeStaxConfig.model_validate(source(codestax.url)), bucket=Counting(1000))
    try:
        await src.check()
    finally:
        await src.close()
    assert Counting.calls == 3


def test_golden_mapping_of_every_category() -> None:
    raw = json.loads((FIXTURES / "raw.json").read_text())
    expected = json.loads((FIXTURES / "expected.json").read_text())
    observed = datetime(2026, 3, 13, tzinfo=UTC)
    got = [normalize_entry("codestax", "acme", r, entry_key("acme", r), observed) for r in raw]
    assert got == expected
    for event in got:
        NormalizedEvent.model_validate(event)
    assert {r.get("category") for r in raw} >= {
        "auth",
        "repositories",
        "scans",
        "findings",
        "team",
        "settings",
        "integrations",
    }
    by_action = {e["action"]: e for e in got}
    assert by_action["scan.failed"]["outcome"] == "failure"
    assert by_action["auth.login"]["activity"] == "login" and by_action["auth.login"]["category"] == "authentication"
    assert by_action["finding.exported"]["category"] == "data_access"
    assert by_action["billing.plan_changed"]["category"] == "unknown"
    assert got[-1]["id"] == content_id("codestax", "acme", raw[-1])  # no id: the whole entry's hash


async def test_full_pages_that_repeat_forever_stop_the_walk() -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = [{"id": i, "timestamp": now, "user": {"email": "a@b.c"}, "action": "scan.triggered"} for i in range(5)]
    config = CodeStaxConfig(
        type="codestax",
        base_url="http://cx.test/api",
        api_key=DEFAULT_API_KEY,
        limit=5,
        initial_lookback_days=1,
        lag_s=0,
        max_attempts=1,
    )
    await assert_a_repeated_page_stops_the_walk(CodeStaxSource("cx", config), page)


async def test_entries_without_id_that_differ_only_in_metadata_are_both_kept() -> None:
    """Keyed on timestamp, user, action and target only, a twin arriving late and listed first
    took the earlier entry's key: it was skipped as seen, and the earlier one sent again."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    common = {"timestamp": now, "user": {"email": "a@b.c"}, "action": "scan.triggered", "target": "acme/web"}
    first, late = {**common, "metadata": {"ip": "192.0.2.1"}}, {**common, "metadata": {"ip": "192.0.2.2"}}
    served: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=served)

    config = CodeStaxConfig(
        type="codestax",
        base_url="http://cx.test/api",
        api_key=DEFAULT_API_KEY,
        initial_lookback_days=1,
        lag_s=0,
        max_attempts=1,
    )
    src = CodeStaxSource("cx", config)
    await src.client.aclose()
    src.client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://cx.test/api")
    src.fetcher.client = src.client
    cursor, sent = None, []
    for body in ([first], [late, first]):  # newest first: the late twin comes before the one already sent
        served[:] = body
        async for page in src.pages("acme", cursor):
            sent += [raw["metadata"]["ip"] for raw, _ in page.entries]
            cursor = page.cursor
    await src.close()
    assert sorted(sent) == ["192.0.2.1", "192.0.2.2"]


class Redirecting(BaseHTTPRequestHandler):
    """Sends every request on to ``self.server.location`` (307), and notes the API keys it saw."""

    def do_GET(self) -> None:
        self.server.keys.append(self.headers.get("X-API-Key"))  # type: ignore[attr-defined]
        location = self.server.location  # type: ignore[attr-defined]
        if location is None:
            body = b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b""
            self.send_response(307)
            self.send_header("Location", location + self.path)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(location: str | None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    server.location, server.keys = location, []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def test_a_redirect_to_another_origin_never_gets_the_api_key() -> None:
    elsewhere = serve(None)
    redirecting = serve(f"http://127.0.0.1:{elsewhere.server_port}")
    config = CodeStaxConfig(
        type="codestax",
        base_url=f"http://127.0.0.1:{redirecting.server_port}/api",
        api_key=DEFAULT_API_KEY,
        max_attempts=1,
    )
    src = CodeStaxSource("cx", config)
    try:
        with pytest.raises(MalformedResponse, match="refusing to send the API key there"):
            await src.check()
    finally:
        await src.close()
        redirecting.shutdown()
        elsewhere.shutdown()
    assert redirecting.keys == [DEFAULT_API_KEY]  # type: ignore[attr-defined]
    assert elsewhere.keys == []  # type: ignore[attr-defined]


async def test_differently_named_time_and_id_fields_are_a_setting(codestax: EmulatorProcess) -> None:
    """The item shape is inferred: a server naming the time and id otherwise is a config change."""
    codestax.control("POST", "config", {"field_names": {"timestamp": "created", "id": "event_id"}})
    settings = source(codestax.url, time_field="created", id_field="event_id")
    src = CodeStaxSource("cx", CodeStaxConfig.model_validate(settings))
    observed = datetime.now(UTC)
    try:
        entries = [entry async for page in src.pages("acme", None) for entry in page.entries]
    finally:
        await src.close()
    assert Counter(key for _, key in entries) == expected_ids(codestax)  # the same keys as with "id"
    by_id = {f"codestax:acme:{e['id']}": e for e in codestax.entries()}
    for raw, key in entries:
        event = src.normalize("acme", raw, key, observed)
        NormalizedEvent.model_validate(event)
        assert datetime.fromisoformat(event["time"]) == datetime.fromisoformat(by_id[key]["timestamp"])


def test_an_entry_without_its_time_field_says_which_setting_to_check() -> None:
    raw = {"id": 9, "created": "2026-03-12T10:00:00Z", "user": {"email": "a@b.c"}, "action": "scan.triggered"}
    observed = datetime(2026, 3, 13, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"entry has no 'timestamp' time; set time_field"):
        normalize_entry("codestax", "acme", raw, "codestax:acme:9", observed)
    event = normalize_entry("codestax", "acme", raw, "codestax:acme:9", observed, time_field="created")
    assert event["time"] == "2026-03-12T10:00:00.000Z"
    assert entry_key("acme", raw) == "codestax:acme:9"
    assert entry_key("acme", raw, None) == content_id("codestax", "acme", raw)


@pytest.mark.parametrize("retention_days", [90, 365])
async def test_a_plan_that_keeps_longer_is_a_retention_days_setting(retention_days: int) -> None:
    """Enterprise can extend the 90 days: after 101 days of downtime, what CodeStax still serves
    is collected once retention_days says so; with the default the older part is a reported gap."""
    now = int(time.time() * 1000)
    options = {"span_s": 100 * 86400, "end_ms": now - 3_600_000, "config": {"retention_days": 365}}
    emulator = running("codestax", entries=100, options=options)
    settings = source(
        emulator.url,
        slice_hours=24 * 30,
        initial_lookback_days=365,
        **({} if retention_days == 90 else {"retention_days": retention_days}),
    )
    src = CodeStaxSource("cx", CodeStaxConfig.model_validate(settings))
    try:
        entries = emulator.entries()
        resumed = [p async for p in src.pages("acme", {"watermark_ms": now - 101 * DAY_MS, "recent": {}})]
        first_run = [p async for p in src.pages("acme", None)]
    finally:
        await src.close()
        emulator.stop()
    kept = {f"codestax:acme:{e['id']}" for e in entries if parse_ms(e["timestamp"]) >= now - retention_days * DAY_MS}
    gaps = [e for p in resumed for e in p.extra_events]
    for pages in (resumed, first_run):
        assert {key for p in pages for _, key in p.entries} == kept
    if retention_days == 365:  # all 100, none reported lost
        assert len(kept) == 100 and gaps == []
    else:  # the documented behaviour of a cursor older than retention_days
        assert 80 < len(kept) < 100 and [g["action"] for g in gaps] == ["forwarder.gap"]


def test_a_lookback_past_retention_days_is_said_not_silently_cut() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        CodeStaxSource("cx", CodeStaxConfig.model_validate(source("http://cx.test", initial_lookback_days=365)))
        CodeStaxSource(
            "cx", CodeStaxConfig.model_validate(source("http://cx.test", initial_lookback_days=365, retention_days=365))
        )
    assert [e["retention_days"] for e in logs if "retention_days" in e["event"]] == [90.0]


def test_any_changed_verb_is_an_update_and_denied_or_rejected_a_failure() -> None:
    observed = datetime.now(UTC)
    base = {"id": 1, "timestamp": "2026-11-24T10:00:00Z", "user": {"email": "a@example.com"}}
    changed = normalize_entry("codestax", "acme", {**base, "action": "repository.branch_changed"}, "k", observed)
    assert (changed["activity"], changed["outcome"]) == ("update", "success")
    for action in ("auth.access_denied", "settings.change_rejected"):
        assert normalize_entry("codestax", "acme", {**base, "action": action}, "k", observed)["outcome"] == "failure"


# The vendor's "What Gets Logged" table, one action per event, with the table's category.
DOCUMENTED = {
    "auth.login": "auth",
    "auth.logout": "auth",
    "api_key.created": "auth",
    "api_key.revoked": "auth",
    "repository.connected": "repositories",
    "repository.disconnected": "repositories",
    "repository.settings_changed": "repositories",
    "scan.triggered": "scans",
    "scan.completed": "scans",
    "scan.failed": "scans",
    "scan.cancelled": "scans",
    "finding.triaged": "findings",
    "finding.ignored": "findings",
    "finding.commented": "findings",
    "team.member_invited": "team",
    "team.role_changed": "team",
    "team.member_removed": "team",
    "settings.updated": "settings",
    "settings.webhook_configured": "settings",
    "settings.policy_changed": "settings",
    "integration.jira_linked": "integrations",
    "integration.oauth_token_refreshed": "integrations",
    "integration.webhook_enabled": "integrations",
    "integration.webhook_disabled": "integrations",
}
# The "Action type" filter's documented values, and the singular of each action's prefix.
FILTER_SPELLINGS = {"scan.triggered": "scan", "finding.triaged": "triage", "repository.connected": "repository"}
# Optional fields absent, null or of another JSON type than the documents suggest.
ODD_FIELDS: list[dict[str, Any]] = [
    {"user": None},
    {"user": "jane@example.com"},
    {"user": {"name": None, "email": None}},
    {"user": {"name": 'Jöhn "Q" 日本', "email": 12}},
    {"target": None},
    {"target": 4711},
    {"target": ""},
    {"target": {"type": "repository", "name": "my-app"}},
    {"target": ["a", "b"]},
    {"metadata": None},
    {"metadata": "ip=203.0.113.7"},
    {"metadata": {"ip": ["203.0.113.7"], "user_agent": {"ua": 1}}},
    {"metadata": {"repository": {"name": "my-app"}, "old": {"role": "dev"}, "new": {"role": "admin"}}},
    {"category": None},
    {"category": 7},
    {"category": "something-new"},
    {"action": 5},
]


def test_every_documented_event_and_odd_field_goes_through_the_daemon(tmp_path: Path) -> None:
    """Black box: every category and event of the vendor's table (with the table's category,
    with the filter's spelling of it, without any), and each optional field absent, null or of
    an unexpected JSON type, served by the emulator and read by ``once``: each delivered once,
    valid, ``raw`` verbatim, and no documented event left ``unknown``."""
    user = {"name": "Jane Doe", "email": "jane@example.com"}
    entries: list[dict[str, Any]] = []
    for action, category in DOCUMENTED.items():
        for given in (category, FILTER_SPELLINGS.get(action), None):
            entry = {"user": user, "action": action, "target": "my-app", "metadata": {"ip": "203.0.113.7"}}
            if given:
                entry["category"] = given
            entries.append(entry)
    for odd in ODD_FIELDS:
        entries.append({"user": user, "action": "scan.triggered", "category": "scans", "target": "my-app", **odd})
    for field in ("user", "target", "metadata", "category"):
        entries.append({k: v for k, v in entries[0].items() if k != field})
    emulator = running("codestax")
    try:
        emulator.control("POST", "entries", entries)  # the default key's organization
        served = {e["id"]: {k: v for k, v in e.items() if k != "_org"} for e in emulator.entries()}
        cfg = config(tmp_path, {"codestax": source(emulator.url)})
        once(cfg)
        once(cfg)
    finally:
        emulator.stop()
    events = read_ndjson(tmp_path / "out")
    assert Counter(e["id"] for e in events) == Counter(f"codestax:acme:{i}" for i in served)
    assert len(events) == len(entries)
    for event in events:
        NormalizedEvent.model_validate(event)
        assert event["raw"] == served[event["raw"]["id"]]
        if event["action"] in DOCUMENTED:
            assert event["category"] != "unknown" and event["activity"] != "other", event["raw"]

    def event_of(**odd: Any) -> dict[str, Any]:
        return next(e for e in events if all(e["raw"].get(k, "absent") == v for k, v in odd.items()))

    assert event_of(action="finding.triaged", category="triage")["category"] == "entity_management"
    assert event_of(action="scan.triggered", category="scan")["category"] == "analysis"
    assert event_of(category="something-new")["category"] == "analysis"  # the action's prefix still says it
    assert event_of(action=5)["action"] == "5" and event_of(action=5)["category"] == "analysis"
    as_object = event_of(target={"type": "repository", "name": "my-app"})
    assert as_object["target"] == {"type": "repository", "id": "my-app", "name": "my-app"}
    assert as_object["repository"] == "my-app"
    assert event_of(target=4711)["target"]["id"] == "4711"
    assert event_of(target="")["target"]["name"] is None and event_of(target="")["repository"] is None
    assert event_of(target=["a", "b"])["target"]["name"] is None
    nobody = event_of(user={"name": None, "email": None})["actor"]
    assert nobody["type"] == "unknown"
    assert event_of(user={"name": 'Jöhn "Q" 日本', "email": 12})["actor"]["email"] == "12"
    as_list = event_of(metadata={"ip": ["203.0.113.7"], "user_agent": {"ua": 1}})["actor"]
    assert as_list["ip"] == '["203.0.113.7"]' and as_list["user_agent"] == '{"ua":1}'
    changed = event_of(metadata={"repository": {"name": "my-app"}, "old": {"role": "dev"}, "new": {"role": "admin"}})
    assert changed["repository"] == "my-app" and changed["details"]["new"] == {"role": "admin"}


def test_a_user_written_as_name_and_email_is_both() -> None:
    """The document's User is "name and email"; written as one text (``Jane Doe
    <jane@example.com>``, as an export writes it) it was taken whole as the email."""
    base = {"id": 1, "timestamp": "2026-11-24T04:30:00Z", "action": "scan.triggered", "target": "web"}
    observed = datetime(2026, 11, 25, tzinfo=UTC)
    for text, name in (("Jane Doe <jane@example.com>", "Jane Doe"), ('"Doe, Jane" <jane@example.com>', "Doe, Jane")):
        event = normalize_entry("cx", "acme", {**base, "user": text}, "codestax:acme:1", observed)
        assert event["actor"]["name"] == name and event["actor"]["email"] == "jane@example.com"
        assert event["actor"]["id"] == "jane@example.com" and event["actor"]["type"] == "user"
    bare = normalize_entry("cx", "acme", {**base, "user": "<jane@example.com>"}, "codestax:acme:1", observed)
    assert bare["actor"]["name"] is None and bare["actor"]["email"] == "jane@example.com"


async def test_differently_named_entry_fields_and_category_spellings_are_settings(codestax: EmulatorProcess) -> None:
    """The documented columns are User, Action, Target and Metadata, and the category a filter;
    the names the API gives them, and how it spells a category, are inferred like the time's:
    a server that differs is a config change, not every entry quarantined for "no action"."""
    renames = {"user": "actor", "action": "event", "target": "resource", "metadata": "context", "category": "kind"}
    codestax.control("POST", "config", {"field_names": renames})
    served = {f"codestax:acme:{e['id']}": e for e in codestax.entries()}
    spellings = {"Code scans": "scans", "Sign-in": "auth"}
    settings = source(
        codestax.url,
        user_field="actor",
        action_field="event",
        target_field="resource",
        metadata_field="context",
        category_field="kind",
        category_aliases=spellings,
    )
    src = CodeStaxSource("cx", CodeStaxConfig.model_validate(settings))
    observed = datetime.now(UTC)
    try:
        entries = [entry async for page in src.pages("acme", None) for entry in page.entries]
    finally:
        await src.close()
    assert len(entries) == len(served) == 60
    default = CodeStaxSource("cx", CodeStaxConfig.model_validate(source(codestax.url)))
    await default.close()
    for raw, key in entries:
        event = src.normalize("acme", raw, key, observed)
        NormalizedEvent.model_validate(event)
        original = {k: v for k, v in served[key].items() if k != "_org"}
        assert {k: v for k, v in event.items() if k != "raw"} == {
            k: v for k, v in default.normalize("acme", original, key, observed).items() if k != "raw"
        }
    spelled_as = (("run.started", "Code scans", "analysis"), ("login", "Sign-in", "authentication"))
    for action, spelled, category in spelled_as:
        entry = {"id": 1, "timestamp": "2026-03-12T10:00:00Z", "event": action, "kind": spelled, "resource": "web"}
        assert src.normalize("acme", entry, "k", observed)["category"] == category
        fields = {"action_field": "event", "target_field": "resource", "category_field": "kind"}
        assert normalize_entry("cx", "acme", entry, "k", observed, **fields)["category"] == "unknown"  # no alias
    with pytest.raises(ValueError, match="set action_field"):
        src.normalize("acme", served[entries[0][1]], "k", observed)
