"""The Codacy emulator over real HTTP, its answers checked against Codacy's OpenAPI document."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from forwarder.event import parse_time
from tests.support.emulators import EmulatorProcess, running
from tests.support.openapi import Start, Validate

pytestmark = pytest.mark.integration

TOKEN = {"api-token": "codacy-test-token"}
DAY_MS = 86_400_000


def path(org: str = "gh/acme") -> str:
    return f"/api/v3/organizations/{org}/audit"


def client(emulator: EmulatorProcess, headers: dict[str, str] | None = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, headers=headers, timeout=10)


def ms(item: dict[str, Any]) -> int:
    return int(parse_time(item["timestamp"]).timestamp() * 1000)


def assert_api_error(response: httpx.Response, status: int) -> None:
    """The ``ApiError`` every Codacy error body extends: a message and a list of actions."""
    assert response.status_code == status
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["actions"], list)


@pytest.fixture(scope="module")
def shared() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", 40, {"orgs": ["gh/acme", "gl/globex"], "span_s": 86400})
    yield emulator
    emulator.stop()


def test_api_token_is_required(shared: EmulatorProcess, validate_codacy: Validate) -> None:
    with client(shared, None) as anonymous:
        missing = anonymous.get(path())
    with client(shared, {"api-token": "wrong"}) as wrong:
        invalid = wrong.get(path())
    with client(shared) as http:
        ok = http.get(path())
    for response in (missing, invalid):
        assert response.status_code == 401
        # the Unauthorized schema requires error and code; without a token the request breaks the
        # document's security requirement, a wrong one only the server can tell
        validate_codacy(response, request_valid=response is invalid)
    assert ok.status_code == 200
    validate_codacy(ok)


def test_errors_for_unknown_forbidden_and_malformed(start: Start) -> None:
    emulator = start("codacy", 3, {"orgs": ["gh/acme"], "config": {"forbidden_orgs": ["acme"]}})
    with client(emulator) as http:
        assert_api_error(http.get(path("gh/nobody")), 404)
        assert_api_error(http.get(path("xx/acme")), 404)
        assert_api_error(http.get(path()), 403)
        emulator.control("POST", "config", {"forbidden_orgs": []})
        assert_api_error(http.get(path(), params={"from": "yesterday"}), 400)
        assert http.get(path()).status_code == 200


def test_organizations_are_separate_and_newest_first(shared: EmulatorProcess, validate_codacy: Validate) -> None:
    with client(shared) as http:
        acme = http.get(path())
        globex = http.get(path("gl/globex"))
    for response in (acme, globex):
        validate_codacy(response)
        items = response.json()
        assert len(items) == 40
        assert [ms(i) for i in items] == sorted((ms(i) for i in items), reverse=True)
    entries = shared.entries()
    assert {e["_org"] for e in entries} == {"gh/acme", "gl/globex"}
    assert sorted(map(ms, acme.json())) == sorted(ms(e) for e in entries if e["_org"] == "gh/acme")


def test_from_and_to_are_inclusive_epoch_ms(shared: EmulatorProcess, validate_codacy: Validate) -> None:
    items = sorted((e for e in shared.entries() if e["_org"] == "gh/acme"), key=ms)
    lo, hi = ms(items[10]), ms(items[19])
    with client(shared) as http:
        window = http.get(path(), params={"from": lo, "to": hi})
        exact = http.get(path(), params={"from": lo, "to": lo})
    validate_codacy(window)
    assert sorted(map(ms, window.json())) == [ms(i) for i in items[10:20]]
    assert [ms(i) for i in exact.json()] == [lo]


def test_one_year_retention(start: Start, validate_codacy: Validate) -> None:
    emulator = start("codacy", 41, {"span_s": 400 * 86400})
    now_ms = int(time.time() * 1000)
    with client(emulator) as http:
        response = http.get(path(), params={"from": 0})
    validate_codacy(response)
    expected = [ms(e) for e in emulator.entries() if ms(e) >= now_ms - 365 * DAY_MS]
    assert 0 < len(response.json()) < 41
    assert sorted(map(ms, response.json())) == sorted(expected)


def test_throttling_answers_503_without_retry_after(start: Start) -> None:
    emulator = start("codacy", 1, {"config": {"requests_per_window": 2}})
    with client(emulator) as http:
        answers = [http.get(path()) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 503]
    assert "Retry-After" not in answers[2].headers


def test_optional_envelope_follows_the_cursor(start: Start) -> None:
    emulator = start("codacy", 10, {"config": {"envelope": True, "page_limit": 4}})
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    with client(emulator) as http:
        while True:
            pages.append(http.get(path(), params={"cursor": cursor} if cursor else {}).json())
            cursor = pages[-1]["pagination"].get("cursor")
            if cursor is None:
                break
    assert [len(p["data"]) for p in pages] == [4, 4, 2]
    assert all(p["pagination"]["total"] == 10 for p in pages)
    assert len({(ms(i), i["entityId"]) for p in pages for i in p["data"]}) == 10


def test_injected_faults_then_recovery(start: Start) -> None:
    emulator = start("codacy", 2)
    emulator.control("POST", "faults", [{"status": 504, "count": 2, "body": "<html>Gateway Timeout</html>"}])
    with client(emulator) as http:
        answers = [http.get(path()) for _ in range(3)]
    assert [r.status_code for r in answers] == [504, 504, 200]
    assert answers[0].text.startswith("<html>")


def test_generation_is_deterministic_with_variable_fractions(start: Start, validate_codacy: Validate) -> None:
    end_ms = (int(time.time()) - 60) * 1000 + 120  # recent, so within retention whenever the test runs
    options = {"end_ms": end_ms, "span_s": 3600}
    first, second = start("codacy", 50, options), start("codacy", 50, options)
    assert first.entries() == second.entries()
    with client(first) as http:
        response = http.get(path(), params={"from": end_ms - 3_600_000, "to": end_ms})
    validate_codacy(response)
    assert len(response.json()) == 50
    assert response.json()[0]["timestamp"].endswith(".12Z")  # trailing zero dropped
