"""Valid JSON that orjson refuses (issue 18 item 2): a lone surrogate escape, what
``JSON.stringify`` writes for an emoji cut in half, and a number beyond a double. Anyone who
can type into an audited field can put them in a page; a refused page stopped the feed for good.
A raw loopback server answers exactly these bytes; the real source, poller and journal (and
once the real daemon and a file sink) must carry the entry through and move the cursor."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.event import format_time
from forwarder.formats import FORMATS, get_formatter
from forwarder.journal import SqliteJournal
from forwarder.lenient_json import loads
from forwarder.polling import Poller
from forwarder.sources.http_json import HttpJsonSource
from forwarder.sources.http_json_config import HttpJsonConfig
from tests.support.daemon import cli, file_sink_config, read_ndjson
from tests.support.raw_http import json_vendor

ODD = rb'"who": "cut \ud83d", "note": "\udc00 alone, \ud83d\ude00 paired", "size": 1e400, "count": -1e400'


def body(when: datetime) -> bytes:
    """Exactly the vendor's bytes: escapes as written, not as Python would write them."""
    return b'[{"id": "e1", "time": "' + format_time(when).encode() + b'", "action": "user.update", ' + ODD + b"}]"


def settings(url: str) -> dict[str, Any]:
    return {
        "type": "http_json",
        "vendor": "acme",
        "url": f"{url}/audit/{{organization}}",
        "organizations": ["o"],
        "id_field": "id",
        "time_field": "time",
        "mapping": {"action": "action", "actor.name": "who"},
        "initial_lookback_days": 1,
        "lag_s": 0,
        "max_attempts": 1,
    }


def check(event: dict[str, Any]) -> None:
    assert event["id"] == "acme:e1"
    assert event["actor"]["name"] == "cut \ufffd"
    raw = event["raw"]
    assert raw["who"] == "cut \ufffd" and raw["note"] == "\ufffd alone, \U0001f600 paired"
    assert raw["size"] == "1e400" and raw["count"] == "-1e400"  # the original text, not inf (written as null)


def test_orjson_still_refuses_these_bodies() -> None:
    """Otherwise the tests below would prove nothing about the fallback."""
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body(datetime.now(UTC)))
    for not_json in (b"NaN", b"[Infinity]", b"\xff\xfe", b'{"a": "\\ud83d"', b"<html>\xe9</html>", b'[{"a": 1'):
        with pytest.raises(ValueError):
            orjson.loads(not_json)
    for still_refused in (b"\xff\xfe", b'{"a": "\\ud83d"', b"<html>\xe9</html>", b'[{"a": 1'):
        with pytest.raises(ValueError):
            loads(still_refused)  # not JSON in its structure


def test_a_vendor_writing_json_badly_is_read_and_the_repair_noted() -> None:
    """Latin-1 bytes in a name and Python's NaN/Infinity: one user's input in one field must not
    stop the organization's feed; the value keeps what it can (U+FFFD, the constant's text)."""
    notes: list[str] = []
    page = loads(b'[{"who": "Ren\xe9", "score": NaN, "max": Infinity, "min": -Infinity}]', notes)
    assert page == [{"who": "Ren\ufffd", "score": "NaN", "max": "Infinity", "min": "-Infinity"}]
    assert notes == ["bytes that are not UTF-8 were read as U+FFFD"]
    notes.clear()
    assert loads(b"[NaN]", notes) == ["NaN"] and notes == []


async def test_the_entry_reaches_the_journal_and_the_cursor_moves(tmp_path: Path) -> None:
    async with json_vendor(body(datetime.now(UTC) - timedelta(minutes=5))) as url:
        source = HttpJsonSource("odd", HttpJsonConfig.model_validate(settings(url)))
        journal = SqliteJournal(tmp_path / "journal.sqlite3")
        await journal.open()
        try:
            poller = Poller(source, journal, lambda: None)
            assert await poller.poll(), poller.status["o"].error
            cursor = await journal.get_cursor("odd", "o")
            (record,) = await journal.read(0, 10, 1 << 20)
            assert (await journal.stats()).quarantined == {}
        finally:
            await journal.close()
            await source.close()
    assert cursor is not None and cursor["watermark_ms"] > 0
    check(orjson.loads(record.data))
    for name in FORMATS:  # every output format writes it
        assert get_formatter(name)(record)


@pytest.mark.integration
async def test_the_real_daemon_delivers_it_to_a_file_sink(tmp_path: Path) -> None:
    async with json_vendor(body(datetime.now(UTC) - timedelta(minutes=5))) as url:
        cfg = file_sink_config(tmp_path, {"odd": settings(url)})
        result = await asyncio.to_thread(cli, cfg, "once")
    assert result.returncode == 0, result.stderr
    (event,) = read_ndjson(tmp_path / "out")
    check(event)
    journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3")
    await journal.open()
    try:
        assert await journal.get_cursor("odd", "o") is not None, "the cursor moved past the page"
    finally:
        await journal.close()


@pytest.mark.integration
async def test_a_page_in_latin_1_with_nan_reaches_the_file_sink_and_is_warned_of(tmp_path: Path) -> None:
    when = format_time(datetime.now(UTC) - timedelta(minutes=5)).encode()
    page = b'[{"id": "e1", "time": "' + when + b'", "action": "user.update", "who": "Ren\xe9", "score": NaN}]'
    async with json_vendor(page) as url:
        cfg = file_sink_config(tmp_path, {"odd": settings(url)})
        result = await asyncio.to_thread(cli, cfg, "once")
    assert result.returncode == 0, result.stderr
    (event,) = read_ndjson(tmp_path / "out")
    assert event["actor"]["name"] == "Ren\ufffd" and event["raw"]["score"] == "NaN"
    assert "source page not quite JSON" in result.stderr and "not UTF-8" in result.stderr
