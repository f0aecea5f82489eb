"""The poller shares the event loop with the sinks, /healthz and the watchdog's ping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from forwarder.evidence.chain import START, Head
from forwarder.journal import FencedError
from forwarder.polling import YIELD_EVERY, Poller
from forwarder.sources.base import Page
from forwarder.sources.codacy import normalize_entry


class _Codacy:
    name = "codacy"

    def organizations(self) -> list[str]:
        return ["gh/acme"]

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        return normalize_entry(self.name, organization, raw, key, observed)


async def test_a_huge_page_lets_the_loop_run_while_it_is_normalized() -> None:
    entries = [
        ({"timestamp": "2026-11-24T10:00:00Z", "action": "user.login", "result": "succeed"}, f"codacy:{i}")
        for i in range(5 * YIELD_EVERY)
    ]
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = turns
    normalized, quarantined = await Poller(cast(Any, _Codacy()), cast(Any, None), lambda: None)._normalize(
        "gh/acme", entries, datetime.now(UTC)
    )
    ran_meanwhile = turns - started
    ticker.cancel()
    assert len(normalized) == 5 * YIELD_EVERY and not quarantined
    assert ran_meanwhile >= 4  # other tasks ran between chunks, not only after the whole page


class _Journal:
    """A journal whose append is refused by the fence for one organization."""

    def __init__(self, fenced: str) -> None:
        self.fenced = fenced
        self.read: list[str] = []
        self.appended: list[str] = []

    def is_full(self) -> bool:
        return False

    async def get_cursor(self, source: str, organization: str) -> dict[str, Any] | None:
        self.read.append(organization)
        return None

    async def chain_head(self, source: str, organization: str) -> Head:
        return START

    async def append(
        self, source: str, organization: str, entries: Any, cursor: Any, quarantined: Any = (), *, chain: Any = None
    ) -> None:
        if organization == self.fenced:
            raise FencedError("lost the lease")
        self.appended.append(organization)


class _Orgs(_Codacy):
    def organizations(self) -> list[str]:
        return ["gh/a", "gh/b", "gh/c"]

    async def pages(self, organization: str, cursor: Any) -> AsyncIterator[Page]:
        yield Page([], {"watermark_ms": 1})


async def test_a_replica_polls_only_the_organizations_it_holds_and_drops_a_fenced_one_quietly() -> None:
    journal = _Journal(fenced="gh/b")
    poller = Poller(cast(Any, _Orgs()), cast(Any, journal), lambda: None, owns=lambda org: org != "gh/c")
    assert await poller.poll()  # a fenced write is no failure: another replica does that work now
    assert journal.read == ["gh/a", "gh/b"] and journal.appended == ["gh/a"]
    assert poller.status["gh/b"].failures == 0 and poller.status["gh/c"].state == "idle"
