"""Every line the daemon writes to stderr is a JSON object that went through the redaction,
whoever wrote it: our code, a library's standard ``logging`` (apscheduler, httpx, asyncio...)
or the event loop's report of an exception nobody retrieved."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from structlog.testing import capture_logs

from forwarder import logs
from forwarder.emulators.configcat import DEFAULT_ORG_ID
from sinks.syslog.transport import _UdpProtocol
from tests.support.daemon import cli, daemon, write_config
from tests.support.emulators import running
from tests.support.health import get, logged_port, metric
from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT
from tests.support.vendors import configcat_as_http_json
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

CODACY_TOKEN = "codacy-test-token"  # the emulator's default
ORGS = ["gh/acme", "gl/globex"]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line as JSON; fails naming the first line that is not a JSON object."""
    parsed = []
    for line in text.splitlines():
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            value = None
        assert isinstance(value, dict), f"not a JSON log line: {line!r}"
        parsed.append(value)
    return parsed


SKIPPED = "organization still being polled; this cycle skips it"


def test_every_line_is_json_under_faults_and_an_overlapping_poll_is_a_debug_event(tmp_path: Path) -> None:
    """The scheduler's "skipped: maximum number of running instances reached" broke the JSON
    log with a plain-text warning per occurrence."""
    codacy = running("codacy", entries=10, options={"orgs": ORGS, "span_s": 86400})
    try:
        codacy.control(
            "POST",
            "faults",
            [
                {"status": 0, "delay_s": 3.5, "count": 1, "path_contains": "acme"},  # polls overlap
                {"status": 500, "count": 3, "path_contains": "globex"},  # the vendor fails
            ],
        )
        cfg = write_config(
            tmp_path / "config.yaml",
            {
                "state_dir": str(tmp_path / "state"),
                "log": {"level": "debug"},
                "shutdown_timeout_s": 1,
                "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
                "metrics": {"listen": "127.0.0.1:0"},
                "sources": {
                    "codacy": {
                        "type": "codacy",
                        "base_url": f"{codacy.url}/api/v3",
                        "api_token": CODACY_TOKEN,
                        "organizations": ORGS,
                        "initial_lookback_days": 7,
                        "lag_s": 0,
                        "interval_s": 0.25,
                        "jitter_s": 0,
                        "max_attempts": 2,
                        "backoff_initial_s": 0.05,
                        "backoff_max_s": 0.1,
                    }
                },
                "sinks": {  # a receiver that is not there
                    "hec": {
                        "type": "splunk_hec",
                        "url": f"http://127.0.0.1:{free_port()}",
                        "token": "hec-token-1234",
                        "batch_max_age_s": 0.05,
                    },
                },
            },
        )
        with daemon(cfg) as proc:
            wait_until("an overlapping poll", lambda: SKIPPED in proc.log())
            wait_until("the vendor's 500", lambda: "500 Internal Server Error" in proc.log())
            wait_until("the sink's failures", lambda: "sink delivery failed, retrying" in proc.log())
        lines = json_lines(proc.log())
    finally:
        codacy.stop()
    assert lines[-1]["event"] == "audit-forwarder stopped"  # shutdown's lines included
    skipped = [e for e in lines if e["event"] == SKIPPED]  # the poller's, per organization, not the scheduler's
    assert skipped and {e["level"] for e in skipped} == {"debug"}
    assert {(e["source"], e["organization"]) for e in skipped} == {("codacy", "gh/acme")}
    assert not [e for e in lines if "maximum number of running instances" in e["event"]]
    assert any(e.get("logger") == "httpx" for e in lines)
    assert any(e["event"] == "sink delivery failed, retrying" and e["sink"] == "hec" for e in lines)
    assert "hec-token-1234" not in str(lines)
    assert not [e for e in lines if "Traceback" in str(e)], [e for e in lines if "Traceback" in str(e)]


def test_a_token_in_a_url_a_library_logs_is_redacted(tmp_path: Path) -> None:
    """httpx logs each request's URL (at INFO, shown with ``log.level: debug``); a source that
    sends its token in the query string put it there in clear."""
    token = "q+tok/en=1234"
    configcat = running("configcat", entries=5)
    try:
        source = {
            **configcat_as_http_json(configcat.url),
            "max_attempts": 1,
            "auth": {"type": "query", "param": "apikey", "token": token},
        }
        cfg = write_config(
            tmp_path / "config.yaml",
            {
                "state_dir": str(tmp_path / "state"),
                "log": {"level": "debug"},
                "sources": {"hj": source},
                "sinks": {"out": {"type": "file", "path": str(tmp_path / "out.ndjson")}},
            },
        )
        result = cli(cfg, "once")
    finally:
        configcat.stop()
    lines = json_lines(result.stderr)
    requests = [e["event"] for e in lines if e.get("logger") == "httpx" and DEFAULT_ORG_ID in e["event"]]
    assert requests and all("apikey=***" in r for r in requests), requests
    assert token not in result.stderr and quote(token, safe="") not in result.stderr


