"""HTTP conventions the sources and the sinks share: what a valid URL is and how much of an
answer is read (retries, backoff and ``Retry-After`` are in ``forwarder.retry``). Kept outside
both folders so that neither side depends on the other's modules."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import httpx
from pydantic import AfterValidator, BaseModel


def _http_url(value: str) -> str:
    """httpx rejects some URLs only when the source's client is built (``https://[::1``) and
    takes one without a scheme until its first request fails: both are said at load instead."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. https://api.example.com")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cleartext_urls(config: BaseModel) -> list[str]:
    """A warning for each ``HttpUrl`` of ``config`` that is ``http://`` to another machine:
    allowed (a proxy on the same network may terminate TLS), but the token and the events
    cross the network readable by anyone on the path, so start-up and ``check`` say so."""
    found = []
    for name, info in type(config).model_fields.items():
        value = getattr(config, name)
        if not isinstance(value, str) or not any(getattr(m, "func", None) is _http_url for m in info.metadata):
            continue
        url = httpx.URL(value)
        if url.scheme == "http" and not _loopback(url.host):
            found.append(
                f"{name} {url.scheme}://{url.host} is plain HTTP to another machine: credentials and events "
                "cross the network unencrypted; use https://"
            )
    return found


async def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a streamed body: an answer is read only for what it says."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)
