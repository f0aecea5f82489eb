"""Many organizations of one source polled at once through its one client, against a real
loopback server: waiting for one of the client's connections is the forwarder's own queue, not
the vendor's slowness, and must not count against a request's ``timeout_s``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from forwarder.sources.http import MAX_CONNECTIONS, HttpFetcher, make_client
from tests.support.raw_http import raw_http_server

ANSWER_S = 0.5  # how long the vendor takes to answer each request
TIMEOUT_S = 1.2  # the source's timeout_s: well above one answer, below three in a row
ORGANIZATIONS = 3 * MAX_CONNECTIONS  # the last hundred waited two answers for a connection


async def slow_answer(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(ANSWER_S)
    body = b'{"data": []}'
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()


async def test_requests_waiting_for_a_connection_do_not_time_out() -> None:
    async with raw_http_server(slow_answer) as url:
        client = make_client(cast(Any, SimpleNamespace(timeout_s=TIMEOUT_S)), url)
        async with client:
            fetcher = HttpFetcher(client, "acme", 1, 0.01, 0.01)  # one attempt: a timeout fails at once
            answers = await asyncio.gather(
                *(fetcher.get_json(f"org{i}", "/audit") for i in range(ORGANIZATIONS)), return_exceptions=True
            )
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, f"{len(failed)} of {ORGANIZATIONS} failed, e.g. {failed[0]!r}"
    assert answers == [{"data": []}] * ORGANIZATIONS
