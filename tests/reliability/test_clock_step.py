"""A clock step (issue 18 item 3). The watermark is the local clock's slice end: after the clock
ran ahead and came back, the next windows started in the future, nothing was asked for until
real time caught up, the entries in between were lost, and ``/readyz`` stayed green. A watermark
ahead of the clock is pulled back to now - lag (one place, ``window.clock_step``, for every
windowed source) and the organization shows failing, with the reason, for that cycle."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from forwarder.journal import SqliteJournal
from forwarder.polling import Poller
from forwarder.sources import window
from forwarder.sources.codacy import CodacyConfig, CodacySource
from forwarder.sources.window import WindowCursor
from tests.support.config import file_sink, make_config
from tests.support.daemon import DaemonProcess, read_ndjson
from tests.support.emulators import EmulatorProcess
from tests.support.health import get, health, metric
from tests.support.hostile import codacy_entry
from tests.support.ports import free_port
from tests.support.vendors import codacy_source, expected_ids
from tests.support.waiting import wait_until

DAY_MS = 86_400_000


async def journaled(journal: SqliteJournal) -> list[dict[str, Any]]:
    return [orjson.loads(r.data) for r in await journal.read(0, 100_000, 1 << 30)]


async def test_a_clock_that_ran_ahead_and_came_back_loses_nothing(
    tmp_path: Path, codacy: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset = [0.0]
    monkeypatch.setattr(window, "time", SimpleNamespace(time=lambda: time.time() + offset[0]))
    config = CodacyConfig.model_validate(codacy_source(codacy.url, lag_s=0, overlap_s=600, initial_lookback_days=3))
    source = CodacySource("codacy", config)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    try:
        poller = Poller(source, journal, lambda: None)
        assert await poller.poll()
        offset[0] = 86_400.0  # an NTP step, a VM restored from a snapshot: a day ahead
        assert await poller.poll()  # nothing to tell yet: the watermark agrees with the clock
        ahead = await journal.get_cursor("codacy", "gh/acme")
        assert ahead is not None and ahead["watermark_ms"] > time.time() * 1000 + DAY_MS / 2
        later = int(time.time() * 1000) - 5_000  # recorded while the clock was ahead
        codacy.control("POST", "entries", [{**codacy_entry(later), "_org": "gh/acme"}])
        offset[0] = 0.0  # and back
        assert not await poller.poll(), "the organization must show failing for this cycle"
        status = poller.status["gh/acme"]
        assert status.state == "failed" and status.error is not None and "ahead of this machine's clock" in status.error
        assert status.failures == 1 and status.failing_since is not None
        pulled = await journal.get_cursor("codacy", "gh/acme")
        assert pulled is not None and pulled["watermark_ms"] <= time.time() * 1000
        got = await journaled(journal)
        assert {e["id"] for e in got} == expected_ids(codacy), "the entry recorded while the clock was ahead"
        assert await poller.poll() and poller.status["gh/acme"].state == "ok"  # one cycle, then ok again
        assert poller.status["gh/acme"].error is None
    finally:
        await journal.close()
        await source.close()


async def test_a_backward_step_re_reads_no_history_beyond_the_overlap(
    tmp_path: Path, codacy: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock was right and steps a day back: pulled back to now - lag, the window re-reads
    the overlap before it, never the day (or the lookback) behind it."""
    offset = [0.0]
    monkeypatch.setattr(window, "time", SimpleNamespace(time=lambda: time.time() + offset[0]))
    config = CodacyConfig.model_validate(codacy_source(codacy.url, lag_s=0, overlap_s=600, initial_lookback_days=3))
    source = CodacySource("codacy", config)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    try:
        poller = Poller(source, journal, lambda: None)
        assert await poller.poll()
        before = len(codacy.control("GET", "requests"))
        offset[0] = -86_400.0
        assert not await poller.poll()
        now_ms = int(time.time() * 1000) - DAY_MS
        asked = [r[2] for r in codacy.control("GET", "requests")[before:]]
        assert asked
        for path in asked:
            lo = int(path.split("from=")[1].split("&")[0])
            assert lo >= now_ms - 600_000 - 5_000, f"asked for history beyond the overlap: {path}"
    finally:
        await journal.close()
        await source.close()


def test_a_watermark_within_the_tolerance_is_left_alone() -> None:
    now = 1_800_000_000_000
    cursor = WindowCursor(now + window.CLOCK_TOLERANCE_MS, {"k": now}).dump()
    assert window.clock_step(cursor, now, 60_000) == (cursor, None)
    assert window.clock_step(None, now, 60_000) == (None, None)
    moved, why = window.clock_step({**cursor, "watermark_ms": now + window.CLOCK_TOLERANCE_MS + 1}, now, 60_000)
    assert moved == {"watermark_ms": now - 60_000, "recent": {"k": now}} and why


@pytest.mark.integration
def test_the_real_daemon_pulls_a_future_cursor_back_and_reports_it(tmp_path: Path, codacy: EmulatorProcess) -> None:
    """A cursor written while the clock was a day ahead (set in the state directly: the
    ``state set-cursor`` command refuses a future date): the daemon reads from now - lag,
    says why in its log, and shows the organization failing in /readyz and /metrics."""
    out = tmp_path / "out"
    port = free_port()
    cfg = make_config(
        tmp_path,
        codacy_source(codacy.url, lag_s=0, overlap_s=600, interval_s=3600, initial_lookback_days=3),
        {"file": file_sink(out)},
        metrics={"enabled": True, "listen": f"127.0.0.1:{port}", "source_failing_threshold_s": 0.001},
    )

    async def write_future_cursor() -> None:
        journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3")
        await journal.open()
        try:
            await journal.set_cursor("codacy", "gh/acme", WindowCursor(int(time.time() * 1000) + DAY_MS, {}).dump())
        finally:
            await journal.close()

    asyncio.run(write_future_cursor())
    recent = int(time.time() * 1000) - 5_000
    codacy.control("POST", "entries", [{**codacy_entry(recent), "_org": "gh/acme"}])
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:

        def failing() -> bool:  # each organization is polled in a task of its own: both done
            try:
                orgs = health(port, "/readyz")[1]["sources"]["codacy"]
                return bool(orgs["gh/acme"]["state"] == "failed" and orgs["gl/globex"]["state"] != "polling")
            except (httpx.HTTPError, KeyError):
                return False  # not serving yet, or not polled yet

        wait_until("gh/acme shown failing, gl/globex polled", failing, timeout=60, detail=daemon.log)
        status, body = health(port, "/readyz")
        assert status == 503, body
        acme = body["sources"]["codacy"]["gh/acme"]
        assert acme["state"] == "failed" and "ahead of this machine's clock" in acme["error"]
        assert any("gh/acme" in p for p in body["problems"])
        assert body["sources"]["codacy"]["gl/globex"]["state"] == "ok"
        text = get(f"http://127.0.0.1:{port}/metrics").text
        assert metric(text, "audit_forwarder_source_failing", source="codacy", organization="gh/acme") == 1
        wait_until(
            "the entry recorded after the cursor's real time delivered",
            lambda: any(e["raw"]["timestamp"] == codacy_entry(recent)["timestamp"] for e in read_ndjson(out)),
            timeout=60,
            detail=daemon.log,
        )
        logs = daemon.log()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert "clock step" in logs and "ahead of this machine's clock" in logs
