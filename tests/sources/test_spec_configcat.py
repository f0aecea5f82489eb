"""ConfigCat as its Public Management API document describes it (tests/support/spec_emulators.py,
not the project's emulator), polled by the real daemon into a file sink: every entry exactly
once across ``once``, ``run`` and a restart, paging, 429 with Retry-After, organization and
product level, the fields docs/schema.md promises, errors naming the unit and never the
password, one failing organization not stopping the others."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.config import files_per_source_config
from tests.support.daemon import cli, daemon, read_ndjson
from tests.support.spec_emulators import Bounds, ConfigCatSpec, too_many
from tests.support.waiting import wait_until

USER = "cc-user-0000"
PASSWORD = "cc-SECRET-password-0123456789"
ORG_A = "0b8a1c7e-1111-4a6b-9b8c-000000000001"
ORG_B = "0b8a1c7e-2222-4a6b-9b8c-000000000002"
ORG_C = "0b8a1c7e-3333-4a6b-9b8c-000000000003"
GHOST = "0b8a1c7e-9999-4a6b-9b8c-000000000009"
PRODUCT = "7f3e0c2a-aaaa-4b5c-8d9e-00000000000a"


@pytest.fixture(params=["inclusive", "exclusive"])
def configcat(request: pytest.FixtureRequest) -> Iterator[ConfigCatSpec]:
    bounds: Bounds = request.param
    server = ConfigCatSpec(USER, PASSWORD, bounds)
    server.start()
    yield server
    server.stop()


def stamp(moment: datetime, digits: int = 3, offset: str = "Z") -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}{'0' * 6}"[:digits]
    return text + offset


def items(base: int, now: datetime) -> list[dict[str, Any]]:
    t = now.replace(microsecond=123456)
    current = {
        "truncated": False,
        "modelVersion": 6,
        "userName": "Jane Doe",
        "where": "Product: Main / Config: Web / Environment: Production",
        "why": "ticket #42",
        "actionTarget": "isNewCheckoutEnabled",
        "details": '{"oldValue":false,"newValue":true}',
    }
    out: list[dict[str, Any]] = []
    for n in range(6):
        out.append(
            {
                **current,
                "auditLogId": base + n,
                "auditLogDateTime": stamp(t - timedelta(hours=5 * n + 1), 7),
                "auditLogTypeEnum": "settingValueChanged",
                "auditLogType": "Feature Flag value changed",
                "userEmail": f"jane{n}@example.com",
            }
        )
    out += [
        # a scheduled action: no user email, no reason; the spec's own +00:00 offset
        {
            **current,
            "auditLogId": base + 10,
            "auditLogDateTime": stamp(t - timedelta(hours=40), 3, "+00:00"),
            "auditLogTypeEnum": "changeRequestAppliedOnSchedule",
            "auditLogType": "Change request applied",
            "userEmail": None,
            "userName": "",
            "why": None,
        },
        # an id beyond 2**53, unicode, a long truncated details text
        {
            **current,
            "auditLogId": 9007199254740993 + base,
            "auditLogDateTime": stamp(t - timedelta(hours=50), 0),
            "auditLogTypeEnum": "productCreated",
            "auditLogType": "Product créé ✓",
            "userEmail": "ü@exämple.com",
            "userName": "Zoë 🚀",
            "actionTarget": "产品" * 300,
            "details": '{"a":"' + "y" * 20000,
            "truncated": True,
        },
        # the older shape (seed 004, older clients): changeSetId, no modelVersion, nulls
        {
            "auditLogId": base + 20,
            "auditLogDateTime": stamp(t - timedelta(hours=60)),
            "auditLogTypeEnum": "teamMemberInvited",
            "changeSetId": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "truncated": False,
            "auditLogType": None,
            "userEmail": "old@example.com",
            "userName": None,
            "where": None,
            "why": None,
            "actionTarget": None,
            "details": None,
        },
    ]
    return out


def source(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "configcat",
        "base_url": url,
        "username": USER,
        "password": PASSWORD,
        "organizations": [ORG_A, GHOST, ORG_B],
        "product_ids": [PRODUCT],
        "initial_lookback_days": 3,
        "window_days": 1,
        "page_size": 3,
        "lag_s": 1,
        "interval_s": 1,
        "jitter_s": 0,
        "max_attempts": 3,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.1,
        **extra,
    }


def config(tmp_path: Path, src: dict[str, Any]) -> Path:
    return files_per_source_config(tmp_path, {"configcat": src})


def utc_ms(text: str) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def check_event(event: dict[str, Any]) -> None:
    raw = event["raw"]
    assert event["id"] == f"configcat:{raw['auditLogId']}"
    assert event["time"] == utc_ms(raw["auditLogDateTime"])
    assert event["action"] == raw["auditLogTypeEnum"]
    assert event["actor"]["email"] == raw["userEmail"]
    assert event["actor"]["name"] == raw["userName"]
    assert event["actor"]["type"] == ("system" if raw["userEmail"] is None else "user")
    assert event["target"]["name"] == raw["actionTarget"]
    assert event["message"] == raw["auditLogType"]
    assert event["outcome"] == "success"


def key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def load(configcat: ConfigCatSpec) -> dict[str, list[dict[str, Any]]]:
    now = datetime.now(UTC)
    served = {ORG_A: items(1000, now), ORG_B: items(2000, now), f"product:{PRODUCT}": items(3000, now)}
    configcat.add(ORG_A, *served[ORG_A])
    configcat.add(ORG_B, *served[ORG_B])
    configcat.add(ORG_C, *served[f"product:{PRODUCT}"], product=PRODUCT)
    return served


def test_every_entry_once_fields_paging_errors(configcat: ConfigCatSpec, tmp_path: Path) -> None:
    served = load(configcat)
    configcat.faults[ORG_B] = [too_many("1")]
    configcat.plant_at_to = True
    cfg = config(tmp_path, source(configcat.url))

    first = cli(cfg, "once")
    assert first.returncode == 1, first.stderr
    text = first.stderr + first.stdout
    assert GHOST in text and "404" in text
    assert PASSWORD not in text
    events = read_ndjson(tmp_path / "out")
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    planted = {f"configcat:{p['auditLogId']}" for p in configcat.planted}
    assert planted
    for unit, entries in served.items():
        mine = [e for e in events if e["organization"] == unit and e["id"] not in planted]
        assert sorted(key(e["raw"]) for e in mine) == sorted(key(i) for i in entries), unit
        for event in mine:
            check_event(event)
    assert planted <= set(counts), sorted(planted - set(counts))
    retried = [r for r in configcat.requests if ORG_B in r.path]
    assert retried[0].status == 429 and any(r.status == 200 for r in retried)
    for r in configcat.requests:
        if r.status == 200:
            assert r.path.startswith("/v2/")
            assert int(r.query["pageSize"][-1]) <= 100

    time.sleep(1.2)
    fresh = {
        **served[ORG_A][0],
        "auditLogId": 1999,
        "auditLogDateTime": stamp(datetime.now(UTC) - timedelta(seconds=1)),
    }
    configcat.add(ORG_A, fresh)
    time.sleep(1.2)
    second = cli(cfg, "once")
    assert second.returncode == 1, second.stderr
    counts = Counter(e["id"] for e in read_ndjson(tmp_path / "out"))
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    assert "configcat:1999" in counts


def test_v1_windows_of_thirty_days(configcat: ConfigCatSpec, tmp_path: Path) -> None:
    """The deprecated v1 endpoint refuses more than 30 days between fromUtcDateTime and
    toUtcDateTime: windows of window_days 30 must stay within it, whatever the bounds' reading."""
    served = load(configcat)
    src = source(
        configcat.url, organizations=[ORG_A], product_ids=[], api_version="v1", window_days=30, initial_lookback_days=35
    )
    result = cli(config(tmp_path, src), "once")
    assert result.returncode == 0, result.stderr
    assert all(r.status == 200 and r.path.startswith("/v1/") for r in configcat.requests)
    assert len(configcat.requests) >= 2  # 35 days: more than one window
    assert sorted(key(e["raw"]) for e in read_ndjson(tmp_path / "out")) == sorted(key(i) for i in served[ORG_A])


