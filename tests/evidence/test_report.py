"""`report` after a real collection (`once` from the Codacy emulator), a recorded `verify` and
`reconcile`, and a stream with a gap, a quarantined entry, a dead letter and a sink behind: the
three formats say each; the HTML is one self-contained file that Chromium renders."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from PIL import Image, ImageStat

from forwarder.event import format_ms, make_event
from forwarder.journal import SqliteJournal
from forwarder.polling import Poller
from forwarder.sources.base import Page
from forwarder.sources.gaps import gap_event
from tests.support.config import file_sink, make_config
from tests.support.daemon import cli
from tests.support.emulators import running
from tests.support.vendors import VENDORS

DAY_MS = 86_400_000
NOW = int(time.time() * 1000)
GAP = (NOW - 2 * DAY_MS - 6 * 3_600_000, NOW - 2 * DAY_MS)


class StubSource:
    """One page: three entries over the last days, one that cannot be normalized, a gap event."""

    name = "stub"

    def organizations(self) -> list[str]:
        return ["acme"]

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        gap = gap_event(vendor="stub", source="stub", organization=organization, from_ms=GAP[0], to_ms=GAP[1])
        yield Page([(i, f"s:{i}") for i in range(3)] + [("bad", "s:bad")], {"n": 3}, [gap])

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        if raw == "bad":
            raise ValueError("no timestamp in the entry")
        return make_event(
            id=key,
            time=format_ms(NOW - raw * DAY_MS - 3_600_000),
            observed_time=format_ms(NOW),
            vendor="stub",
            source="stub",
            organization=organization,
            action="user.login",
            activity="logon",
            category="authentication",
            outcome="success",
            raw={"n": raw},
        )


async def add_stub_stream(state: Path) -> None:
    journal = SqliteJournal(state / "journal.sqlite3")
    await journal.open()
    try:
        assert await Poller(StubSource(), journal, lambda: None).poll()  # type: ignore[arg-type]
        head = journal.head
        records = await journal.read(await journal.offset("out"), 100, 1 << 20)
        dead = [r for r in records if r.event_id == "s:1"]
        await journal.commit("out", head, [(dead[0], "HTTP 400: rejected by the receiver")])
    finally:
        await journal.close()


def test_report_in_three_formats_and_the_html_renders(tmp_path: Path) -> None:
    emulator = running("codacy", entries=12, options=VENDORS["codacy"].options)
    try:
        sinks = {"out": file_sink(tmp_path / "out"), "archive": file_sink(tmp_path / "archive")}
        cfg = make_config(tmp_path, {"codacy": VENDORS["codacy"].source(emulator.url)}, sinks)
        assert cli(cfg, "once", timeout=180).returncode == 0
        period = ("--from", format_ms(NOW - 4 * DAY_MS), "--to", format_ms(NOW + DAY_MS))
        assert cli(cfg, "reconcile", "--source", "codacy", *period).returncode == 0
    finally:
        emulator.stop()
    exports = sorted(str(p) for p in (tmp_path / "out").rglob("*.ndjson"))
    verified = cli(cfg, "verify", "--record", "events", *exports, "--from-seq", "1")
    assert verified.returncode == 0, verified.stderr
    asyncio.run(add_stub_stream(tmp_path / "state"))

    data = orjson.loads(cli(cfg, "report", *period, "--format", "json").stdout)
    streams = {f"{s['source']}/{s['organization']}": s for s in data["streams"]}
    assert sorted(streams) == ["codacy/gh/acme", "codacy/gl/globex", "stub/acme"]
    for name in ("codacy/gh/acme", "codacy/gl/globex"):
        s = streams[name]
        assert s["events"] == 12 and sum(s["per_day"].values()) == 12 and s["gaps"] == []
        assert s["delivered"]["out"]["confirmed"] == s["delivered"]["archive"]["confirmed"] == 12
        assert s["last_reconcile"]["ok"] and s["last_reconcile"]["summary"]["vendor_entries"] == 12
        assert s["chain"]["first_seq"] == 1 and s["chain"]["last_seq"] == s["chain"]["head_seq"] == 12
    stub = streams["stub/acme"]
    assert stub["events"] == 4 and stub["gap_events"] == 1  # three entries and the gap event
    (gap,) = stub["gaps"]
    assert (gap["from"], gap["to"]) == (format_ms(GAP[0]), format_ms(GAP[1])) and "were lost" in gap["reason"]
    assert stub["quarantined"] == {"count": 1, "reasons": {"ValueError: no timestamp in the entry": 1}}
    assert stub["dead_letters"] == [
        {
            "sink": "out",
            "id": "s:1",
            "time": format_ms(NOW - DAY_MS - 3_600_000),
            "reason": "HTTP 400: rejected by the receiver",
        }
    ]
    assert stub["delivered"]["out"] == {"confirmed": 3, "dead_lettered": 1, "not_confirmed": 0, "not_sent": 0}
    assert stub["delivered"]["archive"]["not_confirmed"] == 4 and stub["last_reconcile"] is None
    runs = {(r["kind"], r["ok"]) for r in data["runs"]}
    assert runs == {("verify", True), ("reconcile", True)}

    markdown = cli(cfg, "report", *period, "--output", str(tmp_path / "report.md"))
    assert markdown.returncode == 0, markdown.stderr
    md = (tmp_path / "report.md").read_text()
    assert "## stub / acme" in md and "| 4 | 1 | 1 | 1 |" in md and "HTTP 400: rejected by the receiver" in md
    assert "| verify | events " in md and "were lost" in md

    # a period before anything was collected: every stream is listed, with nothing in it (a feed
    # that stopped must show as one, not vanish from the document)
    before = ("--from", format_ms(NOW - 400 * DAY_MS), "--to", format_ms(NOW - 300 * DAY_MS))
    quiet = orjson.loads(cli(cfg, "report", *before, "--format", "json").stdout)["streams"]
    assert sorted(f"{s['source']}/{s['organization']}" for s in quiet) == sorted(streams)
    assert all(s["events"] == 0 and s["first_time"] is None and s["chain"]["head_seq"] > 0 for s in quiet)
    quiet_md = cli(cfg, "report", *before, "--format", "markdown").stdout
    assert quiet_md.count("0 (none in the period)") == 3 and "None" not in quiet_md

    html_path = tmp_path / "report.html"
    assert cli(cfg, "report", *period, "--output", str(html_path)).returncode == 0
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "@media print" in page
    assert not re.search(r"(?i)(https?:|//[a-z0-9]|<script|<link|@import|url\()", page), "must need nothing outside"
    assert page.count("<polyline") == 3 and "gap</text>" in page and "HTTP 400: rejected by the receiver" in page

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    png = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            f"file://{html_path}",
        ],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert png.exists() and png.stat().st_size > 10_000
    with Image.open(png) as image:
        assert image.size == (1280, 2000)
        spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert spread > 10, "the screenshot is blank"
