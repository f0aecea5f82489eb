"""The Poller's hook for a changing organization list (forwarder/polling.py, ``refresh_organizations``):
unit level, with a stub source and journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from forwarder.polling import Poller
from forwarder.sources.base import Page
from forwarder.sources.http import SourceError
from tests.support.empty_journal import EmptyJournal


class Listing:
    name = "stub"
    vendor = "stub"
    type_name = "stub"

    def __init__(self) -> None:
        self.listed = ["a", "b"]
        self.current: list[str] = []
        self.fail = False
        self.polled: list[str] = []

    async def refresh_organizations(self) -> bool:
        if self.fail:
            raise SourceError("listing refused")
        self.current = list(self.listed)
        return True

    def organizations(self) -> list[str]:
        return self.current

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        self.polled.append(organization)
        return
        yield  # an async generator with nothing to give

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        raise AssertionError("no entries")


async def test_the_list_is_read_before_each_cycle_and_gone_organizations_stop() -> None:
    source = Listing()
    poller = Poller(source, EmptyJournal(), lambda: None)  # type: ignore[arg-type]
    assert await poller.poll()
    assert sorted(source.polled) == ["a", "b"] and set(poller.status) == {"a", "b"}
    source.listed, source.polled = ["b", "c"], []
    assert await poller.poll()
    assert sorted(source.polled) == ["b", "c"] and set(poller.status) == {"b", "c"}  # a: no longer polled nor shown
    source.fail, source.polled = True, []
    assert not await poller.poll()  # the listing failed: the cycle counts as failed...
    assert sorted(source.polled) == ["b", "c"]  # ...and the last list is polled
