"""A hostile tester's answers, served byte for byte by a raw loopback server to the real daemon,
with a healthy source beside the hostile one: the daemon must say what happened (naming the
vendor and the organization), keep serving the healthy source, deliver every good entry with
``raw`` as the vendor sent it, and quarantine a poisoned entry instead of holding the cursor.
Each case is one that failed before its fix: an entry nested deeper than any parser reads
(its page was "not JSON" for good), a gzip body that does not decompress (a traceback, never
retried), a leap second (quarantined), an entry outside the window asked for (skipped silently).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from forwarder import lenient_json
from forwarder.emulators import EMULATORS
from forwarder.event import format_time
from forwarder.sources.http import HttpFetcher, RetryableHTTPError, SourceError
from tests.support.daemon import cli, read_ndjson, write_config
from tests.support.raw_http import raw_http_server

pytestmark = pytest.mark.integration

ORG = "acme"


def answer_of(status: int, body: bytes, headers: bytes = b"Content-Type: application/json\r\n") -> bytes:
    return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        status,
        headers,
        len(body),
        body,
    )


@asynccontextmanager
async def vendor(answer: bytes, requests: list[int] | None = None) -> AsyncIterator[str]:
    """Answers every request with ``answer``; counts them in ``requests``."""

    async def write(writer: asyncio.StreamWriter) -> None:
        if requests is not None:
            requests.append(1)
        writer.write(answer)
        await writer.drain()

    async with raw_http_server(write) as url:
        yield url


def source(url: str, vendor_name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "http_json",
        "vendor": vendor_name,
        "url": f"{url}/audit/{{organization}}",
        "organizations": [ORG],
        "id_field": "id",
        "time_field": "time",
        "mapping": {"action": "action"},
        "initial_lookback_days": 1,
        "lag_s": 0,
        "max_attempts": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.02,
        **overrides,
    }


def minutes_ago(minutes: int) -> str:
    return format_time(datetime.now(UTC) - timedelta(minutes=minutes))


HEALTHY = b'[{"id": "h1", "time": "%s", "action": "fine"}]' % minutes_ago(5).encode()


def beside_a_healthy_source(tmp_path: Path, hostile: dict[str, Any], healthy_url: str) -> Path:
    """The config of a hostile source and a healthy one, both into one file sink."""
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "sources": {"hostile": hostile, "healthy": source(healthy_url, "healthy")},
            "sinks": {
                "out": {"type": "file", "path": str(tmp_path / "out" / "{source}.ndjson"), "batch_max_age_s": 0.05}
            },
        },
    )


async def once_beside_a_healthy_source(
    tmp_path: Path, hostile: bytes, requests: list[int] | None = None, **overrides: Any
) -> tuple[int, str, list[dict[str, Any]], str]:
    """``once`` with the hostile vendor and a healthy one: its exit code, its log, the events
    delivered to the file sink and what ``state show`` says."""
    async with vendor(hostile, requests) as bad, vendor(answer_of(200, HEALTHY)) as good:
        config = beside_a_healthy_source(tmp_path, source(bad, "hostile", **overrides), good)
        result = await asyncio.to_thread(cli, config, "once")
    shown = await asyncio.to_thread(cli, config, "state", "show")
    return result.returncode, result.stderr, read_ndjson(tmp_path / "out"), shown.stdout


def by_vendor(events: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    return {event["id"]: event for event in events if event["vendor"] == name}


def quarantined(shown: str, source_name: str) -> int:
    """The quarantined column of ``state show``'s cursor line for ``source_name``."""
    header = next(line for line in shown.splitlines() if line.startswith("source\t")).split("\t")
    row = next(line for line in shown.splitlines() if line.startswith(f"{source_name}\t{ORG}\t")).split("\t")
    return int(row[header.index("quarantined")])


def deep_value(levels: int) -> bytes:
    return b'{"a": [' * levels + b"1" + b"]}" * levels


