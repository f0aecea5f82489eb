"""Codescoring: the emulator over real HTTP, the real CLI with a file sink, and golden mappings."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from structlog.testing import capture_logs

from forwarder.emulators.codescoring import format_created_at
from forwarder.event import NormalizedEvent
from forwarder.sources.codescoring import (
    TEMPLATES,
    CodescoringConfig,
    CodescoringSource,
    normalize_entry,
    parse_message,
)
from tests.support.daemon import delivered_ids as ids
from tests.support.daemon import file_sink_config as config
from tests.support.daemon import once_ok as once
from tests.support.daemon import read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.repeating_pages import assert_a_repeated_page_stops_the_walk

TOKEN = "codescoring-test-token"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codescoring"


@pytest.fixture
def codescoring() -> Iterator[EmulatorProcess]:
    emulator = running("codescoring", entries=60, options={"span_s": 3 * 86400, "orgs": ["acme"]})
    yield emulator
    emulator.stop()


def source(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "codescoring",
        "base_url": url,
        "token": TOKEN,
        "installation": "acme",
        "per_page": 10,
        "initial_lookback_days": 7,
        "lag_s": 0,
        "overlap_s": 600,
        "max_attempts": 4,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        **overrides,
    }


def expected_ids(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(f"codescoring:acme:{e['id']}" for e in emulator.entries())


def test_first_run_collects_everything_once_then_only_new_entries(tmp_path: Path, codescoring: EmulatorProcess) -> None:
    cfg = config(tmp_path, {"codescoring": source(codescoring.url)})
    once(cfg)
    assert ids(tmp_path) == expected_ids(codescoring)
    assert len(ids(tmp_path)) == 60
    once(cfg)
    assert sum(ids(tmp_path).values()) == 60
    codescoring.control("POST", "entries", {"generate": 7, "span_s": 1})
    once(cfg)
    assert ids(tmp_path) == expected_ids(codescoring)
    assert sum(ids(tmp_path).values()) == 67
    events = read_ndjson(tmp_path / "out")
    assert {e["organization"] for e in events} == {"acme"}
    for event in events:
        NormalizedEvent.model_validate(event)


def test_bare_list_without_time_filter_walks_down_to_the_watermark(
    tmp_path: Path, codescoring: EmulatorProcess
) -> None:
    codescoring.control("POST", "config", {"bare_list": True, "filters_enabled": False})
    cfg = config(tmp_path, {"codescoring": source(codescoring.url, use_time_filter=False)})
    once(cfg)
    codescoring.control("POST", "entries", {"generate": 3, "span_s": 1})
    once(cfg)
    assert ids(tmp_path) == expected_ids(codescoring)
    assert sum(ids(tmp_path).values()) == 63


def test_walk_stops_at_the_watermark(tmp_path: Path, codescoring: EmulatorProcess) -> None:
    codescoring.control("POST", "config", {"filters_enabled": False})  # a server that ignores the filter
    cfg = config(tmp_path, {"codescoring": source(codescoring.url)})
    once(cfg)
    before = len(codescoring.control("GET", "requests"))
    codescoring.control("POST", "entries", {"generate": 3, "span_s": 1})
    once(cfg)
    requests = codescoring.control("GET", "requests")[before:]
    assert [r[2].split("page=")[1].split("&")[0] for r in requests] == ["1"]  # not all 7 pages again
    assert sum(ids(tmp_path).values()) == 63


def test_boundary_ties_are_neither_lost_nor_duplicated(tmp_path: Path, codescoring: EmulatorProcess) -> None:
    cfg = config(tmp_path, {"codescoring": source(codescoring.url)})
    tie = format_created_at((int(time.time()) - 2) * 1_000_000)
    codescoring.control(
        "POST", "entries", [{"created_at": tie, "actor": "tie", "message": f"User logged in {n}"} for n in range(3)]
    )
    once(cfg)
    codescoring.control("POST", "entries", [{"created_at": tie, "actor": "tie", "message": "User logged out"}])
    once(cfg)
    got = ids(tmp_path)
    assert got == expected_ids(codescoring)
    assert max(got.values()) == 1
    assert len([e for e in read_ndjson(tmp_path / "out") if e["actor"]["name"] == "tie"]) == 4


def test_429_and_503_storm_is_retried_honouring_retry_after(tmp_path: Path, codescoring: EmulatorProcess) -> None:
    codescoring.control(
        "POST",
        "faults",
        [
            {"status": 429, "count": 2, "retry_after": "1", "path_contains": "audit"},
            {"status": 503, "count": 1, "path_contains": "audit"},
        ],
    )
    cfg = config(tmp_path, {"codescoring": source(codescoring.url)})
    stderr = once(cfg)
    assert "source request retried" in stderr
    log = codescoring.control("GET", "requests")
    statuses = [r[3] for r in log]
    assert statuses[:3] == [429, 429, 503] and set(statuses[3:]) == {200}
    assert log[1][0] - log[0][0] >= 0.95 and log[2][0] - log[1][0] >= 0.95  # Retry-After: 1
    assert ids(tmp_path) == expected_ids(codescoring)


def test_auth_failure_is_isolated_to_its_source(tmp_path: Path, codescoring: EmulatorProcess) -> None:
    cfg = config(tmp_path, {"good": source(codescoring.url), "bad": source(codescoring.url, token="wrong-token-value")})
    stderr = once(cfg, code=1)
    assert "401" in stderr and "check the source's token" in stderr and "Invalid token." in stderr
    assert "wrong-token-value" not in stderr and TOKEN not in stderr
    events = read_ndjson(tmp_path / "out")
    assert {e["source"] for e in events} == {"good"}
    assert len(events) == 60


def test_entries_written_mid_walk_shift_pages_without_loss(tmp_path: Path, codescoring: EmulatorProcess) -> None:
    # page 1 is served at once; page 2 is held while 15 newer entries land, pushing page 1's
    # tail onto page 2 and everything after it one and a half pages down
    pass_then_hold = [
        {"status": 0, "count": 1, "path_contains": "audit"},
        {"status": 0, "count": 1, "delay_s": 1.5, "path_contains": "audit"},
    ]
    codescoring.control("POST", "faults", pass_then_hold)
    now_us = int(time.time() * 1_000_000)
    late = [
        {"created_at": format_created_at(now_us - n * 1000), "actor": "late", "message": "User logged in"}
        for n in range(15)
    ]
    writer = threading.Thread(target=insert_after_first_page, args=(codescoring, late))
    cfg = config(tmp_path, {"codescoring": source(codescoring.url)})
    original = set(expected_ids(codescoring))
    writer.start()
    once(cfg)
    writer.join()
    assert [r[3] for r in codescoring.control("GET", "requests")][:2] == [200, 200]
    first = ids(tmp_path)
    assert original <= set(first)  # nothing older was skipped by the shift
    assert max(first.values()) == 1  # and the repeated page did not duplicate anything
    once(cfg)
    assert ids(tmp_path) == expected_ids(codescoring)


def insert_after_first_page(emulator: EmulatorProcess, entries: list[dict[str, Any]]) -> None:
    deadline = time.time() + 20
    while time.time() < deadline and not emulator.control("GET", "requests"):
        time.sleep(0.02)
    emulator.control("POST", "entries", entries)


async def test_check_and_past_last_page(codescoring: EmulatorProcess) -> None:
    from forwarder.sources.codescoring import CodescoringConfig

    src = CodescoringSource("cs", CodescoringConfig.model_validate(source(codescoring.url)))
    try:
        assert "acme" in await src.check()
        assert await src.fetch_page("acme", 99, 10, None) == ([], False)  # 404 Invalid page: the end
    finally:
        await src.close()


def test_golden_mapping_of_every_template() -> None:
    raw = json.loads((FIXTURES / "raw.json").read_text())
    expected = json.loads((FIXTURES / "expected.json").read_text())
    observed = datetime(2026, 1, 21, tzinfo=UTC)
    got = [normalize_entry("codescoring", "acme", r, CodescoringSource._keys("acme", [r])[0], observed) for r in raw]
    assert got == expected
    for event in got:
        NormalizedEvent.model_validate(event)
    used = {id(parse_message(r["message"])[0]) for r in raw}
    assert {id(t) for t in TEMPLATES} <= used, "every template needs a golden entry"
    assert {e["category"] for e in got} >= {
        "authentication",
        "entity_management",
        "analysis",
        "configuration",
        "access_management",
        "unknown",
    }
    failed_login = next(e for e in got if e["action"] == "user.login_failed")
    assert failed_login["actor"]["name"] == "asmith" and failed_login["outcome"] == "failure"
    assert got[-1]["id"].startswith("codescoring:") and got[-1]["id"].count(":") == 1  # no id: content hash


def test_templates_are_compiled_on_first_use_not_at_import() -> None:
    """Every command that validates a configuration imports this source (docs/performance.md,
    round 10): importing it compiles none of its 35 expressions; matching still works."""
    probe = (
        "import forwarder.sources\n"
        "from forwarder.sources.codescoring.templates import TEMPLATES, parse_message\n"
        "print(sum('pattern' in vars(t) for t in TEMPLATES), len(TEMPLATES))\n"
        "print(parse_message('User logged in')[0].action)\n"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    compiled, templates = map(int, shown.stdout.splitlines()[0].split())
    assert compiled == 0 and templates > 30
    assert shown.stdout.splitlines()[1] == "user.login"


async def test_an_envelope_that_repeats_the_same_page_forever_stops_the_walk() -> None:
    from forwarder.sources.codescoring import CodescoringConfig

    now = datetime.now(UTC).isoformat()
    results = [
        {"id": i, "created_at": now, "actor": "jdoe", "message": "User logged in", "duration": None} for i in range(10)
    ]
    body = {"count": 10_000, "next": "http://cs.test/api/audit_logs/?page=2", "previous": None, "results": results}
    config = CodescoringConfig(
        type="codescoring",
        base_url="http://cs.test",
        token="t",
        per_page=10,
        initial_lookback_days=1,
        lag_s=0,
        max_attempts=1,
    )
    await assert_a_repeated_page_stops_the_walk(CodescoringSource("cs", config), body)


async def poll(src: CodescoringSource, cursor: dict[str, Any] | None) -> tuple[list[str], dict[str, Any] | None]:
    keys: list[str] = []
    async for page in src.pages("acme", cursor):
        keys += [key for _, key in page.entries]
        cursor = page.cursor
    return keys, cursor


def page_numbers(requests: list[list[Any]]) -> list[str]:
    return [r[2].split("page=")[1].split("&")[0] for r in requests if "page=" in r[2]]


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
async def test_an_oldest_first_server_without_a_working_time_filter_loses_nothing(
    codescoring: EmulatorProcess, order: str
) -> None:
    """The order is undocumented: a walk stopped at the first entry below the watermark took
    page 1 of an oldest-first listing (the oldest entries) for the end of the new ones."""
    from forwarder.sources.codescoring import CodescoringConfig

    codescoring.control("POST", "config", {"order": "oldest_first", "filters_enabled": False})
    settings = source(codescoring.url, **({} if order == "newest_first" else {"order": order}))  # the default
    src = CodescoringSource("cs", CodescoringConfig.model_validate(settings))
    try:
        with capture_logs() as logs:
            first, cursor = await poll(src, None)
            now_us = int(time.time() * 1_000_000)
            codescoring.control(
                "POST",
                "entries",
                [
                    {"created_at": format_created_at(now_us - n * 1000), "actor": "late", "message": "User logged in"}
                    for n in range(5)
                ],
            )
            second, cursor = await poll(src, cursor)
            third, _ = await poll(src, cursor)
    finally:
        await src.close()
    assert Counter(first + second) == expected_ids(codescoring)
    assert len(second) == 5 and third == []
    warnings = [e for e in logs if e["log_level"] == "warning" and "order" in e["event"]]
    assert len(warnings) == (3 if order == "newest_first" else 0)  # once per poll, not per page


async def test_oldest_first_walks_every_page_of_a_newest_first_server(codescoring: EmulatorProcess) -> None:
    from forwarder.sources.codescoring import CodescoringConfig

    codescoring.control("POST", "config", {"filters_enabled": False})
    src = CodescoringSource("cs", CodescoringConfig.model_validate(source(codescoring.url, order="oldest_first")))
    try:
        _, cursor = await poll(src, None)
        before = len(codescoring.control("GET", "requests"))
        codescoring.control("POST", "entries", {"generate": 3, "span_s": 1})
        with capture_logs() as logs:
            second, _ = await poll(src, cursor)
    finally:
        await src.close()
    assert len(second) == 3
    assert page_numbers(codescoring.control("GET", "requests")[before:]) == [str(n) for n in range(1, 8)]  # all 63
    assert [e for e in logs if e["log_level"] == "info" and "order: newest_first" in e["event"]]


async def test_differently_named_time_and_id_fields_are_a_setting(codescoring: EmulatorProcess) -> None:
    """The item shape is inferred: a server naming the time and id otherwise is a config change."""
    from forwarder.sources.codescoring import CodescoringConfig

    codescoring.control("POST", "config", {"field_names": {"created_at": "event_time", "id": "pk"}})
    settings = source(codescoring.url, time_field="event_time", id_field="pk")
    src = CodescoringSource("cs", CodescoringConfig.model_validate(settings))
    observed = datetime.now(UTC)
    try:
        entries = [entry async for page in src.pages("acme", None) for entry in page.entries]
    finally:
        await src.close()
    assert Counter(key for _, key in entries) == expected_ids(codescoring)  # the same keys as with "id"
    events = [src.normalize("acme", raw, key, observed) for raw, key in entries]
    by_id = {f"codescoring:acme:{e['id']}": e for e in codescoring.entries()}
    for event in events:
        NormalizedEvent.model_validate(event)
        assert datetime.fromisoformat(event["time"]) == datetime.fromisoformat(by_id[event["id"]]["created_at"])


def test_an_entry_without_its_time_field_says_which_setting_to_check() -> None:
    raw = {"id": 7, "event_time": "2026-01-20T10:15:30+03:00", "actor": "jdoe", "message": "User logged in"}
    observed = datetime(2026, 1, 21, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"entry has no 'created_at' time; set time_field"):
        normalize_entry("cs", "acme", raw, "codescoring:acme:7", observed)
    event = normalize_entry("cs", "acme", raw, "codescoring:acme:7", observed, time_field="event_time")
    assert event["time"] == "2026-01-20T07:15:30.000Z"
    assert CodescoringSource._keys("acme", [raw]) == ["codescoring:acme:7"]
    assert CodescoringSource._keys("acme", [raw], "uid")[0].count(":") == 1  # no such id: the content hash


async def test_a_page_shift_does_not_look_like_an_oldest_first_listing() -> None:
    """Entries written during a newest-first walk repeat older ones on the next page: those
    repeats say nothing of the order (unit: stubbed pages)."""
    from forwarder.event import format_ms

    t0 = 1_700_000_000_000

    def entry(i: int) -> dict[str, Any]:
        return {"id": i, "created_at": format_ms(t0 + i * 1000), "actor": "a", "message": "User logged in"}

    pages = {
        1: [entry(100), entry(99), entry(98)],
        2: [entry(99), entry(98), entry(97)],
        3: [entry(96), entry(95), entry(94)],
        4: [entry(93), entry(92), entry(91)],
    }
    config = CodescoringConfig(type="codescoring", base_url="http://x.test", token="t", per_page=3)
    src = CodescoringSource("cs", config)
    fetched: list[int] = []

    async def fetch_page(
        organization: str, page: int, per_page: int, window: Any, *, budget: Any = None
    ) -> tuple[list[Any], None]:
        fetched.append(page)
        return pages.get(page, []), None

    src.fetch_page = fetch_page  # type: ignore[method-assign]
    try:
        with capture_logs() as logs:
            found = await src.walk("acme", t0 + 95_000, t0 + 200_000)
    finally:
        await src.close()
    assert fetched == [1, 2, 3]  # stopped at the floor
    assert sorted(key for _, key, _ in found) == sorted(f"codescoring:acme:{i}" for i in range(95, 101))
    assert not [e for e in logs if "oldest first" in e["event"]]


async def test_user_and_search_filters_reach_the_server_under_their_configured_names(
    codescoring: EmulatorProcess,
) -> None:
    """The audit log's own filters (username, Search); their names are settings, since the API
    is undocumented: the emulator here answers to other names than the defaults."""
    from forwarder.sources.codescoring import CodescoringConfig

    codescoring.control("POST", "config", {"actor_param": "username", "search_param": "q"})
    actor = Counter(e["actor"] for e in codescoring.entries() if e["actor"] != "system").most_common(1)[0][0]
    mine = [e["message"].lower() for e in codescoring.entries() if e["actor"] == actor]
    word = next(w for m in mine for w in m.split() if w.isalpha() and 0 < sum(w in n for n in mine) < len(mine))
    want = {
        f"codescoring:acme:{e['id']}"
        for e in codescoring.entries()
        if e["actor"] == actor and word in e["message"].lower()
    }
    settings = source(codescoring.url, user=actor, user_param="username", search=word, search_param="q")
    src = CodescoringSource("cs", CodescoringConfig.model_validate(settings))
    try:
        keys, _ = await poll(src, None)
    finally:
        await src.close()
    assert want and set(keys) == want and len(want) < len(mine) < len(codescoring.entries())  # both narrowed
    sent = urlencode({"username": actor}), urlencode({"q": word})
    assert all(sent[0] in r[2] and sent[1] in r[2] for r in codescoring.control("GET", "requests"))


def test_extra_params_join_every_request_through_the_real_daemon(tmp_path: Path, codescoring: EmulatorProcess) -> None:
    """A vendor filter no setting models yet: fixed extra query parameters, on every request
    (the real CLI, so the configuration file's mapping is what reaches the fetcher)."""
    actor = next(e["actor"] for e in codescoring.entries() if e["actor"] != "system")
    extra = {"actor": actor, "ordering": "-created_at"}
    cfg = config(tmp_path, {"codescoring": source(codescoring.url, user_param="username", extra_params=extra)})
    once(cfg)
    assert set(ids(tmp_path)) == {f"codescoring:acme:{e['id']}" for e in codescoring.entries() if e["actor"] == actor}
    requests = codescoring.control("GET", "requests")
    assert requests and all(urlencode({"actor": actor}) in r[2] and "ordering=-created_at" in r[2] for r in requests)


# Every text the vendor's audit-log page lists, its placeholders filled with odd but valid
# values: names with spaces, quotes and non-ASCII, a very long one, empty ones.
ODD = 'My "Proj" ёжик 日本'
SEED_MESSAGES = [
    "Object created",  # the page's License Activation row, verbatim
    f"Object <ActivationKey: Owner: {ODD}. Expired: 2027-01-01. Authors limit: 0> created",
    "No activation key",
    "Problem with activation key: ",
    "User logged in",
    "User logged out",
    "Failed login attempt user with spaces",
    f"Object <Project: {ODD}> created",
    f"Object <Project: {'x' * 5000}> updated",
    "Object 'plain repr' deleted",
    f"[SCA][{ODD}][57/9f1c2a3e-0000-4000-8000-000000000001] Analysis started",
    f"[SCA][{ODD}][57/9f1c2a3e-0000-4000-8000-000000000001] Analysis finished",
    f"[SCA][{ODD}][57/9f1c2a3e-0000-4000-8000-000000000001] Analysis failed. Check server logs.",
    f"Failed to clone for repository {ODD}.",
    f'Failed to detect branch for repository "{ODD}',
    *(
        f"[SCA][{ODD}][58/9f1c2a3e-0000-4000-8000-000000000002] {step}"
        for step in (
            "Clone source code",
            "Collect files data",
            "Collect manifests",
            "Create pipeline",
            "Check policies",
            "Update project metrics",
            "Analyze dependencies",
        )
    ),
    f"[[SCA][{ODD}] Analysis didn't start (Reason: )]",
    "Overall SCA run started for 0 project(s)",
    "Rebuild author jöhn.o'brien@example.com",
    "Generate authors merge rules",
    f"(Run #12) Collect commits data for project {ODD}",
    "(Run #12) Create authors",
    "(Run #12) Load authors OSS contributions",
    *(f"(Run #12) {kind} analysis {status}" for kind in ("Authors", "Clones") for status in ("started", "completed")),
    *(f"(Run #12) {kind} analysis failed. Check server logs." for kind in ("Authors", "Clones")),
    *(f"(Run #12) {kind} analysis cancelled" for kind in ("Authors", "Clones")),
    f"(Run #12) Update project {ODD}",
    f"(Run #12) Clone source code for project {ODD}",
    f"Policy ignore {ODD} created",
    f"Policy ignore {ODD} activated",
    f"To Policy ignore {ODD} added Policy {ODD}",
    "Policy \"No 'GPL'\" (id: 7) skipped. Reason: ValueError(\"bad 'expr'\")",
    f"[Secrets][{ODD}] Analysis started",
    "[Secrets] Training run started",
    f"[Secrets][{ODD}] Analysis finished",
    "[Secrets] Training run finished",
    f"[Secrets][{ODD}] Analysis failed. Check server logs.",
    "[Secrets] Training run failed. Check server logs.",
    f"In container image {ODD} dependency openssl 3.0.13 was changed",
    f"Updating images list for registry {ODD} triggered via update button.",
    "Applying all LDAP group mapping rules triggered",
    " While processing, failed to apply some of rules related to following LDAP servers: ldap 1, ldap2. "
    "Check server logs.",
    "(Run #abc-1) Analysis started via API",
    "Some tasks in analysis failed",
    "Could not connect to OSS Index, reason: ConnectionError('timeout')",
    "There is already running analysis",
    "Another analysis in progress. Parallel execution forbidden.",
    f"Repo path for {ODD} does not exist, setting status to Not cloned",
    f"Failed to clone for repository {ODD} because project was deleted",
]


def test_every_documented_text_with_odd_values_goes_through_the_daemon(tmp_path: Path) -> None:
    """Black box: the seed's every template, odd actors (``system``, empty, a number, an object,
    absent), durations present, absent, zero, null or text, and texts no template knows, served
    by the emulator and read by ``once``: each delivered once, valid, ``raw`` verbatim, none
    unknown but the unknown texts; a second run sends nothing again."""
    actors: list[Any] = ["system", "jdoe", "Jöhn O'Brien", "", 123, {"username": "jdoe"}, None]
    durations: list[Any] = [0, 42.7, None, "1.5"]
    entries: list[dict[str, Any]] = []
    for i, message in enumerate([*SEED_MESSAGES, "A text no template knows", "", 42]):
        entry: dict[str, Any] = {"message": message, "actor": actors[i % len(actors)]}
        if i % 5:
            entry["duration"] = durations[i % len(durations)]
        if entry["actor"] is None:
            del entry["actor"]
        entries.append(entry)
    emulator = running("codescoring", options={"orgs": ["acme"]})
    try:
        emulator.control("POST", "entries", entries)
        served = {e["id"]: {k: v for k, v in e.items() if k != "_org"} for e in emulator.entries()}
        cfg = config(tmp_path, {"codescoring": source(emulator.url)})
        once(cfg)
        once(cfg)
    finally:
        emulator.stop()
    events = read_ndjson(tmp_path / "out")
    assert len(events) == len(entries) == len(served)
    assert Counter(e["id"] for e in events) == Counter(f"codescoring:acme:{i}" for i in served)
    for event in events:
        NormalizedEvent.model_validate(event)
        assert event["raw"] == served[event["raw"]["id"]]
    unknown = [e["raw"]["message"] for e in events if e["action"] == "unknown"]
    assert sorted(map(str, unknown)) == ["", "42", "A text no template knows"]
    by_message = {e["raw"]["message"]: e for e in events}
    assert by_message["Object created"]["action"] == "license.activation_key_created"
    assert by_message[42]["message"] == "42"
    for event in events:
        actor = event["raw"].get("actor")
        if event["action"] == "user.login_failed":
            assert event["actor"]["name"] == "user with spaces" and event["actor"]["type"] == "user"
        elif actor in (None, ""):
            assert event["actor"] == {**event["actor"], "name": None, "id": None, "type": "unknown"}
        elif actor == "system":
            assert event["actor"]["type"] == "system"
        else:
            assert event["actor"]["type"] == "user" and isinstance(event["actor"]["name"], str)
        if "duration" in event["raw"] and event["raw"]["duration"] is not None:
            assert event["details"]["duration"] == event["raw"]["duration"]
        else:
            assert "duration" not in event["details"]


def test_an_empty_attempted_username_names_nobody() -> None:
    raw = {"id": 9, "created_at": "2026-01-20T10:15:30+03:00", "actor": "system", "message": "Failed login attempt "}
    event = normalize_entry("cs", "acme", raw, "codescoring:acme:9", datetime(2026, 1, 21, tzinfo=UTC))
    assert event["action"] == "user.login_failed" and event["outcome"] == "failure"
    assert event["actor"]["name"] is None and event["actor"]["type"] == "unknown"
    assert event["details"] == {"username": "", "recorded_actor": "system"}


def test_an_ldap_failure_naming_no_server_is_still_an_ldap_failure() -> None:
    """``{', '.join(ldap_servers_mapping_failed_for)}`` of an empty list renders nothing; the
    text was then no template's and the failure was forwarded as ``unknown``."""
    template, fields = parse_message(
        "Sync done. While processing, failed to apply some of rules related to following LDAP servers: . "
        "Check server logs."
    )
    assert template is not None and template.action == "ldap.group_mapping_failed"
    assert fields == {"summary": "Sync done.", "ldap_servers": []}


async def test_differently_named_actor_message_and_duration_fields_are_a_setting(codescoring: EmulatorProcess) -> None:
    """The documented columns are Actor, Message and Duration; the names the API gives them are
    inferred like the time's, so a server naming them otherwise is a config change, not every
    entry quarantined for "no message"."""
    codescoring.control("POST", "config", {"field_names": {"actor": "username", "message": "text", "duration": "took"}})
    settings = source(codescoring.url, actor_field="username", message_field="text", duration_field="took")
    src = CodescoringSource("cs", CodescoringConfig.model_validate(settings))
    observed = datetime.now(UTC)
    try:
        entries = [entry async for page in src.pages("acme", None) for entry in page.entries]
    finally:
        await src.close()
    by_id = {f"codescoring:acme:{e['id']}": e for e in codescoring.entries()}
    assert len(entries) == len(by_id) == 60
    for raw, key in entries:
        event = src.normalize("acme", raw, key, observed)
        NormalizedEvent.model_validate(event)
        served = by_id[key]
        recorded = event["details"].get("recorded_actor", event["actor"]["name"])  # a failed login names the user
        assert event["message"] == served["message"] and recorded == served["actor"]
        assert event["details"].get("duration") == served.get("duration")
        assert (event["action"] == "unknown") == (parse_message(served["message"])[0] is None)
