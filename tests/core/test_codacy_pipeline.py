"""Codacy end to end: the emulator over real HTTP, the real CLI in its own process, the file sink."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forwarder.emulators.codacy import format_timestamp
from forwarder.event import content_id
from tests.support.config import codacy_files_config
from tests.support.daemon import cli, read_ndjson, start, write_config
from tests.support.emulators import EmulatorProcess, running

TOKEN = "codacy-test-token"
ORGS = ["gh/acme", "gl/globex"]


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=40, options={"orgs": ORGS, "span_s": 3 * 86400})
    yield emulator
    emulator.stop()


def expected_ids(emulator: EmulatorProcess) -> Counter[str]:
    ids: Counter[str] = Counter()
    for entry in emulator.entries():
        org = entry.pop("_org")
        ids[content_id("codacy", org, entry)] += 1
    return ids


def delivered(tmp_path: Path) -> list[dict[str, Any]]:
    return read_ndjson(tmp_path / "out")


def test_first_run_collects_every_entry_once_and_second_run_nothing(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = codacy_files_config(tmp_path, codacy.url)
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    events = delivered(tmp_path)
    assert Counter(e["id"] for e in events) == expected_ids(codacy)
    assert len(events) == 80
    assert {e["organization"] for e in events} == set(ORGS)
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    assert len(delivered(tmp_path)) == 80


def test_entries_added_later_arrive(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = codacy_files_config(tmp_path, codacy.url)
    assert cli(cfg, "once").returncode == 0
    codacy.control("POST", "entries", {"generate": 5, "orgs": ORGS, "span_s": 1})
    assert cli(cfg, "once").returncode == 0
    events = delivered(tmp_path)
    assert len(events) == 90
    assert Counter(e["id"] for e in events) == expected_ids(codacy)


def test_boundary_ties_are_neither_lost_nor_duplicated(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = codacy_files_config(tmp_path, codacy.url)
    tie = format_timestamp(int(time.time() * 1000) - 1000)
    base = {"actor": {"email": "tie@example.com"}, "result": "succeed", "timestamp": tie, "_org": "gh/acme"}
    codacy.control("POST", "entries", [{**base, "action": "user.login"}, {**base, "action": "user.tokens.read"}])
    assert cli(cfg, "once").returncode == 0
    # a late entry with the very same millisecond as the cursor's boundary, plus a byte-identical twin
    codacy.control("POST", "entries", [{**base, "action": "user.tokens.create"}, {**base, "action": "user.login"}])
    assert cli(cfg, "once").returncode == 0
    ids = Counter(e["id"] for e in delivered(tmp_path))
    assert max(ids.values()) == 1
    ties = [e for e in delivered(tmp_path) if e["actor"]["email"] == "tie@example.com"]
    assert sorted(e["action"] for e in ties) == [
        "user.login",
        "user.login",
        "user.tokens.create",
        "user.tokens.read",
    ]


def test_auth_failure_on_one_organization_leaves_the_others_flowing(tmp_path: Path, codacy: EmulatorProcess) -> None:
    codacy.control("POST", "config", {"forbidden_orgs": ["globex"]})
    cfg = codacy_files_config(tmp_path, codacy.url, sources={})
    good = {
        "type": "codacy",
        "base_url": f"{codacy.url}/api/v3",
        "api_token": TOKEN,
        "organizations": ORGS,
        "initial_lookback_days": 7,
        "lag_s": 0,
        "max_attempts": 2,
        "backoff_initial_s": 0.05,
    }
    bad = {**good, "api_token": "wrong-token-value", "organizations": ["gh/acme"]}
    write_config(cfg, {**__import__("yaml").safe_load(cfg.read_text()), "sources": {"good": good, "bad": bad}})
    result = cli(cfg, "once")
    assert result.returncode == 1
    assert "401" in result.stderr and "check the source's token" in result.stderr
    assert "403" in result.stderr and "globex" in result.stderr
    assert "wrong-token-value" not in result.stderr
    events = delivered(tmp_path)
    assert {(e["source"], e["organization"]) for e in events} == {("good", "gh/acme")}
    assert len(events) == 40


def test_throttling_503_is_retried(tmp_path: Path, codacy: EmulatorProcess) -> None:
    codacy.control("POST", "faults", {"status": 503, "count": 2, "path_contains": "/audit"})
    cfg = codacy_files_config(tmp_path, codacy.url)
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    assert "source request retried" in result.stderr
    assert len(delivered(tmp_path)) == 80


def test_html_error_page_with_200_does_not_move_the_cursor(tmp_path: Path, codacy: EmulatorProcess) -> None:
    codacy.control(
        "POST",
        "faults",
        {
            "status": 200,
            "count": 1,
            "content_type": "text/html",
            "body": "<html>maintenance</html>",
            "path_contains": "gh/acme",
        },
    )
    cfg = codacy_files_config(tmp_path, codacy.url)
    result = cli(cfg, "once")
    assert result.returncode == 1
    assert "not JSON" in result.stderr
    assert cli(cfg, "once").returncode == 0
    assert Counter(e["id"] for e in delivered(tmp_path)) == expected_ids(codacy)


def test_sink_that_fails_then_recovers_delivers_everything(tmp_path: Path, codacy: EmulatorProcess) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the sink wants a directory")
    cfg = codacy_files_config(tmp_path, codacy.url)
    daemon = start(cfg, "run")
    try:
        time.sleep(3)  # the sink fails over and over meanwhile
        assert read_state(cfg)["sinks"][0]["offset"] == 0
        blocker.unlink()
        deadline = time.time() + 30
        while time.time() < deadline and len(delivered(tmp_path)) < 80:
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert Counter(e["id"] for e in delivered(tmp_path)) == expected_ids(codacy)
    assert b"sink delivery failed, retrying" in (daemon.stderr.read() if daemon.stderr else b"")


def read_state(cfg: Path) -> dict[str, Any]:
    import orjson

    result = cli(cfg, "state", "show", "--output", "json")
    assert result.returncode == 0, result.stderr
    state: dict[str, Any] = orjson.loads(result.stdout)
    return state


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = codacy_files_config(tmp_path, codacy.url)
    rng = random.Random(7)
    for _ in range(12):
        codacy.control("POST", "entries", {"generate": rng.randint(1, 15), "orgs": ORGS, "span_s": 5})
        daemon = start(cfg, "run")
        time.sleep(rng.uniform(0.3, 2.0))
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
    assert cli(cfg, "once").returncode == 0
    got = Counter(e["id"] for e in delivered(tmp_path))
    want = expected_ids(codacy)
    assert set(got) == set(want), f"lost: {len(set(want) - set(got))}"
    duplicates = sum(n - 1 for n in got.values())
    print(f"crash test: {sum(want.values())} entries, 0 lost, {duplicates} duplicated (same ids)")
    events = delivered(tmp_path)
    by_id: dict[str, dict[str, Any]] = {}
    for event in events:  # any duplicate is the very same event, byte for byte but observed_time
        event.pop("observed_time")
        assert by_id.setdefault(event["id"], event) == event
