"""Rate limits read from the answers (forwarder/sources/ratelimit.py, in HttpFetcher): against
the preset emulators over loopback, each stating its limit as its vendor documents it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from forwarder.sources import SOURCES
from forwarder.sources.http import SourceError
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig
from forwarder.sources.ratelimit import RateBudget, RateLimitSettings, reset_delay, shared_budget
from tests.presets.support import expected_keys, preset_source
from tests.support.emulators import EmulatorProcess, running


def config(name: str, data: dict[str, Any]) -> HttpJsonConfig:
    return cast(HttpJsonConfig, SOURCES[name][0].model_validate(data))


async def drain(*sources: HttpJsonSource) -> list[str]:
    """Every organization of every source polled at once, as the scheduler may."""

    async def one(src: HttpJsonSource, org: str) -> list[str]:
        return [key for page in [p async for p in src.pages(org, None)] for _, key in page.entries]

    try:
        results = await asyncio.gather(*(one(src, org) for src in sources for org in src.organizations()))
    finally:
        for src in sources:
            await src.close()
    return [key for keys in results for key in keys]


def statuses(emulator: EmulatorProcess) -> list[int]:
    return [int(row[3]) for row in emulator.control("GET", "requests")]


# --- reading the headers ---------------------------------------------------------------------
def test_reset_header_formats() -> None:
    now = 1_800_000_000.0
    assert reset_delay("30", "seconds", now) == 30
    assert reset_delay(str(int(now) + 45), "epoch_s", now) == 45
    assert reset_delay(str(int(now * 1000) + 1500), "epoch_ms", now) == pytest.approx(1.5)
    date = format_datetime(datetime.fromtimestamp(now + 90, tz=UTC), usegmt=True)
    assert reset_delay(date, "http_date", now) == pytest.approx(90)
    assert reset_delay(date, "auto", now) == pytest.approx(90)
    assert reset_delay(str(int(now) + 10), "auto", now) == 10  # a big number is an epoch
    assert reset_delay("12", "auto", now) == 12  # a small one is seconds
    for garbage in ("", "soon", "nan", "1e400x"):
        assert reset_delay(garbage, "auto", now) is None
    assert reset_delay(str(int(now) - 50), "epoch_s", now) == 0  # a reset in the past: go now


def test_one_budget_per_credential() -> None:
    base = {"type": "okta", "organizations": ["a.okta.com"], "auth": {"token": "one"}}
    first, second = config("okta", base), config("okta", {**base, "organizations": ["b.okta.com"]})
    other = config("okta", {**base, "auth": {"token": "two"}})
    assert shared_budget(first) is shared_budget(second)  # same token and host: the vendor counts them together
    assert shared_budget(first) is not shared_budget(other)
    assert shared_budget(config("okta", {**base, "rate_limit": {"enabled": False}})) is None


async def test_requests_in_flight_count_against_what_the_last_answer_said() -> None:
    budget = RateBudget(RateLimitSettings(early_limit=1, max_wait_s=0))
    await budget.acquire("v", "o")
    budget.observe(httpx.Headers({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(int(time.time()) + 600)}))
    await budget.acquire("v", "o")
    await budget.acquire("v", "o")  # two in flight: 3 - 2 = 1 left, the early limit
    with pytest.raises(SourceError, match="max_wait_s"):
        await budget.acquire("v", "o")
    await budget.acquire("v", "o")  # forgotten once refused: the next poll asks and learns afresh


# --- slowing down before running out ----------------------------------------------------------
def test_a_backfill_waits_for_the_reset_instead_of_provoking_429s(tmp_path: Path) -> None:
    """Okta: 4 requests per 2-second window, stated in X-Rate-Limit-* (epoch seconds). The
    backfill needs more than ten requests; it must get everything without one 429."""
    okta = running("okta", entries=30, options={"span_s": 86400, "config": {"rate_limit": 4, "rate_window_s": 2}})
    try:
        cfg = config(
            "okta",
            preset_source(
                "okta", okta.url, tmp_path, params={"limit": 3}, slice_hours=24, rate_limit={"early_limit": 1}
            ),
        )
        keys = asyncio.run(drain(HttpJsonSource("okta", cfg)))
        assert set(keys) == expected_keys("okta", okta.entries())
        seen = statuses(okta)
        assert len(seen) > 10 and 429 not in seen
    finally:
        okta.stop()


def test_organizations_sharing_a_credential_share_one_budget(tmp_path: Path) -> None:
    """Two sources and two organizations with the same token, polled at once against one
    limit: without one shared budget each would spend the whole limit on its own."""
    orgs = ["acme", "globex"]
    okta = running(
        "okta", entries=15, options={"orgs": orgs, "span_s": 86400, "config": {"rate_limit": 5, "rate_window_s": 2}}
    )
    try:
        settings = {"params": {"limit": 4}, "rate_limit": {"early_limit": 1}, "initial_lookback_days": 1.5}
        first = config(
            "okta", preset_source("okta", okta.url, tmp_path, organizations=orgs, slice_hours=24, **settings)
        )
        second = config(
            "okta", preset_source("okta", okta.url, tmp_path, organizations=orgs, **settings, slice_hours=12)
        )
        keys = asyncio.run(drain(HttpJsonSource("first", first), HttpJsonSource("second", second)))
        assert set(keys) == expected_keys("okta", okta.entries())
        assert 429 not in statuses(okta)
    finally:
        okta.stop()


# --- 403 that means "slow down" ---------------------------------------------------------------
def test_github_403_with_zero_remaining_is_a_rate_limit_not_a_refusal(tmp_path: Path) -> None:
    github = running("github", entries=12, options={"span_s": 86400})
    try:
        reset = str(int(time.time()) + 1)
        github.control(
            "POST",
            "faults",
            {
                "status": 403,
                "headers": {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
                "body": '{"message": "API rate limit exceeded"}',
            },
        )
        cfg = config("github", preset_source("github", github.url, tmp_path))
        keys = asyncio.run(drain(HttpJsonSource("github", cfg)))
        assert set(keys) == expected_keys("github", github.entries())
        assert statuses(github)[0] == 403
    finally:
        github.stop()


def test_github_secondary_limit_403_and_429_with_retry_after_are_waited_out(tmp_path: Path) -> None:
    github = running("github", entries=12, options={"span_s": 86400})
    try:
        github.control(
            "POST",
            "faults",
            [
                {"status": 403, "retry_after": "1", "body": '{"message": "You have exceeded a secondary rate limit"}'},
                {"status": 429, "retry_after": "1", "body": '{"message": "You have exceeded a secondary rate limit"}'},
            ],
        )
        cfg = config("github", preset_source("github", github.url, tmp_path))
        keys = asyncio.run(drain(HttpJsonSource("github", cfg)))
        assert set(keys) == expected_keys("github", github.entries())
        assert statuses(github)[:2] == [403, 429]
    finally:
        github.stop()


def test_github_secondary_limit_without_retry_after_waits_a_minute_not_for_the_primary_reset(
    tmp_path: Path,
) -> None:
    """GitHub: a secondary limit answers 403 (or 429) "You have exceeded a secondary rate limit",
    possibly without retry-after; with x-ratelimit-remaining above 0, "wait for at least one
    minute" (docs.github.com, Rate limits for the REST API, "Exceeding the rate limit"). It was
    taken for a missing permission and failed the poll. The preset's minute is shortened here."""
    github = running("github", entries=12, options={"span_s": 86400})
    try:
        far_reset = str(int(time.time()) + 3000)
        github.control(
            "POST",
            "faults",
            {
                "status": 403,
                "headers": {"x-ratelimit-remaining": "4000", "x-ratelimit-reset": far_reset},
                "body": '{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before '
                'you try again."}',
            },
        )
        cfg = config("github", preset_source("github", github.url, tmp_path, rate_limit={"refusal_wait_s": 1.0}))
        keys = asyncio.run(drain(HttpJsonSource("github", cfg)))
        assert set(keys) == expected_keys("github", github.entries())
        log = github.control("GET", "requests")
        assert int(log[0][3]) == 403 and int(log[1][3]) == 200
        assert log[1][0] - log[0][0] >= 0.9  # waited refusal_wait_s, not retried at once
    finally:
        github.stop()


