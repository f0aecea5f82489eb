"""/metrics, /healthz and /readyz over real HTTP from the real daemon process."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

import forwarder.health as health_endpoint
from forwarder.delivery import SinkWorker
from forwarder.journal import SqliteJournal
from forwarder.record import Record
from forwarder.redaction import register_secrets
from forwarder.retry import RetrySettings
from forwarder.settings import Settings
from sinks.file_config import FileSinkConfig
from tests.support.daemon import daemon, read_ndjson, write_config
from tests.support.emulators import EmulatorProcess, running
from tests.support.health import get, health, logged_port, metric, unready
from tests.support.ports import free_port
from tests.support.waiting import wait_until

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
                "type": "codacy",
                "base_url": f"{url}/api/v3",
                "api_token": TOKEN,
                "organizations": ORGS,
                "initial_lookback_days": 7,
                "lag_s": 0,
                "interval_s": 1,
                "jitter_s": 0,
                "max_attempts": 3,
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.1,
            }
        },
        "sinks": sinks
        or {"out": {"type": "file", "path": str(tmp_path / "out" / "{organization}.ndjson"), "batch_max_age_s": 0.05}},
    }
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

        text = wait_until("every event delivered", all_delivered)
        assert get(url).headers["content-type"].startswith("text/plain"), proc.log()
        for org in ORGS:
            assert metric(text, "audit_forwarder_source_events_total", source="codacy", organization=org) == 30
            assert metric(text, "audit_forwarder_source_pages_total", source="codacy", organization=org)
            assert metric(
                text,
                "audit_forwarder_source_http_responses_total",
                source="codacy",
                organization=org,
                status_class="2xx",
            )
            assert metric(
                text, "audit_forwarder_source_last_success_timestamp_seconds", source="codacy", organization=org
            )
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
        _status, body = wait_until("readyz to fail", lambda: unready(port))
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
            _status, body = wait_until("readyz to fail", lambda: unready(port))
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
        wait_until("the daemon to start", lambda: "audit-forwarder started" in proc.log())
        wait_until("a poll", lambda: list((tmp_path / "out").glob("*.ndjson")))
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
    worker = SinkWorker(
        "broken", cast(Any, Broken()), config, journal, RetrySettings(initial_backoff_s=0.01, max_attempts=2)
    )
    record = Record(1, "e1", "src", "org", 0, b"{}", "codacy")
    try:
        with capture_logs() as logs:
            await worker._deliver([record], 1)
    finally:
        await journal.close()
    retried = [e for e in logs if e["event"] == "sink delivery failed, retrying"]
    assert [e["error"] for e in retried] == ["KeyError: 'weird'"]  # was only "'weird'"
    assert worker.status.dead_lettered == 1


def non_json_lines(text: str) -> list[str]:
    bad = []
    for line in text.splitlines():
        try:
            if not isinstance(orjson.loads(line), dict):
                bad.append(line)
        except orjson.JSONDecodeError:
            bad.append(line)
    return bad


def test_port_0_lets_the_system_choose_and_the_log_names_it(tmp_path: Path, codacy: EmulatorProcess) -> None:
    cfg = config(tmp_path, codacy.url, 0)
    with daemon(cfg) as proc:
        port = wait_until("the start-up line naming the port", lambda: logged_port(proc))
        assert port > 0, proc.log()
        assert health(port, "/healthz")[0] == 200
        assert f'"listen":"127.0.0.1:{port}"' in proc.log()


class Flood:
    """Keeps opening idle connections to a port from a thread, holding up to ``hold`` of them
    (the oldest closed first), as a misbehaving local client would."""

    def __init__(self, port: int, hold: int = 150) -> None:
        self.port, self.hold = port, hold
        self.opened = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.conns: deque[socket.socket] = deque()

    def _run(self) -> None:
        while not self.stopping.is_set():
            sock = socket.socket()
            sock.settimeout(0.2)
            try:
                sock.connect(("127.0.0.1", self.port))
            except OSError:
                sock.close()
                continue
            self.opened += 1
            self.conns.append(sock)
            while len(self.conns) > self.hold:
                self.conns.popleft().close()

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        while self.conns:
            self.conns.popleft().close()


def test_idle_connections_cannot_exhaust_the_daemons_descriptors(tmp_path: Path, codacy: EmulatorProcess) -> None:
    """Under ``ulimit -n 96`` a client holding idle connections made the pollers fail with
    ``Too many open files`` and filled stderr with plain-text ``socket.accept()`` tracebacks."""
    cfg = config(tmp_path, codacy.url, 0)
    command = ["prlimit", "--nofile=96:96", "--", sys.executable, "-m", "forwarder", "-c", str(cfg), "run"]
    with daemon(cfg, cmd=command) as proc:
        port = wait_until("the start-up line naming the port", lambda: logged_port(proc))
        wait_until("the first 60 events", lambda: len(read_ndjson(tmp_path / "out")) == 60)
        with Flood(port) as flood:
            wait_until("more connections than the daemon may open files", lambda: flood.opened > 120, timeout=60)
            codacy.control("POST", "entries", {"generate": 5, "orgs": ORGS, "span_s": 1})
            # the pollers keep working while the flood goes on
            wait_until("the new events", lambda: len(read_ndjson(tmp_path / "out")) == 70, timeout=60)
        assert wait_until("/healthz once the flood is over", lambda: health(port, "/healthz")[0] == 200, timeout=60)
        text = proc.log()
        assert proc.process.poll() is None, text[-3000:]
    assert "Traceback" not in text and "Too many open files" not in text, text[-3000:]
    assert not non_json_lines(text), non_json_lines(text)[:5]
    assert len(text) < 100_000, len(text)


async def test_headers_too_large_are_refused_and_a_silent_client_is_hung_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_endpoint, "HEADER_TIMEOUT_S", 0.2)
    monkeypatch.setattr(health_endpoint, "report", lambda daemon: (True, {}))
    settings = Settings(metrics={"listen": "127.0.0.1:0"})
    server = health_endpoint.HealthServer(cast(Any, SimpleNamespace(settings=settings)))
    await server.start()
    try:
        assert server.address is not None
        port = int(server.address.rpartition(":")[2])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * health_endpoint.MAX_HEADER_BYTES + b"\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 431 ")
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
        writer.close()
    finally:
        await server.stop()


def _readme_metrics() -> tuple[set[str], set[str]]:
    """The metric families README's `/metrics` item names, expanded (``_pages_total`` after
    ``audit_forwarder_source_events_total`` is ``audit_forwarder_source_pages_total``), and
    those of them only replicas of a PostgreSQL state expose."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    item = readme.split("- `/metrics`:", 1)[1].split("\n- `/healthz`", 1)[0]
    documented: set[str] = set()
    replicas: set[str] = set()
    base = "audit_forwarder"
    for text_part, in_replicas in zip(item.split("Replicas on a"), (False, True), strict=True):
        for token in re.findall(r"`([a-z_]+)(?:\{[a-z_]+\})?`", text_part):
            if token.startswith("audit_forwarder_"):
                group = token.split("_")[2]
                base = f"audit_forwarder_{group}" if group in ("source", "sink", "journal") else "audit_forwarder"
                name = token
            elif token.startswith("_"):
                name = base + token
            else:
                continue  # a label
            documented.add(name)
            if in_replicas:
                replicas.add(name)
    return documented, replicas


def test_metrics_exposed_are_exactly_those_readme_documents(tmp_path: Path, codacy: EmulatorProcess) -> None:
    port = free_port()
    with daemon(config(tmp_path, codacy.url, port)):
        url = f"http://127.0.0.1:{port}/metrics"

        def delivered() -> str | None:
            body = get(url).text
            return body if metric(body, "audit_forwarder_sink_batches_total", sink="out") else None

        text = wait_until("a delivery", delivered)
    exposed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE audit_forwarder_")}
    documented, replicas = _readme_metrics()
    assert len(documented) > 25 and replicas, documented
    assert exposed - documented == set(), "exposed but not in README's /metrics list"
    assert documented - replicas - exposed == set(), "in README's /metrics list but not exposed"
