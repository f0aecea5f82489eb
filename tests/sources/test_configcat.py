"""ConfigCat end to end: the emulator over real HTTP, the real CLI in its own process, the file sink;
plus the golden mapping (fixture raw entries -> exact normalized events)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from forwarder.emulators.configcat import DEFAULT_ORG_ID, DEFAULT_PASSWORD, DEFAULT_USER
from forwarder.event import NormalizedEvent, format_ms, parse_time
from forwarder.sources.codestax import CodeStaxConfig
from forwarder.sources.configcat import ConfigCatConfig, ConfigCatSource, normalize_entry, reset_delay
from forwarder.sources.gaps import gap_event
from tests.support.daemon import cli, read_ndjson
from tests.support.daemon import file_sink_config as config
from tests.support.daemon import once_ok as once
from tests.support.emulators import EmulatorProcess, running

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configcat"
ORG = DEFAULT_ORG_ID


@pytest.fixture
def configcat() -> Iterator[EmulatorProcess]:
    emulator = running("configcat", entries=45, options={"span_s": 3 * 86400})
    yield emulator
    emulator.stop()


def source(url: str, **overrides: Any) -> dict[str, Any]:
    cfg = {
        "type": "configcat",
        "base_url": url,
        "username": DEFAULT_USER,
        "password": DEFAULT_PASSWORD,
        "organizations": [ORG],
        "lag_s": 0,
        "overlap_s": 600,
        "page_size": 10,
        "max_attempts": 4,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    cfg.update(overrides)
    return cfg


def expected(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(f"configcat:{e['auditLogId']}" for e in emulator.entries())


def test_first_run_collects_all_once_then_incremental_with_boundary_ties(
    tmp_path: Path, configcat: EmulatorProcess
) -> None:
    cfg = config(tmp_path, {"cc": source(configcat.url)})
    once(cfg)
    events = read_ndjson(tmp_path / "out")
    assert Counter(e["id"] for e in events) == expected(configcat)
    assert len(events) == 45
    assert all(NormalizedEvent.model_validate(e) for e in events)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)  # oldest first
    once(cfg)
    assert len(read_ndjson(tmp_path / "out")) == 45
    tie = format_ms(int(time.time() * 1000) - 2000)
    base = {
        "auditLogDateTime": tie,
        "auditLogTypeEnum": "settingValueChanged",
        "userEmail": "tie@example.com",
        "userName": "Tie",
        "truncated": False,
        "modelVersion": 6,
        "_org": ORG,
    }
    configcat.control("POST", "entries", [{**base, "actionTarget": "a"}, {**base, "actionTarget": "b"}])
    once(cfg)
    # late arrivals carrying the very same millisecond, one of them a new id at the boundary
    configcat.control("POST", "entries", [{**base, "actionTarget": "c"}, {**base, "actionTarget": "d"}])
    configcat.control("POST", "entries", {"generate": 3, "span_s": 1})
    once(cfg)
    events = read_ndjson(tmp_path / "out")
    assert Counter(e["id"] for e in events) == expected(configcat)
    assert max(Counter(e["id"] for e in events).values()) == 1
    assert sorted(e["target"]["name"] for e in events if e["actor"]["email"] == "tie@example.com") == list("abcd")


def test_has_next_lies_legacy_shape_and_v1(tmp_path: Path, configcat: EmulatorProcess) -> None:
    configcat.control("POST", "config", {"has_next_lies": True, "legacy_shape": True})
    cfg = config(tmp_path, {"v2": source(configcat.url), "v1": source(configcat.url, api_version="v1")})
    once(cfg)
    events = read_ndjson(tmp_path / "out")
    by_source = {name: Counter(e["id"] for e in events if e["source"] == name) for name in ("v1", "v2")}
    assert by_source["v2"] == expected(configcat) == by_source["v1"]
    assert all("modelVersion" not in e["raw"] and "changeSetId" in e["raw"] for e in events)
    assert any("changeSetId" in e["details"] for e in events)
    requests = configcat.control("GET", "requests")
    v2_pages = [r[2] for r in requests if "/v2/" in r[2]]
    # two windows: an empty one (1 request), then 45 entries in 5 pages; reading on until an
    # empty page would take a 7th request, trusting hasNext alone would never stop
    assert len(v2_pages) == 6, "paging must stop at totalPages even though hasNext says true"
    assert not any("/v1/" in r[2] and "pageNumber" in r[2] for r in requests)


def test_429_storm_honours_retry_after(tmp_path: Path, configcat: EmulatorProcess) -> None:
    configcat.control("POST", "faults", {"status": 429, "count": 2, "retry_after": "1", "path_contains": "/auditlogs"})
    cfg = config(tmp_path, {"cc": source(configcat.url)})
    started = time.monotonic()
    stderr = once(cfg)
    assert time.monotonic() - started >= 2.0
    assert stderr.count("source request retried") == 2
    assert Counter(e["id"] for e in read_ndjson(tmp_path / "out")) == expected(configcat)


def test_rate_limit_headers_throttle_before_a_429(tmp_path: Path, configcat: EmulatorProcess) -> None:
    configcat.control("POST", "config", {"bucket_size": 3, "refill_per_s": 4.0, "reset_format": "epoch"})
    cfg = config(tmp_path, {"cc": source(configcat.url, max_attempts=1)})  # a 429 would fail the run
    stderr = once(cfg)
    assert "throttling" in stderr
    assert not any(r[3] == 429 for r in configcat.control("GET", "requests"))
    assert Counter(e["id"] for e in read_ndjson(tmp_path / "out")) == expected(configcat)


def test_auth_failure_is_isolated_and_secret_free(tmp_path: Path, configcat: EmulatorProcess) -> None:
    bad = source(configcat.url, password="wrong-password-value", max_attempts=1)
    cfg = config(tmp_path, {"good": source(configcat.url), "bad": bad})
    result = cli(cfg, "once")
    assert result.returncode == 1
    assert "ConfigCat answered 401" in result.stderr and "check the source's token" in result.stderr
    assert "wrong-password-value" not in result.stderr and DEFAULT_PASSWORD not in result.stderr
    events = read_ndjson(tmp_path / "out")
    assert {e["source"] for e in events} == {"good"} and len(events) == 45


def test_cursor_older_than_retention_emits_one_gap_event(tmp_path: Path, configcat: EmulatorProcess) -> None:
    cfg = config(tmp_path, {"cc": source(configcat.url)})
    once(cfg)
    assert not [e for e in read_ndjson(tmp_path / "out") if e["action"] == "forwarder.gap"]
    time.sleep(1.2)
    cfg = config(tmp_path, {"cc": source(configcat.url, retention_days=1 / 86400, overlap_s=0)})
    stderr = once(cfg)
    assert "cursor older than the vendor's retention" in stderr
    gaps = [e for e in read_ndjson(tmp_path / "out") if e["action"] == "forwarder.gap"]
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap["vendor"], gap["category"], gap["activity"], gap["outcome"]) == (
        "configcat",
        "forwarder",
        "other",
        "unknown",
    )
    assert gap["organization"] == ORG and gap["details"]["from"] < gap["details"]["to"]
    NormalizedEvent.model_validate(gap)

    def ms(text: str) -> int:
        return int(parse_time(text).timestamp() * 1000)

    details = gap["details"]
    again = gap_event(
        vendor="configcat", source="cc", organization=ORG, from_ms=ms(details["from"]), to_ms=ms(details["to"])
    )
    assert again["id"] == gap["id"], "a re-journaled gap must keep its id"


def test_product_endpoint_and_filters(tmp_path: Path, configcat: EmulatorProcess) -> None:
    entry = {
        "auditLogDateTime": format_ms(int(time.time() * 1000) - 5000),
        "auditLogTypeEnum": "segmentCreated",
        "userEmail": "p@example.com",
        "userName": "P",
        "_org": ORG,
    }
    product = "7d0a1b2c-3d4e-4f50-8a9b-0c1d2e3f4a5b"
    configcat.control("POST", "entries", [{**entry, "_productId": product, "actionTarget": "in-product"}])
    cfg = config(
        tmp_path,
        {
            "prod": source(configcat.url, organizations=[], product_ids=[product]),
            "typed": source(configcat.url, audit_log_type="segmentCreated"),
        },
    )
    once(cfg)
    events = read_ndjson(tmp_path / "out")
    prod = [e for e in events if e["source"] == "prod"]
    assert [(e["organization"], e["target"]["name"]) for e in prod] == [(f"product:{product}", "in-product")]
    typed = [e for e in events if e["source"] == "typed"]
    want = [e for e in configcat.entries() if e["auditLogTypeEnum"] == "segmentCreated"]
    assert len(typed) == len(want) >= 1 and {e["action"] for e in typed} == {"segmentCreated"}


def test_golden_mapping() -> None:
    entries = json.loads((FIXTURES / "entries.json").read_text())
    want = json.loads((FIXTURES / "normalized.json").read_text())
    observed = datetime(2026, 7, 15, tzinfo=UTC)
    got = [normalize_entry("configcat", ORG, e, f"configcat:{e['auditLogId']}", observed) for e in entries]
    assert got == want
    for event in got:
        NormalizedEvent.model_validate(event)


def test_unknown_or_missing_type_never_fails() -> None:
    observed = datetime(2026, 7, 15, tzinfo=UTC)
    event = normalize_entry("cc", ORG, {"auditLogId": 1, "auditLogDateTime": "2026-01-01T00:00:00Z"}, "k", observed)
    assert (event["action"], event["category"], event["activity"]) == ("unknown", "unknown", "other")
    with pytest.raises(ValueError):
        normalize_entry("cc", ORG, {"auditLogId": 1, "auditLogDateTime": "yesterday"}, "k", observed)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1700000010", 10.0),
        ("1700000010000", 10.0),
        ("7", 7.0),
        ("2023-11-14T22:13:30Z", 10.0),
        (formatdate(1_700_000_010, usegmt=True), 10.0),
        ("soon", None),
        (None, None),
    ],
)
def test_reset_header_formats(header: str | None, expected: float | None) -> None:
    got = reset_delay(header, 1_700_000_000.0)
    assert got == (pytest.approx(expected, abs=0.01) if expected is not None else None)


@pytest.mark.parametrize("retention_days", [35, 750])
async def test_an_enterprise_plan_keeps_750_days_once_retention_days_says_so(retention_days: int) -> None:
    """After 41 days of downtime an Enterprise tenant still serves all 40 days; the default 35
    skips the oldest 5 and reports them lost (the documented gap)."""
    now = int(time.time() * 1000)
    day = 86_400_000
    options = {"span_s": 40 * 86400, "end_ms": now - 3_600_000, "config": {"retention_days": 750}}
    emulator = running("configcat", entries=40, options=options)
    settings = source(emulator.url, **({} if retention_days == 35 else {"retention_days": retention_days}))
    src = ConfigCatSource("cc", ConfigCatConfig.model_validate(settings))
    try:
        entries = emulator.entries()
        pages = [p async for p in src.pages(ORG, {"watermark_ms": now - 41 * day, "recent": {}})]
    finally:
        await src.close()
        emulator.stop()
    kept = {
        f"configcat:{e['auditLogId']}"
        for e in entries
        if parse_time(e["auditLogDateTime"]).timestamp() * 1000 >= now - retention_days * day
    }
    gaps = [e for p in pages for e in p.extra_events]
    assert {key for p in pages for _, key in p.entries} == kept
    if retention_days == 750:
        assert len(kept) == 40 and gaps == []
    else:
        assert len(kept) < 40 and [g["action"] for g in gaps] == ["forwarder.gap"]


def test_the_reference_says_when_to_raise_retention_days() -> None:
    from forwarder.config_reference import render

    for model in (CodeStaxConfig, ConfigCatConfig):
        meaning = model.model_fields["retention_days"].description or ""
        assert "forwarder.gap" in meaning and "must raise this" in meaning, model.__name__
        assert meaning.replace("|", "\\|") in render()