def test_a_refusal_waits_for_the_reset_only_when_the_count_is_spent() -> None:
    reset = str(int(time.time()) + 3000)
    spent = httpx.Headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    left = httpx.Headers({"X-RateLimit-Remaining": "4000", "X-RateLimit-Reset": reset})
    preset = {"type": "github", "organizations": ["o"], "auth": {"token": "t"}}
    github = RateBudget(config("github", preset).rate_limit)
    assert github.settings.refusal_wait_s == 60  # the preset: GitHub's documented minute
    assert github.refusal_wait(spent) == pytest.approx(3000, abs=5)
    assert github.refusal_wait(left) == 60
    assert github.refusal_wait(httpx.Headers()) == 60
    plain = RateBudget(RateLimitSettings())  # no refusal_wait_s: the stated reset, as before
    assert plain.refusal_wait(left) == pytest.approx(3000, abs=5)
    assert plain.refusal_wait(httpx.Headers()) is None


def test_a_403_that_is_not_a_rate_limit_still_fails_at_once(tmp_path: Path) -> None:
    github = running("github", entries=3, options={"config": {"forbidden_orgs": ["octo-org"]}})
    try:
        cfg = config("github", preset_source("github", github.url, tmp_path))
        with pytest.raises(SourceError, match="403"):
            asyncio.run(drain(HttpJsonSource("github", cfg)))
        assert statuses(github) == [403]  # not retried: a missing permission does not come back
    finally:
        github.stop()


def test_google_quota_403_named_in_the_body_is_retried(tmp_path: Path) -> None:
    """Google states no limit in headers: a 403 ``rateLimitExceeded`` is recognized by the
    preset's ``refusal_words`` and retried with backoff."""
    options = {"span_s": 86400, "config": {"rate_limit": 3, "rate_window_s": 1}}
    google = running("google_workspace", entries=10, options=options)
    try:
        cfg = config(
            "google_workspace",
            preset_source(
                "google_workspace",
                google.url,
                tmp_path,
                params={"maxResults": 4},
                slice_hours=24,
                max_attempts=30,
                backoff_initial_s=0.3,
                backoff_max_s=1.0,
            ),
        )
        keys = asyncio.run(drain(HttpJsonSource("google_workspace", cfg)))
        assert set(keys) == expected_keys("google_workspace", google.entries())
        assert 403 in statuses(google)
    finally:
        google.stop()


def test_every_source_reads_rate_limits_through_the_shared_layer() -> None:
    """Every registered source's fetcher gets its credential's budget (``HttpFetcher.for_source``),
    the dedicated ones as well as http_json and the presets."""
    from tests.contract.sources import case_of

    url = "http://127.0.0.1:9"
    for source_type in sorted(SOURCES):
        case = case_of(source_type)
        assert case is not None, source_type
        data = case.config(url)
        model, factory = SOURCES[data["type"]]
        cfg = model.model_validate(data)
        src = factory(data["type"], cfg)
        try:
            fetcher = src.fetcher  # type: ignore[attr-defined]
            assert fetcher.rate_limit is not None and fetcher.rate_limit is shared_budget(cfg), data["type"]
        finally:
            asyncio.run(src.close())