async def test_an_entry_nested_deeper_than_any_parser_reads_is_quarantined_and_its_page_goes_on(
    tmp_path: Path,
) -> None:
    """Valid JSON nested 2,000 levels deep: orjson stops at 1,024 and the standard parser at
    the recursion limit, so the page was refused as "not JSON" at every poll, for good."""
    good = (
        b'{"id": "g1", "time": "%s", "action": "x", "note": "\\u00e9 \\ud83d\\ude00 \\u05e9"}' % minutes_ago(6).encode()
    )
    poisoned = b'{"id": "p1", "time": "%s", "action": "x", "deep": %s}' % (minutes_ago(6).encode(), deep_value(2000))
    page = b"[" + good + b"," + poisoned + b"]"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(page)  # otherwise the fallback is not what this proves

    code, log, events, shown = await once_beside_a_healthy_source(tmp_path, answer_of(200, page))

    assert code == 0, log
    delivered = by_vendor(events, "hostile")
    assert list(delivered) == ["hostile:g1"], log
    assert delivered["hostile:g1"]["raw"] == orjson.loads(good)
    assert list(by_vendor(events, "healthy")) == ["healthy:h1"]
    assert quarantined(shown, "hostile") == 1, shown
    assert "entries quarantined" in log and '"source":"hostile"' in log


async def test_a_gzip_body_that_does_not_decompress_is_retried_and_named(tmp_path: Path) -> None:
    """httpx's DecodingError is no TransportError: it escaped the retry policy and the poller
    logged a traceback ("source failed unexpectedly") naming neither vendor nor remedy."""
    requests: list[int] = []
    corrupt = answer_of(
        200, b"\x1f\x8b\x08\x00 not gzip at all", b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
    )

    code, log, events, _ = await once_beside_a_healthy_source(tmp_path, corrupt, requests)

    assert code == 1, log
    assert "Traceback" not in log and "failed unexpectedly" not in log, log
    failure = next(orjson.loads(line) for line in log.splitlines() if '"poll failed' in line)
    assert failure["source"] == "hostile" and failure["organization"] == ORG
    assert failure["error"].startswith("hostile sent a body that does not decode"), failure
    assert f"organization {ORG!r}" in failure["error"]
    assert len(requests) == 3, "retried up to max_attempts like any other garbled answer"
    assert list(by_vendor(events, "healthy")) == ["healthy:h1"]


async def test_a_leap_second_entry_reaches_the_sink_with_its_raw_time(tmp_path: Path) -> None:
    """RFC 3339 allows second 60; datetime does not, and the entry was quarantined."""
    base = datetime.now(UTC) - timedelta(minutes=5)
    leap = base.strftime("%Y-%m-%dT%H:%M:60Z")
    page = b'[{"id": "l1", "time": "%s", "action": "x"}]' % leap.encode()

    code, log, events, shown = await once_beside_a_healthy_source(tmp_path, answer_of(200, page))

    assert code == 0, log
    (event,) = by_vendor(events, "hostile").values()
    assert event["raw"]["time"] == leap
    assert event["time"] == format_time(base.replace(second=59, microsecond=0) + timedelta(seconds=1))
    assert quarantined(shown, "hostile") == 0, shown


async def test_an_entry_outside_the_window_asked_for_is_said(tmp_path: Path) -> None:
    """With from_param/to_param sent, an entry whose time lies far outside the window was
    skipped without a word, for good."""
    page = (
        b'[{"id": "old", "time": "0001-01-01T00:00:00Z", "action": "x"}, {"id": "ok", "time": "%s", "action": "x"}]'
        % (minutes_ago(5).encode())
    )

    code, log, events, _ = await once_beside_a_healthy_source(
        tmp_path, answer_of(200, page), from_param="since", to_param="until"
    )

    assert code == 0, log
    assert list(by_vendor(events, "hostile")) == ["hostile:ok"]
    warning = next(orjson.loads(line) for line in log.splitlines() if "outside the window" in line)
    assert warning["source"] == "hostile" and warning["organization"] == ORG and warning["entries"] >= 1
    assert "time_field" in warning["event"]


Serve = Callable[[asyncio.StreamWriter], Awaitable[None]]


@pytest.mark.parametrize(
    ("status", "headers", "says"),
    [
        (429, b"Retry-After: 999999\r\n", "rate limit was reached"),
        (429, b"Retry-After: Wed, 21 Oct 2099 07:28:00 GMT\r\n", "rate limit was reached"),
        (503, b"", "service failed; it is retried"),
        (500, b"", "service failed; it is retried"),
    ],
)
async def test_a_refusal_that_retrying_may_cure_says_so(status: int, headers: bytes, says: str) -> None:
    """A 429 or 5xx read "the vendor reported an error": nothing an operator could act on."""
    async with vendor(answer_of(status, b"<html>busy</html>", b"Content-Type: text/html\r\n" + headers)) as url:
        async with httpx.AsyncClient(timeout=5) as client:
            fetcher = HttpFetcher(client, "acme", 2, 0.01, 0.01)
            with pytest.raises(RetryableHTTPError) as refused:
                await fetcher.get_json(ORG, f"{url}/audit")
    message = str(refused.value)
    assert says in message and f"organization {ORG!r}" in message and message.startswith(f"acme answered {status}")