def test_wrong_password_names_unit_not_password(configcat: ConfigCatSpec, tmp_path: Path) -> None:
    load(configcat)
    src = source(configcat.url, organizations=[ORG_A], product_ids=[])
    src["password"] = "wrong-" + PASSWORD
    result = cli(config(tmp_path, src), "once")
    assert result.returncode == 1
    text = result.stderr + result.stdout
    assert ORG_A in text and "401" in text
    assert PASSWORD not in text


def test_audit_log_type_filter_sent(configcat: ConfigCatSpec, tmp_path: Path) -> None:
    load(configcat)
    src = source(configcat.url, organizations=[ORG_A], product_ids=[], audit_log_type="settingValueChanged")
    assert cli(config(tmp_path, src), "once").returncode == 0
    events = read_ndjson(tmp_path / "out")
    assert len(events) == 6 and {e["action"] for e in events} == {"settingValueChanged"}
    assert all(r.query.get("auditLogType") == ["settingValueChanged"] for r in configcat.requests)


def test_run_adds_while_running_and_restart(configcat: ConfigCatSpec, tmp_path: Path) -> None:
    served = load(configcat)
    cfg = config(tmp_path, source(configcat.url, organizations=[ORG_A, ORG_B]))
    expected = sum(len(v) for v in served.values())

    def delivered() -> list[dict[str, Any]]:
        return read_ndjson(tmp_path / "out") if (tmp_path / "out").exists() else []

    def new(n: int) -> dict[str, Any]:
        return {
            **served[ORG_A][0],
            "auditLogId": 10_000 + n,
            "auditLogDateTime": stamp(datetime.now(UTC) - timedelta(milliseconds=10)),
        }

    with daemon(cfg) as proc:
        wait_until("first poll delivered", lambda: len(delivered()) >= expected, timeout=60, detail=proc.log)
        for n in range(5):
            configcat.add(ORG_A, new(n))
            time.sleep(0.2)
        expected += 5
        wait_until("live entries delivered", lambda: len(delivered()) >= expected, timeout=60, detail=proc.log)
        assert proc.stop() == 0
    for n in range(5, 8):
        configcat.add(ORG_B, new(n))
    expected += 3
    time.sleep(1.2)
    with daemon(cfg) as proc:
        wait_until("offline entries delivered", lambda: len(delivered()) >= expected, timeout=60, detail=proc.log)
        time.sleep(2.5)
        assert proc.stop() == 0
        assert "Traceback" not in proc.log()
    counts = Counter(e["id"] for e in delivered())
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    assert len(counts) == expected
