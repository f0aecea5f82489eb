"""A journal holding nothing, never full: for tests of the poller's scheduling, whose sources
return no entries, so nothing is ever appended."""

from __future__ import annotations

from forwarder.evidence.chain import START


class EmptyJournal:
    size = (0, 0)

    def is_full(self) -> bool:
        return False

    async def get_cursor(self, source: str, organization: str) -> None:
        return None

    async def chain_head(self, source: str, organization: str) -> object:
        return START
