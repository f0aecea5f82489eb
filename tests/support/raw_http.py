"""A raw HTTP/1.1 listener on 127.0.0.1 whose answer a test writes byte by byte: the answers
no well-behaved server gives (a trickle, a body without end, a proxy's page)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_http_server(answer: Answer) -> AsyncIterator[str]:
    """Reads each request (head, and a body of its Content-Length), then lets ``answer`` write."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in tasks:  # an endless answer outlives its client otherwise
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def trickle(writer: asyncio.StreamWriter) -> None:
    """A 200 whose chunked body comes a byte at a time, each well within a per-read timeout."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"1\r\n \r\n")
        await writer.drain()
        await asyncio.sleep(0.2)


@asynccontextmanager
async def json_vendor(body: bytes) -> AsyncIterator[str]:
    """Answers every request with ``body`` as it is, a 200 of JSON: bytes no serializer of ours
    wrote (escapes as the vendor wrote them, values we would not produce)."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    async with raw_http_server(answer) as url:
        yield url
