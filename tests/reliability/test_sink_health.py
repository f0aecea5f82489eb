"""What the operator is told while a receiver refuses: which sink is failing, since when, how far
behind and why, on ``/readyz``, ``/healthz`` and ``/metrics`` of the real daemon, while the HEC
receiver answers 503; and that once it recovers every event arrives and the alarm clears.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.config import file_sink, make_config, state
from tests.support.daemon import DaemonProcess, cli, read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.health import get, health, metric
from tests.support.ports import free_port
from tests.support.receivers import events_in_hec, hec_sink
from tests.support.vendors import ORGS, codacy_source, expected_ids
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

REFUSE = {"status": 503, "count": 1_000_000, "path_contains": "/services/collector/event"}


@pytest.fixture
def receivers() -> Iterator[tuple[EmulatorProcess, EmulatorProcess]]:
    codacy = running("codacy", entries=40, options={"orgs": ORGS, "span_s": 86400})
    hec = running("splunk_hec")
    yield codacy, hec
    hec.stop()
    codacy.stop()


def start(tmp_path: Path, codacy: EmulatorProcess, hec: EmulatorProcess, **metrics: Any) -> tuple[DaemonProcess, int]:
    port = free_port()
    journal = metrics.pop("journal", {})
    cfg = make_config(
        tmp_path,
        codacy_source(codacy.url),
        {"hec": hec_sink(hec.url, batch_max_events=10), "file": file_sink(tmp_path / "out")},
        metrics={"listen": f"127.0.0.1:{port}", **metrics},
        journal=journal,
    )
    return DaemonProcess(cfg, tmp_path / "daemon.log"), port


def scraped(port: int, sink: str) -> float | None:
    return metric(get(f"http://127.0.0.1:{port}/metrics").text, "audit_forwarder_sink_failing", sink=sink)


def blaming(answer: tuple[int, dict[str, Any]], start: str) -> tuple[int, dict[str, Any]] | None:
    return answer if any(p.startswith(start) for p in answer[1]["problems"]) else None


def test_readyz_names_a_sink_failing_past_its_threshold_and_clears_once_it_delivers(
    tmp_path: Path, receivers: tuple[EmulatorProcess, EmulatorProcess]
) -> None:
    codacy, hec = receivers
    hec.control("POST", "faults", REFUSE)
    proc, port = start(tmp_path, codacy, hec, sink_failing_threshold_s=0.001)
    try:
        status, body = wait_until(
            "readyz names the failing sink",
            lambda: blaming(health(port), "sink hec "),
            detail=proc.log,
        )
        assert status == 503
        [problem] = body["problems"]
        assert "failing for over 0.001s" in problem and "503" in problem and "events behind" in problem
        failing = body["sinks"]["hec"]
        assert failing["state"] == "retrying"
        assert isinstance(failing["failing_since"], float)
        assert failing["lag_events"] > 0 and "503" in failing["error"]
        assert body["sinks"]["file"]["failing_since"] is None  # the healthy sink is not blamed
        assert scraped(port, "hec") == 1.0
        assert scraped(port, "file") == 0.0
        # the log, for whoever reads only it, says how long and how far behind too
        retried = [r for r in logged(proc) if r["event"] == "sink delivery failed, retrying"]
        assert retried and {r["sink"] for r in retried} == {"hec"}
        assert retried[-1]["lag_events"] > 0 and retried[-1]["failing_s"] >= retried[0]["failing_s"]

        hec.control("DELETE", "faults")
        wait_until("readyz ready again", lambda: health(port)[0] == 200, detail=proc.log)
        _, body = health(port)
        assert body["sinks"]["hec"]["failing_since"] is None and body["sinks"]["hec"]["error"] is None
        assert scraped(port, "hec") == 0.0
        wanted = expected_ids(codacy)
        wait_until("every event in HEC", lambda: {e["id"] for e in events_in_hec(hec)} >= wanted, detail=proc.log)
        assert {e["id"] for e in read_ndjson(tmp_path / "out")} >= wanted
    finally:
        proc.kill()


def test_a_full_journal_names_the_sinks_holding_it_and_nothing_is_dropped(
    tmp_path: Path, receivers: tuple[EmulatorProcess, EmulatorProcess]
) -> None:
    codacy, hec = receivers
    hec.control("POST", "faults", REFUSE)
    proc, port = start(tmp_path, codacy, hec, journal={"max_events": 10})
    try:
        # the file sink catches up while HEC refuses: then only HEC holds the full journal, with
        # its error once its first attempt was refused (the moment the journal fills, the file
        # sink may still be writing its last batch, and HEC's first attempt may be in flight)
        _, body = wait_until(
            "the journal full, held by HEC alone, refused",
            lambda: (
                answer
                if (answer := health(port, "/healthz"))[1]["journal"]["full"]
                and [(h["sink"], bool(h["error"])) for h in answer[1]["journal"].get("held_by", [])] == [("hec", True)]
                else None
            ),
            detail=proc.log,
        )
        [holder] = body["journal"]["held_by"]
        assert holder["sink"] == "hec" and holder["lag_events"] == body["sinks"]["hec"]["lag_events"] > 0
        assert "503" in holder["error"]

        hec.control("DELETE", "faults")
        wanted = expected_ids(codacy)
        wait_until("every event in HEC", lambda: {e["id"] for e in events_in_hec(hec)} >= wanted, detail=proc.log)
        wait_until("every event in the file", lambda: {e["id"] for e in read_ndjson(tmp_path / "out")} >= wanted)
        _, body = health(port, "/healthz")
        assert "held_by" not in body["journal"] or not body["journal"]["full"]
    finally:
        proc.kill()


def test_a_stop_ends_the_retrying_of_a_refused_batch_and_keeps_it_journaled(
    tmp_path: Path, receivers: tuple[EmulatorProcess, EmulatorProcess]
) -> None:
    """SIGTERM while HEC refuses with ``Retry-After: 600``: the worker stops at once instead of
    waiting out the back-off until ``shutdown_timeout_s`` cancels it, nothing is dead-lettered,
    and the next run delivers the batch."""
    codacy, hec = receivers
    hec.control("POST", "faults", {**REFUSE, "retry_after": "600"})
    proc, _ = start(tmp_path, codacy, hec)
    cfg = tmp_path / "config.yaml"
    wanted = expected_ids(codacy)
    try:
        wait_until(
            "HEC refused and the file sink current",
            lambda: (
                "sink delivery failed, retrying" in proc.log()
                and {e["id"] for e in read_ndjson(tmp_path / "out")} >= wanted
            ),
            detail=proc.log,
        )
        assert proc.stop() == 0
    finally:
        proc.kill()
    log = proc.log()
    assert "sink did not finish its batch in time" not in log
    assert "sink stopped between delivery attempts; its batch stays journaled" in log
    assert "dead-letter" not in log

    hec.control("DELETE", "faults")
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    assert {e["id"] for e in events_in_hec(hec)} >= wanted
    assert all(row["dead_letters"] == 0 for row in state(cfg)["sinks"])


def test_an_event_hec_refuses_is_dead_lettered_with_its_reason_logged_and_the_rest_delivered(
    tmp_path: Path, receivers: tuple[EmulatorProcess, EmulatorProcess]
) -> None:
    codacy, hec = receivers
    wanted = expected_ids(codacy)
    bad = sorted(wanted)[7]
    hec.control("POST", "config", {"poison_events": {bad: 6}})  # HEC's 400 "Invalid data format" naming it
    proc, _ = start(tmp_path, codacy, hec)
    try:
        wait_until(
            "all but the refused event in HEC",
            lambda: {e["id"] for e in events_in_hec(hec)} >= wanted - {bad},
            detail=proc.log,
        )
        line = wait_until(
            "the rejection logged",
            lambda: next((row for row in logged(proc) if row["event"].startswith("events rejected")), None),
        )
    finally:
        proc.kill()
    assert line["sink"] == "hec" and line["count"] == 1 and line["event_ids"] == [bad]
    assert "Invalid data format" in line["reasons"][0]
    assert "dlq list" in line["event"]
    assert bad not in {e["id"] for e in events_in_hec(hec)}
    [row] = [row for row in state(tmp_path / "config.yaml")["sinks"] if row["sink"] == "hec"]
    assert row["dead_letters"] == 1
    assert {e["id"] for e in read_ndjson(tmp_path / "out")} >= wanted  # the file sink has them all


def logged(proc: DaemonProcess) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in proc.log().splitlines() if line.startswith("{")]


def test_a_sink_stopped_by_a_refused_token_starts_again_at_a_reload_once_the_receiver_is_fixed(
    tmp_path: Path, receivers: tuple[EmulatorProcess, EmulatorProcess]
) -> None:
    """The log says "fix the problem and restart or reload"; the fix is at Splunk (the token
    enabled again) and the file is unchanged: the reload must start the sink again."""
    codacy, hec = receivers
    hec.control("POST", "config", {"disabled_tokens": ["hec-test-token"]})  # HEC's 403, code 1
    proc, port = start(tmp_path, codacy, hec)
    wanted = expected_ids(codacy)
    try:
        _, body = wait_until("the sink stopped", lambda: blaming(health(port), "sink hec stopped"), detail=proc.log)
        assert "check the HEC token" in body["problems"][0]
        hec.control("POST", "config", {"disabled_tokens": []})
        proc.signal(signal.SIGHUP)
        wait_until("every event in HEC", lambda: {e["id"] for e in events_in_hec(hec)} >= wanted, detail=proc.log)
        wait_until("readyz ready", lambda: health(port)[0] == 200, detail=proc.log)
    finally:
        proc.kill()
    [reloaded] = [row for row in logged(proc) if row["event"] == "configuration reloaded"]
    assert reloaded["sinks_rebuilt"] == ["hec"]