async def test_a_content_length_that_lies_is_named_as_a_cut_answer() -> None:
    """A body shorter than its Content-Length read "RemoteProtocolError" and nothing more."""
    short = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n"
        b'Connection: close\r\n\r\n[{"id": 1}]'
    )
    async with vendor(short) as url:
        async with httpx.AsyncClient(timeout=5) as client:
            fetcher = HttpFetcher(client, "acme", 2, 0.01, 0.01)
            with pytest.raises(SourceError) as refused:
                await fetcher.get_json(ORG, f"{url}/audit")
    message = str(refused.value)
    assert "RemoteProtocolError: the connection closed before the whole answer came" in message, message
    assert f"organization {ORG!r}" in message and "[{" not in message


VENDORS = ["codacy", "configcat", "codescoring", "codestax"]


async def vendor_once(tmp_path: Path, name: str, page: bytes) -> tuple[int, str, list[dict[str, Any]], str]:
    """``once`` with the dedicated source of ``name`` reading ``page`` at every request, and a
    healthy ``http_json`` source beside it."""
    emulator = EMULATORS[name]()
    async with vendor(answer_of(200, page)) as bad, vendor(answer_of(200, HEALTHY)) as good:
        settings = {
            **emulator.source_config(bad),
            "initial_lookback_days": 1,
            "lag_s": 0,
            "max_attempts": 1,
        }
        config = beside_a_healthy_source(tmp_path, settings, good)
        result = await asyncio.to_thread(cli, config, "once")
    shown = await asyncio.to_thread(cli, config, "state", "show")
    return result.returncode, result.stderr, read_ndjson(tmp_path / "out"), shown.stdout


@pytest.mark.parametrize("name", VENDORS)
async def test_an_entry_that_is_not_an_object_is_quarantined_and_its_neighbours_delivered(
    tmp_path: Path, name: str
) -> None:
    """One ``null`` amid the vendor's entries refused the whole page ("sent a NoneType where an
    audit entry belongs"), at every poll: the organization's cursor never moved again."""
    (entry,) = EMULATORS[name]().generate(1)
    entry = {k: v for k, v in entry.items() if not k.startswith("_")}
    page = orjson.dumps([entry, None, "poison", [1]])

    code, log, events, shown = await vendor_once(tmp_path, name, page)

    assert code == 0, log
    delivered = [event for event in events if event["source"] == "hostile"]
    assert [event["raw"] for event in delivered] == [entry], log
    assert list(by_vendor(events, "healthy")) == ["healthy:h1"]
    row = next(line for line in shown.splitlines() if line.startswith("hostile\t")).split("\t")
    header = next(line for line in shown.splitlines() if line.startswith("source\t")).split("\t")
    # each window asked for gets the same answer here: the three come again in each
    assert int(row[header.index("quarantined")]) % 3 == 0 < int(row[header.index("quarantined")]), shown
    assert "audit entry is an object, not " in log


@pytest.mark.parametrize("style", ["cursor", "next_link_body"])
async def test_paging_that_cycles_between_two_pages_ends_the_walk_at_once(tmp_path: Path, style: str) -> None:
    """A, B, A, B...: only a token repeating the page just read was caught, so each poll read
    up to max_pages answers (10,000 by default) and then failed asking for a higher limit;
    the cursor never moved."""
    requests: list[int] = []
    when = minutes_ago(5).encode()

    async def cycle(writer: asyncio.StreamWriter) -> None:
        requests.append(1)
        name = b"A" if len(requests) % 2 else b"B"
        nxt = name if style == "cursor" else b"/audit/acme?page=" + name
        body = b'{"next": "%s", "data": [{"id": "e%s", "time": "%s", "action": "x"}]}' % (nxt, name, when)
        writer.write(answer_of(200, body))
        await writer.drain()

    async with raw_http_server(cycle) as url, vendor(answer_of(200, HEALTHY)) as good:
        looping = source(url, "hostile", records_path="data")
        looping["pagination"] = {"style": style, "next_path": "next", "max_pages": 50}
        config = beside_a_healthy_source(tmp_path, looping, good)
        result = await asyncio.to_thread(cli, config, "once")

    assert result.returncode == 0, result.stderr
    assert len(requests) == 3, "the answer whose next leads back to an earlier page is the last read"
    events = read_ndjson(tmp_path / "out")
    assert sorted(by_vendor(events, "hostile")) == ["hostile:eA", "hostile:eB"]
    assert list(by_vendor(events, "healthy")) == ["healthy:h1"]
    warning = next(orjson.loads(line) for line in result.stderr.splitlines() if "already read" in line)
    assert warning["organization"] == ORG and warning["event"].startswith("hostile paging came back")


