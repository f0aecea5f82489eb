"""A receiver that was reached but dropped the connection is not "unreachable": the message
must send the operator to the receiver (or a proxy before it), not to DNS and firewalls, and a
reset must say so rather than end in an empty ``ReadError:``."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from sinks.base import RetryableError
from tests.sinks.test_splunk_hec import make_sink, records
from tests.support.raw_http import raw_http_server


async def hang_up(writer: asyncio.StreamWriter) -> None:
    """Took the whole request, closes without a word."""
    writer.close()


async def reset(writer: asyncio.StreamWriter) -> None:
    """Took the whole request, answers with a TCP reset."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize(("answer", "detail"), [(hang_up, "disconnected"), (reset, "reset")])
async def test_a_receiver_dropping_the_connection_is_named_as_such(answer: object, detail: str) -> None:
    async with raw_http_server(answer) as url:  # type: ignore[arg-type]
        sink = make_sink(url, timeout_s=5)
        try:
            with pytest.raises(RetryableError) as caught:
                await sink.send(records(3))
        finally:
            await sink.close()
    message = str(caught.value)
    assert "closed the connection before answering" in message
    assert "unreachable" not in message
    assert detail in message.lower()
