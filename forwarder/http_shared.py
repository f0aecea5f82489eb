"""HTTP conventions the sources and the sinks share: what a valid URL is and how much of an
answer is read (retries, backoff and ``Retry-After`` are in ``forwarder.retry``). Kept outside
both folders so that neither side depends on the other's modules."""

from __future__ import annotations

import ipaddress
import typing
from typing import Annotated, Any

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


def _is_http_url(metadata: list[Any], annotation: Any) -> bool:
    """``HttpUrl``, or an optional one (its validator is then inside the union's member)."""
    if any(getattr(m, "func", None) is _http_url for m in metadata):
        return True
    return any(_http_url_member(arg) for arg in typing.get_args(annotation))


def _http_url_member(arg: Any) -> bool:
    return any(getattr(m, "func", None) is _http_url for m in typing.get_args(arg)[1:])


def cleartext_urls(config: BaseModel, prefix: str = "") -> list[str]:
    """A warning for each ``HttpUrl`` of ``config`` that is ``http://`` to another machine:
    allowed (a proxy on the same network may terminate TLS), but the token and the events
    cross the network readable by anyone on the path, so start-up and ``check`` say so.
    Nested settings too (``auth.token_url``: where an access token is fetched)."""
    found = []
    for field, info in type(config).model_fields.items():
        value = getattr(config, field)
        name = f"{prefix}{field}"
        if isinstance(value, BaseModel):
            found += cleartext_urls(value, f"{name}.")
            continue
        if not isinstance(value, str) or not _is_http_url(info.metadata, info.annotation):
            continue
        warning = cleartext_url(name, value)
        if warning:
            found.append(warning)
    return found


def cleartext_url(name: str, value: str) -> str | None:
    """The warning for one URL setting that is ``http://`` to another machine, else None (for
    settings typed as plain ``str``, such as the S3 ``endpoint_url``)."""
    url = httpx.URL(value)
    if url.scheme == "http" and not _loopback(url.host):
        return (
            f"{name} {url.scheme}://{url.host} is plain HTTP to another machine: credentials and events "
            "cross the network unencrypted; use https://"
        )
    return None


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
