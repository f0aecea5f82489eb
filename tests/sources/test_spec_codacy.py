"""Codacy as its OpenAPI document describes it (tests/support/spec_emulators.py, not the
project's emulator), polled by the real daemon into a file sink: every entry exactly once across
``once``, ``run`` and a restart, the fields docs/schema.md promises, errors that name the
organization and never the token, and one failing organization not stopping the others."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.config import files_per_source_config
from tests.support.daemon import cli, daemon, read_ndjson
from tests.support.spec_emulators import Answer, Bounds, CodacySpec, codacy_error
from tests.support.waiting import wait_until

TOKEN = "cdcy-SECRET-token-0123456789abcdef"


@pytest.fixture(params=["inclusive", "exclusive"])
def codacy(request: pytest.FixtureRequest) -> Iterator[CodacySpec]:
    bounds: Bounds = request.param
    server = CodacySpec(TOKEN, bounds)
    server.start()
    yield server
    server.stop()


def iso(moment: datetime, digits: int = 3, offset: str = "Z") -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}{'0' * 6}"[:digits]
    return text + offset


def entries(prefix: str, now: datetime) -> list[dict[str, Any]]:
    """Every documented field, the optional ones absent, and odd but valid values."""
    t = now.replace(microsecond=430000)
    plus2 = "+02:00"
    exported = {
        "actor": {"email": f"dave@{prefix}.example", "role": "organizationManager"},
        "action": "organizations.security.items.export",
        "result": "succeed",
        "timestamp": iso(t - timedelta(hours=2), 7),
        "source": "UI",
        "repositoryName": "r" * 2000,
        "description": "",
        "details": {},
        "entityId": " 42 ",
    }
    return [
        {
            "actor": {"email": f"alice@{prefix}.example", "role": "organizationAdmin"},
            "action": "organizations.gatepolicies.repositories.apply",
            "result": "succeed",
            "timestamp": iso(t - timedelta(hours=30), 2),
            "source": "UI",
            "repositoryName": "",
            "description": "Apply gate policy",
            "details": {"link": ["repo-one"], "unlink": []},
            "entityId": "123456",
        },
        # only the required fields
        {
            "actor": {"email": f"bob@{prefix}.example"},
            "action": "user.login",
            "result": "failed",
            "timestamp": iso(t - timedelta(hours=20), 0),
        },
        # a local offset: the normalized time must be UTC
        {
            "actor": {"email": f"carol@{prefix}.example", "role": "repositoryAdmin"},
            "action": "repositories.settings.analysis.update",
            "result": "rejected",
            "timestamp": iso((t - timedelta(hours=10)).astimezone(UTC) + timedelta(hours=2), 3, plus2),
            "source": "API",
            "repositoryName": "ünïcødé-répo-🚀",
            "description": "Ändern \u2013 " + "x" * 5000,
            "details": '{"link":["repo-one","unlink":[]}',
            "entityId": "9" * 30,
        },
        # seven fractional digits, entity id with spaces, and a byte-identical twin of it: two
        # events (docs/schema.md, Twins)
        exported,
        dict(exported),
    ]


def utc_ms(text: str) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def source(url: str, orgs: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "type": "codacy",
        "base_url": url,
        "api_token": TOKEN,
        "organizations": orgs,
        "initial_lookback_days": 3,
        "lag_s": 1,
        "interval_s": 1,
        "jitter_s": 0,
        "max_attempts": 2,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.1,
        **extra,
    }


def config(tmp_path: Path, src: dict[str, Any]) -> Path:
    return files_per_source_config(tmp_path, {"codacy": src})


def check_event(event: dict[str, Any], raw: dict[str, Any], org: str) -> None:
    assert event["raw"] == raw
    assert event["vendor"] == "codacy"
    assert event["organization"] == org
    assert event["time"] == utc_ms(raw["timestamp"])
    assert event["action"] == raw["action"]
    assert event["actor"]["email"] == raw["actor"]["email"]
    assert event["actor"]["type"] == "user"
    assert event["outcome"] == {"succeed": "success", "failed": "failure", "rejected": "failure"}[raw["result"]]
    assert event["target"]["id"] == raw.get("entityId")
    assert event["repository"] == (raw.get("repositoryName") or None)
    assert event["message"] == raw.get("description")
    assert event["id"].startswith("codacy:")


def windows(server: CodacySpec, org: str) -> list[tuple[int, int]]:
    path = f"/api/v3/organizations/{org}/audit"
    return [
        (int(r.query["from"][-1]), int(r.query["to"][-1]))
        for r in server.requests
        if r.path == path and r.status == 200
    ]


def assert_covered(server: CodacySpec, org: str) -> None:
    """Under the exclusive reading an entry at exactly a window's ``to`` is served only by a
    later window that starts strictly before it: no instant may fall between two windows."""
    spans = sorted(windows(server, org))
    assert spans
    reach = spans[0][1]
    for start, end in spans[1:]:
        if server.bounds == "exclusive":
            assert start < reach, f"{org}: the instant {reach} ms lies in no window: {spans}"
        else:
            assert start <= reach, f"{org}: ({reach}, {start}) ms lies in no window: {spans}"
        reach = max(reach, end)


def test_every_entry_once_fields_and_errors(codacy: CodacySpec, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    good = {"gh/acme": entries("acme", now), "gl/beta": entries("beta", now)}
    for org, items in good.items():
        codacy.add(org, *items)
    codacy.add("bb/locked")
    codacy.always["bb/locked"] = codacy_error(403, "Requires organization admin or organization manager role")
    codacy.add("gle/broken")
    codacy.always["gle/broken"] = codacy_error(500, "Internal error")
    codacy.plant_at_to = True
    # Codacy throttles with 503 (docs: rate limits), without Retry-After: retried
    codacy.faults["gl/beta"] = [Answer(503, {"message": "Service Unavailable", "actions": []})]
    orgs = ["gh/acme", "gh/ghost", "bb/locked", "gle/broken", "gl/beta"]
    cfg = config(tmp_path, source(codacy.base_url, orgs))

    first = cli(cfg, "once")
    assert first.returncode == 1, first.stderr
    for org in ("gh/ghost", "bb/locked", "gle/broken"):
        assert org in first.stderr + first.stdout, org
    assert TOKEN not in first.stderr + first.stdout
    assert TOKEN not in (tmp_path / "out" / "codacy.ndjson").read_text()
    for status in ("404", "403", "500"):
        assert status in first.stderr, status

    events = read_ndjson(tmp_path / "out")
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    planted = {org: len(codacy.planted.get(org, [])) for org in good}
    assert all(planted.values()), planted  # the walk is sliced: there are inner window ends
    for org, items in good.items():
        mine = [e for e in events if e["organization"] == org]
        served = items + codacy.planted.get(org, [])
        assert sorted(orjson_key(e["raw"]) for e in mine) == sorted(orjson_key(i) for i in served), org
        for event in mine:
            check_event(event, event["raw"], org)
        assert_covered(codacy, org)
        twins = {e["id"] for e in mine if e["raw"].get("entityId") == " 42 "}
        assert len(twins) == 2

    # new entries, one of them late (older than the previous run's end, inside the overlap)
    later = datetime.now(UTC) - timedelta(seconds=2)
    fresh = [
        {
            "actor": {"email": "eve@acme.example"},
            "action": "user.tokens.create",
            "result": "succeed",
            "timestamp": iso(later),
        },
        {
            "actor": {"email": "eve@acme.example"},
            "action": "user.tokens.delete",
            "result": "succeed",
            "timestamp": iso(later - timedelta(minutes=3)),
        },
    ]
    time.sleep(1.5)
    codacy.add("gh/acme", *fresh)
    second = cli(cfg, "once")
    assert second.returncode == 1, second.stderr
    events = read_ndjson(tmp_path / "out")
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    assert len(events) == sum(len(v) for v in good.values()) + 2 + sum(len(v) for v in codacy.planted.values())
    assert_covered(codacy, "gh/acme")
    assert any(r.status == 503 for r in codacy.requests)


def orjson_key(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def test_wrong_token_names_organization_not_token(codacy: CodacySpec, tmp_path: Path) -> None:
    codacy.add("gh/acme", *entries("acme", datetime.now(UTC)))
    src = source(codacy.base_url, ["gh/acme"])
    src["api_token"] = "wrong-" + TOKEN
    result = cli(config(tmp_path, src), "once")
    assert result.returncode == 1
    text = result.stderr + result.stdout
    assert "gh/acme" in text and "401" in text
    assert TOKEN not in text
    assert [r.headers.get("api-token") for r in codacy.requests][:1] == ["wrong-" + TOKEN]


def test_run_adds_while_running_and_restart(codacy: CodacySpec, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    codacy.add("gh/acme", *entries("acme", now))
    codacy.add("gl/beta", *entries("beta", now))
    cfg = config(tmp_path, source(codacy.base_url, ["gh/acme", "gl/beta"]))
    expected = 10

    def delivered() -> list[dict[str, Any]]:
        return read_ndjson(tmp_path / "out") if (tmp_path / "out").exists() else []

    def new(n: int, who: str) -> dict[str, Any]:
        return {
            "actor": {"email": f"{who}@acme.example"},
            "action": "user.login",
            "result": "succeed",
            "timestamp": iso(datetime.now(UTC) - timedelta(milliseconds=n)),
            "description": f"{who}-{n}",
        }

    with daemon(cfg) as proc:
        wait_until("first poll delivered", lambda: len(delivered()) >= expected, timeout=60, detail=proc.log)
        for n in range(5):
            codacy.add("gh/acme", new(n, "live"))
            time.sleep(0.2)
        expected += 5
        wait_until("live entries delivered", lambda: len(delivered()) >= expected, timeout=60, detail=proc.log)
        assert proc.stop() == 0
    for n in range(3):
        codacy.add("gl/beta", new(n, "offline"))
    expected += 3
    time.sleep(1.2)
    with daemon(cfg) as proc:
        wait_until("offline entries delivered", lambda: len(delivered()) >= expected, timeout=60, detail=proc.log)
        time.sleep(2.5)  # a few more polls re-reading the overlap must send nothing again
        assert proc.stop() == 0
        assert "Traceback" not in proc.log()
    events = delivered()
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    assert len(events) == expected