def test_the_event_loops_reports_warnings_and_a_crash_are_json_and_redacted() -> None:
    """An exception no task retrieved reached stderr as asyncio's plain-text traceback."""
    code = (
        "import asyncio, gc, warnings\n"
        "from forwarder.logs import configure_logging, watch_loop\n"
        "from forwarder.redaction import register_secrets\n"
        "register_secrets({'loop-secret-987'})\n"
        "configure_logging('info', 'json')\n"
        "async def boom():\n"
        "    raise RuntimeError('refused loop-secret-987')\n"
        "async def main():\n"
        "    watch_loop()\n"
        "    for _ in range(30):\n"
        "        task = asyncio.get_running_loop().create_task(boom())\n"
        "        await asyncio.sleep(0)\n"
        "        del task\n"
        "        gc.collect()\n"
        "asyncio.run(main())\n"
        "warnings.warn('old thing loop-secret-987')\n"
        "raise SystemError('fatal loop-secret-987')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    lines = json_lines(result.stderr)
    reported = [e for e in lines if e["event"] == "Task exception was never retrieved"]
    assert reported and all(e["error"] == "RuntimeError: refused ***" for e in reported), lines
    assert len(reported) == logs.LINES_PER_WINDOW  # 30 of them, rate-limited
    assert any(e["event"] == "similar log lines are suppressed for the rest of the window" for e in lines)
    assert any(e.get("logger") == "py.warnings" and "old thing ***" in e["event"] for e in lines), lines
    assert lines[-1]["event"] == "audit-forwarder crashed" and lines[-1]["error"] == "SystemError: fatal ***"
    assert "loop-secret-987" not in result.stderr


def test_the_throttle_reports_what_it_suppressed() -> None:
    now = [0.0]
    throttle = logs.Throttle(limit=2, window_s=60, clock=lambda: now[0])
    key = ("lib", "same message")
    with capture_logs() as seen:
        assert [throttle.admit(key) for _ in range(5)] == [True, True, False, False, False]
        assert throttle.admit(("lib", "another message"))
        now[0] = 61.0
        assert throttle.admit(key)
    notes = [(e["event"], e.get("suppressed")) for e in seen]
    assert notes == [
        ("similar log lines are suppressed for the rest of the window", None),
        ("similar log lines were suppressed", 3),
    ]


@pytest.mark.parametrize(("level", "shown"), [(logging.INFO, False), (logging.DEBUG, True)])
def test_a_skipped_overlapping_poll_and_a_cancelled_one_are_debug(level: int, shown: bool) -> None:
    skipped = logging.LogRecord(
        "apscheduler.scheduler",
        logging.WARNING,
        __file__,
        1,
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
        ("poll", 1),
        None,
    )
    cancelled = logging.LogRecord(
        "apscheduler.executors.default",
        logging.ERROR,
        __file__,
        1,
        'Job "%s" raised an exception',
        ("poll",),
        (asyncio.CancelledError, asyncio.CancelledError(), None),
    )
    failed = logging.LogRecord(
        "apscheduler.executors.default",
        logging.ERROR,
        __file__,
        1,
        'Job "%s" raised an exception',
        ("poll",),
        (KeyError, KeyError("bug"), None),
    )
    for record in (skipped, cancelled):
        assert logs._LibraryFilter(level).filter(record) is shown
        assert record.levelname == "DEBUG"
    assert cancelled.exc_info is None
    assert logs._LibraryFilter(level).filter(failed) and failed.levelname == "ERROR"


def test_the_sink_field_is_the_sinks_name(tmp_path: Path) -> None:
    """``sink`` was sometimes ``sink:hec`` (a task's name), sometimes ``hec``; syslog's UDP
    error put a sentence in it."""
    with socket.socket() as silent:  # takes connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        codacy = running("codacy", entries=5, options={"orgs": ORGS[:1], "span_s": 86400})
        try:
            cfg = write_config(
                tmp_path / "config.yaml",
                {
                    "state_dir": str(tmp_path / "state"),
                    "shutdown_timeout_s": 0.5,
                    "metrics": {"listen": "127.0.0.1:0"},
                    "sources": {
                        "codacy": {
                            "type": "codacy",
                            "base_url": f"{codacy.url}/api/v3",
                            "api_token": CODACY_TOKEN,
                            "organizations": ORGS[:1],
                            "lag_s": 0,
                            "interval_s": 60,
                            "jitter_s": 0,
                        }
                    },
                    "sinks": {
                        "hec": {"type": "splunk_hec", "url": url, "token": "hec-token-1234", "batch_max_age_s": 0.05}
                    },
                },
            )
            with daemon(cfg) as proc:
                port = wait_until("the metrics port", lambda: logged_port(proc))
                wait_until(
                    "a batch in flight",
                    lambda: metric(
                        get(f"http://127.0.0.1:{port}/metrics").text,
                        "audit_forwarder_source_events_total",
                        source="codacy",
                    ),
                )
            lines = json_lines(proc.log())
        finally:
            codacy.stop()
    late = [e for e in lines if e["event"] == "sink did not finish its batch in time; it stays journaled"]
    assert [e["sink"] for e in late] == ["hec"], lines
    with capture_logs() as seen:
        _UdpProtocol("siem", "127.0.0.1:514").error_received(ConnectionRefusedError(111, "Connection refused"))
    assert seen[0]["sink"] == "siem" and seen[0]["receiver"] == "127.0.0.1:514"
