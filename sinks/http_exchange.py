"""One request to an HTTP receiver, as the HTTP sinks (Splunk HEC, Sentinel) make it.

What can go wrong on the way is the same for every HTTP receiver, so it is said once: a CA
file that cannot be used stops the sink; no complete answer within ``timeout_s``, a request
httpx refuses to send, or a receiver out of reach is retryable, and no message quotes the
request's headers (they hold the token). What the answer's status and body mean is each
sink's own business; this module only hands it over, read to at most ``ANSWER_BYTES``.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from forwarder.http_shared import read_at_most
from forwarder.retry import parse_retry_after
from sinks.base import FatalSinkError, RetryableError

ANSWER_BYTES = 64 * 1024  # an answer is read for its status, code and message only


@dataclass(slots=True)
class Exchange:
    status: int
    reason: str
    headers: httpx.Headers
    payload: dict[str, Any]  # the answer's JSON object; {} when it is not one
    retry_after: float | None


async def tls_verify(sink: str, verify: bool, ca_file: str | None) -> ssl.SSLContext | bool:
    """What httpx verifies the receiver with. Loading a CA bundle takes ~60 ms: not on the loop."""
    if not (verify and ca_file):
        return verify
    try:
        return await asyncio.to_thread(ssl.create_default_context, cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:  # a missing or bad file: retrying cannot help
        raise FatalSinkError(f"sink {sink}: cannot use ca_file {ca_file}: {exc}") from None


async def exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    sink: str,
    what: str,
    timeout_s: float,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Exchange:
    """``what`` names the receiver in messages ("HEC", "Entra ID")."""
    try:
        # httpx's timeout is per read: a receiver trickling its answer, or sending one without
        # end, would hold the sink for ever or fill the memory
        async with asyncio.timeout(timeout_s):
            async with client.stream(method, url, content=content, headers=headers, params=params) as resp:
                body = await read_at_most(resp, ANSWER_BYTES)
    except TimeoutError:
        raise RetryableError(f"sink {sink}: {what} gave no complete answer within timeout_s={timeout_s:g}s") from None
    except httpx.LocalProtocolError as exc:  # our own request is malformed; its text may quote our headers
        raise RetryableError(f"sink {sink}: request to {what} not sent: {type(exc).__name__}") from None
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError, httpx.UnsupportedProtocol) as exc:
        raise RetryableError(f"sink {sink}: {what} unreachable: {type(exc).__name__}: {_why(exc)}") from None
    except httpx.TransportError as exc:
        # it was reached and took the request: "unreachable" sent operators to DNS and firewalls
        # when the receiver, or a proxy before it, dropped or reset the connection
        raise RetryableError(
            f"sink {sink}: {what} closed the connection before answering: {type(exc).__name__}: {_why(exc)}"
        ) from None
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        parsed = {}
    payload: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    return Exchange(resp.status_code, resp.reason_phrase, resp.headers, payload, retry_after)


def _why(exc: BaseException) -> str:
    """httpx's text, or the socket error under it (a reset reads as a ``ReadError`` with no text)."""
    seen: BaseException | None = exc
    for _ in range(5):  # httpx's error, httpcore's, then the socket's
        if seen is None:
            break
        if str(seen):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return "no detail given"
