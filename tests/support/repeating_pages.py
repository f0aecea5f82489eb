"""Unit-test stub (``httpx.MockTransport``) for sources whose vendor keeps answering with the
same page: the walk must stop with a ``MalformedResponse`` instead of looping forever."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from forwarder.sources.http import MalformedResponse


async def assert_a_repeated_page_stops_the_walk(source: Any, body: Any) -> None:
    """``source`` (not yet used) gets ``body`` for every request; the second identical page
    must end the walk."""
    requests: list[httpx.Request] = []

    def same_page(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=body)

    source.client._transport = httpx.MockTransport(same_page)
    with pytest.raises(MalformedResponse, match="already seen"):
        async for _ in source.pages("default", None):
            pass
    await source.close()
    assert len(requests) == 2
