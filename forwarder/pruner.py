"""The daemon's pruner: journal chunks every sink has confirmed, and evidence ledger rows past
their retention (``evidence.ledger_retention_days``).

It reads the running sources and the retention setting through callables at each prune, so a
reload that adds or removes a source is seen without restarting the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from forwarder.evidence.retention import cutoffs
from forwarder.journal.protocols import StateJournal
from forwarder.journal.types import unreachable

LEDGER_PRUNE_EVERY_S = 600.0  # the ledger's retention is in days: a prune every ten minutes is plenty
JOURNAL_PRUNE_EVERY_S = 2.0
log = structlog.get_logger("forwarder.daemon")


class Pruner:
    def __init__(
        self,
        journal: StateJournal,
        sources: Callable[[], Iterable[Any]],
        retention_days: Callable[[], float | None],
    ) -> None:
        self.journal = journal
        self.sources = sources  # the running sources (``name`` and their vendor retention)
        self.retention_days = retention_days  # ``evidence.ledger_retention_days`` as now configured

    async def run(self) -> None:
        ledger_due = 0.0
        while True:
            await asyncio.sleep(JOURNAL_PRUNE_EVERY_S)
            try:
                await self.journal.prune()
            except Exception as exc:
                if not unreachable(exc):  # the renewals and the workers say so already, once
                    log.exception("journal prune failed")
            if time.monotonic() >= ledger_due:
                ledger_due = time.monotonic() + LEDGER_PRUNE_EVERY_S
                await self.prune_ledger()

    async def prune_ledger(self) -> None:
        """The evidence ledger's rows past their retention (``evidence.ledger_retention_days``)."""
        per_source, default = cutoffs(self.sources(), self.retention_days(), int(time.time() * 1000))
        try:
            deleted = await self.journal.prune_ledger(per_source, default)
        except Exception as exc:
            if not unreachable(exc):  # a PostgreSQL state out of reach: said once by the renewals
                log.exception("evidence ledger prune failed")
            return
        if deleted:
            log.info("evidence ledger rows past their retention deleted", rows=deleted)
