"""``HttpFetcher``, the HTTP policy every vendor source shares, against what a broken or hostile
server can send: a garbled ``Retry-After``, an error page built to exhaust the JSON parser, a page
without end, a body trickled a byte at a time. Each must end as a ``SourceError`` (or the
page) within bounded time and memory, never as another exception or a request held for ever.
Real loopback servers where the wire matters (chunking, trickling), ``httpx.MockTransport``
elsewhere.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote, quote_plus

import httpx
import pytest
from structlog.testing import capture_logs

from forwarder.redaction import register_secrets, scrub
from forwarder.retry import parse_retry_after
from forwarder.sources.http import HttpFetcher, MalformedResponse, RetryableHTTPError, SourceError
from tests.support.raw_http import raw_http_server, trickle

SECRET = "s3cret-token-value"


def fetcher(
    client: httpx.AsyncClient,
    max_attempts: int = 2,
    *,
    on_response: Callable[[httpx.Response], Awaitable[None]] | None = None,
    max_body_bytes: int = 64 * 1024 * 1024,
    timeout_s: float | None = None,
) -> HttpFetcher:
    if timeout_s is None:  # as every source builds it: the deadline comes from the client
        return HttpFetcher(client, "Acme", max_attempts, 0.01, 0.02, on_response, max_body_bytes)
    return HttpFetcher(client, "Acme", max_attempts, 0.01, 0.02, on_response, max_body_bytes, timeout_s)


def mock(handler: Callable[[httpx.Request], httpx.Response], timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://vendor.test", timeout=timeout)


@contextmanager
def local_zone(tz: str) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TZ", tz)
    time.tzset()
    try:
        yield
    finally:
        mp.undo()
        time.tzset()


# --- 1. Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["soon", "120s", "in a minute", "Wed, 32 Foo 2015 99:99:99 GMT", "\x00"])
def test_an_unparseable_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-5") == 0.0  # negative: no wait, not a negative one
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past date
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    ahead = format_datetime(datetime.now(UTC) + timedelta(seconds=100), usegmt=True)
    assert 95 <= (parse_retry_after(ahead) or 0) <= 100


def test_a_date_without_zone_is_utc_whatever_the_local_zone() -> None:
    # "-0000" makes parsedate_to_datetime return a naive datetime; read as local time, a
    # machine at UTC+9 would see it 9 hours in the past and not wait at all
    naive = (datetime.now(UTC) + timedelta(seconds=100)).strftime("%a, %d %b %Y %H:%M:%S -0000")
    with local_zone("Etc/GMT-9"):
        assert 95 <= (parse_retry_after(naive) or 0) <= 100


async def test_a_garbled_retry_after_is_retried_with_normal_backoff() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503, headers={"Retry-After": "in a minute"})
        return httpx.Response(200, json={"entries": []})

    async with mock(handler) as client:
        assert await fetcher(client, max_attempts=3).get_json("acme", "/audit") == {"entries": []}
    assert len(calls) == 2


async def test_retry_after_still_reaches_the_backoff() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "0.15"})

    async with mock(handler) as client:
        with capture_logs() as logs, pytest.raises(RetryableHTTPError, match="429 Too Many Requests"):
            await fetcher(client).get_json("acme", "/audit")
    waits = [e["wait_s"] for e in logs if e["event"] == "source request retried"]
    assert waits and all(wait >= 0.15 for wait in waits)  # above the 0.02 s backoff, under its 0.2 s cap


# --- 2. hostile error bodies ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"message":' * 100_000, b'{"message": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"\xff\xfe<html>"],
    ids=["open-brackets", "nested-objects", "nested-message", "not-utf8"],
)
async def test_a_hostile_error_page_leaves_the_status_message(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=body)

    async with mock(handler) as client:
        with pytest.raises(RetryableHTTPError) as caught:
            await fetcher(client).get_json("acme", "/audit")
    assert str(caught.value).startswith("Acme answered 502 Bad Gateway for organization 'acme'")


async def test_the_vendor_message_is_still_quoted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "token expired"})

    async with mock(handler) as client:
        with pytest.raises(SourceError) as caught:
            await fetcher(client).get_json("acme", "/audit")
    assert str(caught.value) == (
        "Acme answered 401 Unauthorized for organization 'acme': the credentials were refused; "
        "check the source's token (vendor says: token expired)"
    )


async def test_an_endless_error_page_is_not_read_to_its_end() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b'{"message": "' + b"x" * 65536
            await asyncio.sleep(0)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=endless())

    async with mock(handler) as client, asyncio.timeout(10):
        with pytest.raises(RetryableHTTPError, match="500 Internal Server Error"):
            await fetcher(client).get_json("acme", "/audit")


# --- 3. body-size limit ----------------------------------------------------------------------


async def test_an_endless_chunked_page_stops_at_the_limit() -> None:
    sent = [0]

    async def endless_chunks(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" + b"1," * 32767 + b"1"
        while True:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent[0] += len(chunk)
            await writer.drain()

    async with raw_http_server(endless_chunks) as url, httpx.AsyncClient(base_url=url, timeout=5) as client:
        async with asyncio.timeout(20):
            with pytest.raises(MalformedResponse) as caught:
                await fetcher(client, max_body_bytes=1_000_000).get_json("acme", "/audit")
    assert "over the 1000000-byte limit; lower the window or page size" in str(caught.value)
    assert sent[0] < 50_000_000  # the client hung up, not ran out of memory


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    async def promise_400mb(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400000000\r\n\r\n[")
        await writer.drain()
        await asyncio.sleep(30)  # the rest never comes: only the header can end this quickly

    async with raw_http_server(promise_400mb) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        with pytest.raises(MalformedResponse) as caught:  # not a ReadTimeout: the header alone decided
            await fetcher(client, max_attempts=1, max_body_bytes=1_000_000).get_json("acme", "/audit")
    assert str(caught.value) == (
        "Acme sent a 400000000-byte page for organization 'acme', over the 1000000-byte limit; "
        "lower the window or page size"
    )


async def test_a_page_at_the_limit_still_passes() -> None:
    body = b'["' + b"x" * 996 + b'"]'
    assert len(body) == 1000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with mock(handler) as client:
        assert await fetcher(client, max_body_bytes=1000).get_json("acme", "/audit") == ["x" * 996]
        with pytest.raises(MalformedResponse, match="over the 999-byte limit"):
            await fetcher(client, max_body_bytes=999).get_json("acme", "/audit")


# --- 4. whole-request deadline ---------------------------------------------------------------


async def test_a_trickled_body_times_out_like_any_other_timeout() -> None:
    # the sources build the client with timeout=timeout_s and pass no deadline: it comes from there
    async with raw_http_server(trickle) as url, httpx.AsyncClient(base_url=url, timeout=1) as client:
        with capture_logs() as logs, pytest.raises(SourceError) as caught:
            async with asyncio.timeout(15):
                await fetcher(client).get_json("acme", f"/audit?token={SECRET}", {"apikey": SECRET})
    why = "ReadTimeout: no complete answer within the 1s request deadline"
    assert str(caught.value) == f"Acme could not be reached for organization 'acme' after 2 attempts: {why}"
    retried = [e for e in logs if e["event"] == "source request retried"]
    assert [e["error"] for e in retried] == [why]
    assert SECRET not in repr(logs) + str(caught.value)


async def test_an_unreachable_vendor_is_named_with_the_reason_but_never_the_path() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        with capture_logs() as logs, pytest.raises(SourceError) as caught:
            await fetcher(client).get_json("acme", f"/audit?token={SECRET}", {"apikey": SECRET})
    message = str(caught.value)
    assert message.startswith("Acme could not be reached for organization 'acme' after 2 attempts: ConnectError")
    assert "[Errno 111]" in message and message.endswith(f"(http://127.0.0.1:{port})")
    assert SECRET not in repr(logs) + message and "/audit" not in message


async def test_an_explicit_deadline_overrides_the_clients() -> None:
    async with raw_http_server(trickle) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        with pytest.raises(SourceError, match=r"after 1 attempts: ReadTimeout: no complete answer within the 0\.5s"):
            async with asyncio.timeout(10):  # the client's own 30 s would end here as a TimeoutError
                await fetcher(client, max_attempts=1, timeout_s=0.5).get_json("acme", "/audit")


async def test_a_slow_hook_is_not_cut_by_the_deadline() -> None:
    # ConfigCat's throttle sleeps in on_response, possibly longer than timeout_s
    async def throttle(response: httpx.Response) -> None:
        await asyncio.sleep(0.6)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[1])

    async with mock(handler, timeout=0.3) as client:
        assert await fetcher(client, max_attempts=1, on_response=throttle).get_json("acme", "/audit") == [1]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with the request itself, which is no status line: h11 quotes it in its error."""
    writer.write(await reader.readuntil(b"\r\n\r\n"))
    await writer.drain()
    writer.close()


async def test_a_protocol_error_never_quotes_a_query_token_in_any_encoding() -> None:
    token = "abc+def/ghi=="  # a URL writes it abc%2Bdef%2Fghi%3D%3D, which scrubbing must know too
    register_secrets({token})
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            with capture_logs() as logs, pytest.raises(SourceError) as caught:
                await fetcher(client).get_json("acme", "/audit", {"api_key": token})
    finally:
        server.close()
    message = str(caught.value)
    assert message.startswith("Acme could not be reached") and "RemoteProtocolError" in message
    assert "abc" not in message + repr(logs)
    echoed = f"GET /audit?api_key={quote(token, safe='')} and {quote_plus(token)}"
    assert scrub(echoed) == "GET /audit?api_key=*** and ***"
