"""A source's cycles over time (forwarder/polling.py, ``Poller.poll``), unit level with a stub
source and journal: an organization still being polled is skipped by the next cycle while the
others are polled again, and a cycle due while the previous one still lists is skipped, not
queued. The real daemon's side is tests/reliability/test_long_run.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from structlog.testing import capture_logs

from forwarder.polling import Poller
from forwarder.sources.base import Page
from tests.support.empty_journal import EmptyJournal


class Stub:
    name = "stub"
    vendor = "stub"
    type_name = "stub"

    def __init__(self, organizations: list[str]) -> None:
        self.listed = organizations
        self.polled: list[str] = []
        self.listings = 0
        self.hold: dict[str, asyncio.Event] = {}  # an organization's walk waits for its event

    def organizations(self) -> list[str]:
        return self.listed

    async def pages(self, organization: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        self.polled.append(organization)
        if organization in self.hold:
            await self.hold[organization].wait()
        return
        yield  # an async generator with nothing to give

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        raise AssertionError("no entries")


class SlowListing(Stub):
    def __init__(self, organizations: list[str]) -> None:
        super().__init__(organizations)
        self.listing = asyncio.Event()

    async def refresh_organizations(self) -> bool:
        self.listings += 1
        await self.listing.wait()
        return True


async def test_a_busy_organization_is_skipped_and_the_others_are_polled_every_cycle() -> None:
    source = Stub(["slow", "fast"])
    source.hold["slow"] = asyncio.Event()
    poller = Poller(source, EmptyJournal(), lambda: None)  # type: ignore[arg-type]
    first = asyncio.create_task(poller.poll())  # waits for "slow", as the cycle that started it
    await asyncio.sleep(0.01)
    for _ in range(3):  # later cycles do not wait for it, nor start it a second time
        assert await asyncio.wait_for(poller.poll(), timeout=5)
    assert source.polled.count("fast") == 4 and source.polled.count("slow") == 1
    assert poller.status["slow"].state == "polling" and poller.status["fast"].state == "ok"
    source.hold["slow"].set()
    assert await first
    assert await poller.poll()
    assert source.polled.count("slow") == 2  # polled again once its walk ended


async def test_cycles_due_while_the_listing_is_slow_are_skipped_not_queued() -> None:
    source = SlowListing(["a"])
    poller = Poller(source, EmptyJournal(), lambda: None)  # type: ignore[arg-type]
    first = asyncio.create_task(poller.poll())
    await asyncio.sleep(0.01)
    assert await asyncio.wait_for(asyncio.gather(*(poller.poll() for _ in range(5))), timeout=5)
    source.listing.set()
    assert await first
    assert source.listings == 1 and source.polled == ["a"]


class FullJournal(EmptyJournal):
    def is_full(self) -> bool:
        return True


async def test_a_full_journal_is_warned_once_per_organization_not_every_cycle() -> None:
    source = Stub(["a", "b"])
    poller = Poller(source, FullJournal(), lambda: None)  # type: ignore[arg-type]
    with capture_logs() as logs:
        for _ in range(5):
            assert await poller.poll()
    paused = [e for e in logs if e["event"].startswith("journal is full; polling paused")]
    assert sorted(e["organization"] for e in paused if e["log_level"] == "warning") == ["a", "b"]
    assert len(paused) == 10 and not source.polled  # the other cycles: debug lines, nothing polled


async def test_an_organization_poll_that_raises_past_its_handling_fails_the_cycle_and_no_other_is_left_running() -> (
    None
):
    source = Stub(["bad", "slow"])
    source.hold["slow"] = asyncio.Event()
    poller = Poller(source, EmptyJournal(), lambda: None)  # type: ignore[arg-type]
    real = poller.poll_org

    async def poll_org(organization: str) -> bool:
        if organization == "bad":
            raise RuntimeError("a bug past the poll's own handling")
        return await real(organization)

    poller.poll_org = poll_org  # type: ignore[method-assignment]
    with capture_logs() as logs:
        cycle = asyncio.create_task(poller.poll())
        await asyncio.sleep(0.05)
        assert not cycle.done(), "the cycle still awaits the slow organization"
        source.hold["slow"].set()
        assert await cycle is False
    assert [e["task"] for e in logs if e["event"] == "organization poll failed unexpectedly"] == ["poll:stub:bad"]
