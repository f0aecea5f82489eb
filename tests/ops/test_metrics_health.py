"""/metrics, /healthz and /readyz over real HTTP from the real daemon process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from structlog.testing import capture_logs

import forwarder.health as health_endpoint
from forwarder.delivery import RetrySettings, SinkWorker
from forwarder.journal import SqliteJournal
from forwarder.logs import register_secrets
from forwarder.record import Record
from sinks.file import FileSinkConfig
from tests.helpers.daemon import write_config
from tests.helpers.emulators import EmulatorProcess, running
from tests.ops.support import daemon, free_port, get, health, metric, unready, wait_for

pytestmark = pytest.mark.integration

TOKEN = "codacy-test-token"  # the emulator's default
ORGS = ["gh/acme", "gl/globex"]


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=30, options={"orgs": ORGS, "span_s": 86400})
    yield emulator
    emulator.stop()


def config(tmp_path: Path, url: str, port: int, sinks: dict[str, Any] | None = None, **extra: Any) -> Path:
    cfg: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        "metrics": {"listen": f"127.0.0.1:{port}", "source_failing_threshold_s": 1},
        "sources": {
            "codacy": {
                "type": "codacy", "base_url": f"{url}/api/v3", "api_token": TOKEN, "organizations": ORGS,
                "initial_lookback_days": 7, "lag_s": 0, "interval_s": 1, "jitter_s": 0, "max_attempts": 3,
                "backoff_initial_s": 0.05, "backoff_max_s": 0.1,
            }
        },
        "sinks": sinks
        or {"out": {"type": "file", "path": str(tmp_path / "out" / "{organization}.ndjson"), "batch_max_age_s": 0.05}},
    }  # fmt: skip
    cfg.update(extra)
    return write_config(tmp_path / "config.yaml", cfg)


def test_metrics_count_what_was_fetched_and_delivered(tmp_path: Path, codacy: EmulatorProcess) -> None:
    codacy.control("POST", "faults", [{"status": 429, "retry_after": "0", "count": 1, "path_contains": "acme"}])
    port = free_port()
    with daemon(config(tmp_path, codacy.url, port)) as proc:
        url = f"http://127.0.0.1:{port}/metrics"

        def all_delivered() -> str | None:
            body = get(url).text
            return body if metric(body, "audit_forwarder_sink_events_delivered_total", sink="out") == 60 else None

        text = wait_for("every event delivered", all_delivered)
        assert get(url).headers["content-type"].startswith("text/plain"), proc.log()
        for org in ORGS:
            assert metric(text, "audit_forwarder_source_events_total", source="codacy", organization=org) == 30
            assert metric(text, "audit_forwarder_source_pages_total", source="codacy", organization=org)
            assert metric(text, "audit_forwarder_source_http_responses_total", source="codacy",
                          organization=org, status_class="2xx")  # fmt: skip
            assert metric(text, "audit_forwarder_source_last_success_timestamp_seconds", source="codacy",
                          organization=org)  # fmt: skip
            lag = metric(text, "audit_forwarder_source_cursor_lag_seconds", source="codacy", organization=org)
            assert lag is not None and 0 <= lag < 300
        acme = {"source": "codacy", "organization": "gh/acme"}
        assert metric(text, "audit_forwarder_source_http_responses_total", status_class="4xx", **acme) == 1
        assert metric(text, "audit_forwarder_source_retries_total", **acme) == 1
        assert metric(text, "audit_forwarder_source_rate_limit_waits_total", **acme) == 1
        assert metric(text, "audit_forwarder_sink_batches_total", sink="out")
        assert metric(text, "audit_forwarder_sink_lag_events", sink="out") == 0
        assert metric(text, "audit_forwarder_sink_stopped", sink="out") == 0
        assert metric(text, "audit_forwarder_journal_full") == 0
        assert metric(text, "audit_forwarder_journal_events") is not None
        count = metric(text, "audit_forwarder_sink_delivery_latency_seconds_count", sink="out")
        assert count is not None and count >= 1
        assert TOKEN not in text

        status, body = health(port, "/readyz")
        assert status == 200, body
        assert body["status"] == "ready" and body["problems"] == []
        assert {org: body["sources"]["codacy"][org]["state"] for org in ORGS} == dict.fromkeys(ORGS, "ok")
        assert body["sources"]["codacy"]["gh/acme"]["events"] == 30
        assert body["sinks"]["out"]["delivered"] == 60 and body["sinks"]["out"]["lag_events"] == 0
        assert 0 < time.time() - body["sinks"]["out"]["last_delivery"] < 3600  # wall time, for "stale" alerts
        status, alive = health(port, "/healthz")
        assert status == 200 and alive["sinks"]["out"]["state"] in ("running", "idle")
        assert get(f"http://127.0.0.1:{port}/nothing").status_code == 404


def test_readyz_fails_while_a_source_keeps_failing(tmp_path: Path, codacy: EmulatorProcess) -> None:
    codacy.control("POST", "faults", [{"status": 401, "count": 10_000, "path_contains": "globex"}])
    port = free_port()
    with daemon(config(tmp_path, codacy.url, port)) as proc:
        _status, body = wait_for("readyz to fail", lambda: unready(port))
        assert any("gl/globex" in p and "failing" in p for p in body["problems"]), body
        assert body["sources"]["codacy"]["gl/globex"]["state"] == "failed"
        assert "credentials were refused" in body["sources"]["codacy"]["gl/globex"]["error"]
        assert body["sources"]["codacy"]["gh/acme"]["state"] == "ok"
        assert health(port, "/healthz")[0] == 200  # alive, just not ready
        text = get(f"http://127.0.0.1:{port}/metrics").text
        assert metric(text, "audit_forwarder_source_failing", source="codacy", organization="gl/globex") == 1
        assert metric(text, "audit_forwarder_source_failing", source="codacy", organization="gh/acme") == 0
        assert proc.process.poll() is None


def test_readyz_fails_when_a_sink_stops_on_bad_credentials(tmp_path: Path, codacy: EmulatorProcess) -> None:
    hec = running("splunk_hec")
    try:
        sinks = {"hec": {"type": "splunk_hec", "url": hec.url, "token": "wrong-hec-token", "batch_max_age_s": 0.05}}
        port = free_port()
        with daemon(config(tmp_path, codacy.url, port, sinks=sinks)) as proc:
            _status, body = wait_for("readyz to fail", lambda: unready(port))
            assert body["sinks"]["hec"]["state"] == "stopped", proc.log()
            assert any(p.startswith("sink hec stopped") for p in body["problems"]), body
            text = get(f"http://127.0.0.1:{port}/metrics").text
            assert metric(text, "audit_forwarder_sink_stopped", sink="hec") == 1
            assert (metric(text, "audit_forwarder_sink_lag_events", sink="hec") or 0) > 0
            assert (metric(text, "audit_forwarder_sink_lag_seconds", sink="hec") or 0) > 0
            assert "wrong-hec-token" not in text + str(body) + proc.log()
    finally:
        hec.stop()


def test_metrics_can_be_turned_off(tmp_path: Path, codacy: EmulatorProcess) -> None:
    port = free_port()
    cfg = config(tmp_path, codacy.url, port, metrics={"enabled": False, "listen": f"127.0.0.1:{port}"})
    with daemon(cfg) as proc:
        wait_for("the daemon to start", lambda: "audit-forwarder started" in proc.log())
        wait_for("a poll", lambda: list((tmp_path / "out").glob("*.ndjson")))
        with pytest.raises(httpx.ConnectError):
            get(f"http://127.0.0.1:{port}/healthz")


async def test_health_hides_a_secret_that_json_would_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrubbing the encoded text missed a secret holding a quote or a backslash: JSON writes
    it as \\" or \\\\, which no longer matches."""
    secret = 'pa"ss\\word-123'
    register_secrets({secret})
    body = {"sinks": {"hec": {"state": "retrying", "error": f"receiver said {secret}"}}}
    monkeypatch.setattr(health_endpoint, "report", lambda daemon: (True, body))
    status, _, text = await health_endpoint.HealthServer(cast(Any, None))._route("GET", "/healthz")
    assert status == 200 and b"receiver said ***" in text and b"word-123" not in text


async def test_a_retry_names_an_unexpected_exceptions_type(tmp_path: Path) -> None:
    class Broken:
        async def start(self) -> None:
            return None

        async def send(self, batch: Any) -> None:
            raise KeyError("weird")

    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
    worker = SinkWorker("broken", cast(Any, Broken()), config, journal, RetrySettings(initial_backoff_s=0.01,
                                                                                       max_attempts=2))  # fmt: skip
    record = Record(1, "e1", "src", "org", 0, b"{}", "codacy")
    try:
        with capture_logs() as logs:
            await worker._deliver([record], 1)
    finally:
        await journal.close()
    retried = [e for e in logs if e["event"] == "sink delivery failed, retrying"]
    assert [e["error"] for e in retried] == ["KeyError: 'weird'"]  # was only "'weird'"
    assert worker.status.dead_lettered == 1