@pytest.mark.parametrize("retry_after", [b"999999", b"Wed, 21 Oct 2099 07:28:00 GMT"])
async def test_a_retry_after_longer_than_a_poll_waits_gives_the_poll_up_at_once(
    tmp_path: Path, retry_after: bytes
) -> None:
    """With the default backoff (max_attempts 6, backoff_max_s 60) each retry waited the 600 s
    cap: ``once``, and every organization of the source, was held for 50 minutes, at every
    cycle, by a vendor (or a proxy) asking for 11 days."""
    requests: list[int] = []
    refused = answer_of(
        429, b'{"message": "slow down"}', b"Content-Type: application/json\r\nRetry-After: %s\r\n" % retry_after
    )

    code, log, events, _ = await once_beside_a_healthy_source(
        tmp_path, refused, requests, max_attempts=6, backoff_initial_s=1, backoff_max_s=60
    )

    assert code == 1, log
    assert len(requests) == 1
    failure = next(orjson.loads(line) for line in log.splitlines() if '"poll failed' in line)
    assert failure["source"] == "hostile" and failure["organization"] == ORG
    assert (
        "rate limit was reached" in failure["error"]
        and "this poll gives up and the next one asks again" in failure["error"]
    )
    assert "(vendor says: slow down)" in failure["error"]
    assert list(by_vendor(events, "healthy")) == ["healthy:h1"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "answered 200 with an empty body"),
        (b"<html><body>Sign in</body></html>", "answered 200 with a body that is not JSON (text/html, 33 bytes)"),
    ],
)
async def test_a_page_that_is_not_json_says_what_came_and_what_to_check(body: bytes, says: str) -> None:
    """An empty 200 read "a body that is not JSON", and neither said what to look at."""
    async with vendor(answer_of(200, body, b"Content-Type: text/html\r\n")) as url:
        async with httpx.AsyncClient(timeout=5) as client:
            with pytest.raises(SourceError) as refused:
                await HttpFetcher(client, "acme", 1, 0.01, 0.01).get_json(ORG, f"{url}/audit")
    message = str(refused.value)
    assert message.startswith(f"acme {says} for organization {ORG!r}"), message
    assert "check the source's URL" in message and "the cursor stays where it was" in message


async def test_a_page_only_the_lenient_parser_reads_is_read_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard library's parser takes seconds over a large page (and the depth cut more):
    on the loop, one hostile page held every other source and sink that long."""
    threads: list[int] = []
    read = lenient_json.loads

    def spy(body: bytes, notes: list[str] | None = None) -> Any:
        threads.append(threading.get_ident())
        return read(body, notes)

    monkeypatch.setattr(lenient_json, "loads", spy)
    page = b'[{"id": "s", "note": "cut \\ud83d"}]'
    async with vendor(answer_of(200, page)) as url:
        async with httpx.AsyncClient(timeout=5) as client:
            got = await HttpFetcher(client, "acme", 1, 0.01, 0.01).get_json(ORG, f"{url}/audit")
    assert got == [{"id": "s", "note": "cut \ufffd"}]
    assert threads and threading.get_ident() not in threads


async def test_codescoring_says_when_it_leaves_an_entry_dated_after_now_for_later(tmp_path: Path) -> None:
    """An entry dated ahead (a server writing local time without its offset, a wrong clock) was
    left for a later poll without a word: hours, or for ever when dated in 2099."""
    (entry,) = EMULATORS["codescoring"]().generate(1)
    entry = {k: v for k, v in entry.items() if not k.startswith("_")}
    ahead = {**entry, "id": entry["id"] + 1, "created_at": "2099-01-01T00:00:00+03:00"}

    code, log, events, _ = await vendor_once(tmp_path, "codescoring", orjson.dumps([ahead, entry]))

    assert code == 0, log
    assert [event["raw"] for event in events if event["source"] == "hostile"] == [entry]
    warning = next(orjson.loads(line) for line in log.splitlines() if "dated after now" in line)
    assert warning["installation"] == "default" and warning["entries"] == 1
    assert warning["latest"] == "2098-12-31T21:00:00.000Z"
