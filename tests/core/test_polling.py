"""The poller shares the event loop with the sinks, /healthz and the watchdog's ping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from forwarder.polling import YIELD_EVERY, Poller
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
