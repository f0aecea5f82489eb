"""The CodeStax emulator over real HTTP: API keys, skip/limit with FastAPI errors, filters, budget."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from forwarder.emulators.codestax import DEFAULT_API_KEY, api_key_for
from forwarder.event import parse_time
from tests.support.emulators import EmulatorProcess, running
from tests.support.openapi import Start

pytestmark = pytest.mark.integration

PATH = "/api/audit-logs"
DAY = 86400
CATEGORIES = {"auth", "repositories", "scans", "findings", "team", "settings", "integrations"}


def client(emulator: EmulatorProcess, key: str | None = DEFAULT_API_KEY) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, headers={"X-API-Key": key} if key else {}, timeout=10)


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [i["id"] for i in items]


def newest_first(items: list[dict[str, Any]]) -> bool:
    keys = [(parse_time(i["timestamp"]), i["id"]) for i in items]
    return keys == sorted(keys, reverse=True)


@pytest.fixture(scope="module")
def shared() -> Iterator[EmulatorProcess]:
    emulator = running("codestax", 60, {"orgs": ["default", "globex"], "span_s": 10 * DAY})
    yield emulator
    emulator.stop()


def test_api_key_selects_the_organization(shared: EmulatorProcess) -> None:
    with client(shared, None) as anonymous:
        missing = anonymous.get(PATH)
    with client(shared, "ch_" + "f" * 64) as wrong:
        invalid = wrong.get(PATH)
    with client(shared) as http:
        default = http.get(PATH)
    with client(shared, api_key_for("globex")) as http:
        globex = http.get(PATH)
    assert missing.status_code == invalid.status_code == 401
    assert missing.json() == invalid.json() == {"detail": "Not authenticated"}
    assert re.fullmatch(r"ch_[0-9a-f]{64}", api_key_for("globex"))
    entries = shared.entries()
    assert sorted(ids(default.json())) == sorted(e["id"] for e in entries if e["_org"] == "default")
    assert sorted(ids(globex.json())) == sorted(e["id"] for e in entries if e["_org"] == "globex")
    assert not set(ids(default.json())) & set(ids(globex.json()))


def test_skip_and_limit_walk_newest_first(shared: EmulatorProcess) -> None:
    pages = []
    with client(shared) as http:
        for skip in range(0, 80, 25):
            response = http.get(PATH, params={"skip": skip, "limit": 25})
            assert response.status_code == 200
            pages.append(response.json())
        default = http.get(PATH).json()
    assert [len(p) for p in pages] == [25, 25, 10, 0]
    walked = [i for p in pages for i in p]
    assert newest_first(walked)
    assert walked == default  # default limit 100 covers the 60 entries
    assert len(set(ids(walked))) == 60


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"skip": "-1"}, [(["query", "skip"], "greater_than_equal")]),
        ({"limit": "abc"}, [(["query", "limit"], "int_parsing")]),
        (
            {"skip": "1.5", "limit": "-3"},
            [(["query", "skip"], "int_parsing"), (["query", "limit"], "greater_than_equal")],
        ),
        ({"limit": "5000"}, [(["query", "limit"], "less_than_equal")]),
        ({"start_date": "not-a-date"}, [(["query", "start_date"], "datetime_parsing")]),
    ],
)
def test_invalid_parameters_get_fastapi_422(shared: EmulatorProcess, params: dict[str, str], errors: list[Any]) -> None:
    with client(shared) as http:
        response = http.get(PATH, params=params)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(d["loc"], d["type"]) for d in detail] == errors
    assert all(isinstance(d["msg"], str) and d["msg"] for d in detail)


def test_filters(shared: EmulatorProcess) -> None:
    entries = sorted((e for e in shared.entries() if e["_org"] == "default"), key=lambda e: parse_time(e["timestamp"]))
    lo, hi = entries[5], entries[20]
    email = entries[0]["user"]["email"]
    with client(shared) as http:
        window = http.get(PATH, params={"start_date": lo["timestamp"], "end_date": hi["timestamp"]}).json()
        epoch = http.get(PATH, params={"start_date": int(parse_time(lo["timestamp"]).timestamp()) + 1}).json()
        by_user = http.get(PATH, params={"user": email.upper()}).json()
        scans = http.get(PATH, params={"action": "scans"}).json()
        scan_alias = http.get(PATH, params={"action": "scan"}).json()
        triggered = http.get(PATH, params={"action": "scan.triggered"}).json()
        repo = http.get(PATH, params={"repository": "acme/web-app"}).json()
    assert ids(window) == [e["id"] for e in reversed(entries[5:21])]  # inclusive bounds
    assert ids(epoch) == [e["id"] for e in reversed(entries[6:])]
    assert sorted(ids(by_user)) == sorted(e["id"] for e in entries if e["user"]["email"] == email)
    assert scans and {i["category"] for i in scans} == {"scans"}
    assert scan_alias == scans
    assert len(scans) == sum(e["category"] == "scans" for e in entries)
    assert triggered and all(i["action"] == "scan.triggered" for i in triggered)
    assert all(i["target"] == "acme/web-app" for i in repo if not i["action"].startswith("finding."))
    expected_repo = {
        e["id"] for e in entries if e["target"] == "acme/web-app" and e["action"].startswith(("scan.", "repository."))
    }
    assert expected_repo and expected_repo <= set(ids(repo))


def test_filter_names_are_switches(start: Start) -> None:
    emulator = start("codestax", 10, {"config": {"start_param": "since", "repository_param": "repo"}})
    emulator.control("POST", "entries", [{"action": "finding.ignored", "target": "FND-1", "_repository": "acme/x"}])
    newest = max(parse_time(e["timestamp"]) for e in emulator.entries() if e["target"] != "FND-1")
    with client(emulator) as http:
        since = http.get(PATH, params={"since": newest.isoformat()}).json()
        old_name = http.get(PATH, params={"start_date": newest.isoformat()}).json()
        by_repo = http.get(PATH, params={"repo": "acme/x"}).json()
    assert len(since) == 2  # the newest generated entry and the one posted just now
    assert len(old_name) == 11
    assert [i["target"] for i in by_repo] == ["FND-1"]


def test_ninety_day_retention(start: Start) -> None:
    emulator = start("codestax", 121, {"span_s": 120 * DAY})
    entries = emulator.entries()

    def newer_than(days: int) -> list[int]:
        cut = datetime.now(UTC) - timedelta(days=days)
        return sorted(e["id"] for e in entries if parse_time(e["timestamp"]) >= cut)

    with client(emulator) as http:
        default = http.get(PATH, params={"limit": 1000, "start_date": "2000-01-01T00:00:00Z"}).json()
        emulator.control("POST", "config", {"retention_days": 30})
        shorter = http.get(PATH, params={"limit": 1000}).json()
    assert sorted(ids(default)) == newer_than(90)
    assert sorted(ids(shorter)) == newer_than(30)
    assert len(shorter) < len(default) < 121


def test_hourly_budget_per_key(start: Start) -> None:
    emulator = start("codestax", 2, {"orgs": ["default", "globex"], "config": {"hourly_budget": 3}})
    with client(emulator) as http:
        answers = [http.get(PATH) for _ in range(4)]
        emulator.control("POST", "config", {"retry_after": 120})
        with_header = http.get(PATH)
    with client(emulator, api_key_for("globex")) as other:
        other_key = other.get(PATH)
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[3].json() == {"detail": "Rate limit exceeded"}
    assert "Retry-After" not in answers[3].headers
    assert with_header.status_code == 429 and with_header.headers["Retry-After"] == "120"
    assert other_key.status_code == 200


def test_budget_window_resets(start: Start) -> None:
    emulator = start("codestax", 1, {"config": {"hourly_budget": 1, "budget_window_s": 0.3}})
    with client(emulator) as http:
        first, second = http.get(PATH), http.get(PATH)
        time.sleep(0.4)
        third = http.get(PATH)
    assert [first.status_code, second.status_code, third.status_code] == [200, 429, 200]


def test_role_path_and_fault_switches(start: Start) -> None:
    emulator = start("codestax", 3, {"config": {"path": "/api/org/audit-logs"}})
    emulator.control("POST", "faults", [{"status": 500, "body": '{"detail":"Internal Server Error"}'}])
    with client(emulator) as http:
        fault = http.get("/api/org/audit-logs")
        served = http.get("/api/org/audit-logs")
        slash = http.get("/api/org/audit-logs/", params={"limit": 2})
        old = http.get(PATH)
        emulator.control("POST", "config", {"forbidden": True})
        forbidden = http.get("/api/org/audit-logs")
    assert fault.status_code == 500
    assert served.status_code == 200 and len(served.json()) == 3
    assert slash.status_code == 307 and slash.headers["Location"] == "/api/org/audit-logs?limit=2"
    assert old.status_code == 404
    assert forbidden.status_code == 403 and "detail" in forbidden.json()


def test_generated_entries_are_realistic_and_deterministic(start: Start) -> None:
    options = {"end_ms": 1_780_000_000_250, "span_s": 5 * DAY}
    first, second = start("codestax", 300, options), start("codestax", 300, options)
    entries = first.entries()
    assert entries == second.entries()
    assert {e["category"] for e in entries} == CATEGORIES
    prefixes = {
        "auth": ("auth.", "api_key."),
        "repositories": ("repository.",),
        "scans": ("scan.",),
        "findings": ("finding.",),
        "team": ("team.",),
        "settings": ("settings.",),
        "integrations": ("integration.",),
    }
    for entry in entries:
        assert set(entry) == {"id", "timestamp", "user", "action", "category", "target", "metadata", "_org"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.250000Z", entry["timestamp"])
        assert entry["action"].startswith(prefixes[entry["category"]])
        assert set(entry["user"]) == {"name", "email"} and "@" in entry["user"]["email"]
        assert set(entry["metadata"]) == {"ip", "scan_type", "old", "new"}
        assert ipaddress.ip_address(entry["metadata"]["ip"]).is_private  # documentation ranges only
        assert (entry["metadata"]["scan_type"] is not None) == (entry["category"] == "scans")
        assert entry["target"]
    changes = [e for e in entries if e["action"] in ("team.role_changed", "finding.triaged")]
    assert changes and all(e["metadata"]["old"] != e["metadata"]["new"] for e in changes)
