"""Polling: run one source's organizations, normalize, quarantine, journal.

For each page a source yields, the entries are normalized here and journaled together with
the page's cursor in one transaction. An entry that cannot be normalized is quarantined
with its reason in that same transaction, so it is never silently dropped and never blocks
the cursor. A failure of one organization is logged and that organization waits for the
next cycle; the other organizations and sources carry on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from forwarder import metrics
from forwarder.chunks import Chunks
from forwarder.event import parse_ms
from forwarder.evidence.chain import StreamChain
from forwarder.journal import DiskFullError, FencedError, PollJournal
from forwarder.journal.types import unreachable
from forwarder.record import summary
from forwarder.sources.base import Source
from forwarder.sources.http import SourceError
from forwarder.sources.window import clock_step, now_ms
from forwarder.status import OrgStatus

log = structlog.get_logger("forwarder.polling")
_CONSUMED: tuple[Any, str] = (None, "")
YIELD_EVERY = 2_000  # entries normalized between two turns of the event loop (~30 ms)


class Poller:
    def __init__(
        self,
        source: Source,
        journal: PollJournal,
        on_append: Callable[[], None],
        *,
        once: bool = False,
        keep: Callable[[int], bool] | None = None,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        """``owns(organization)``: whether this replica holds that organization's lease (a
        PostgreSQL state shared by replicas, ``forwarder.replicas``); None polls every one."""
        self.source = source
        self.keep = keep  # by event time (ms): a backfill journals only its window, and chains only that
        self.owns = owns
        self.once = once  # ``once`` has no next cycle to promise
        self.journal = journal
        self.on_append = on_append
        self.status: dict[str, OrgStatus] = {org: OrgStatus() for org in source.organizations()}
        self._lock = asyncio.Lock()
        self._polling: dict[str, asyncio.Task[bool]] = {}  # each organization's poll under way

    async def poll(self) -> bool:
        """One cycle over every organization not still busy with an earlier cycle's poll,
        concurrently; True if all those succeeded. A cycle waited for its slowest organization
        (a vendor answering slowly for it, a long backlog) and the scheduler skipped every run
        due meanwhile, so the source's other organizations were not polled again until it
        ended: one slow tenant delayed everyone's events by the length of its walk. Now an
        organization still being polled is skipped for this cycle (a debug line), and the
        others are polled on their interval. The lock makes the listing and the choice of whom
        to start one cycle at a time; an organization's polls never overlap. A cycle due while
        the previous one is still listing (a slow listing of a discovering source) is skipped
        rather than queued behind it: each would list again, and they would pile up."""
        if self._lock.locked():
            log.debug("source still listing its organizations; this cycle skips it", source=self.source.name)
            return True
        async with self._lock:
            listed = await self._refresh_organizations()
            organizations = self.source.organizations()
            for gone in set(self.status) - set(organizations):  # no longer listed: no longer polled, nor shown
                del self.status[gone]
            for gone in set(self._polling) - set(organizations):
                if self._polling[gone].done():
                    del self._polling[gone]
            started = []
            for org in organizations:
                if self.owns is not None and not self.owns(org):
                    continue
                busy = self._polling.get(org)
                if busy is not None and not busy.done():
                    log.debug(
                        "organization still being polled; this cycle skips it",
                        source=self.source.name,
                        organization=org,
                    )
                    continue
                self._polling[org] = task = asyncio.create_task(
                    self.poll_org(org), name=f"poll:{self.source.name}:{org}"
                )
                started.append(task)
        # cancelled (a stop, a reload): so are they. One that raised past its own handling must
        # not end the cycle while the others run on, no longer awaited by anyone.
        results = await asyncio.gather(*started, return_exceptions=True)
        for task, result in zip(started, results, strict=True):
            if isinstance(result, Exception):
                log.error("organization poll failed unexpectedly", task=task.get_name(), exc_info=result)
        return listed and all(result is True for result in results)

    async def _refresh_organizations(self) -> bool:
        """A source that discovers its organizations reads its listing again when due
        (``forwarder.sources.tenants``); a listing that fails leaves the last list polled."""
        refresh = getattr(self.source, "refresh_organizations", None)
        if refresh is None:
            return True
        try:
            await refresh()
        except Exception as exc:
            log.error(
                "organization listing failed; the last list is polled",
                source=self.source.name,
                error=str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}",
            )
            return False
        return True

    async def poll_org(self, organization: str) -> bool:
        status = self.status.setdefault(organization, OrgStatus())
        if self.journal.is_full():
            self._pause(status, organization)
            return True
        status.state = "polling"
        name = self.source.name
        metrics.polling(name, organization)
        try:
            cursor = await self.journal.get_cursor(name, organization)
            cursor, clock_problem = await self._clock_check(status, organization, cursor)
            chain = StreamChain(await self.journal.chain_head(name, organization))
            async for page in self.source.pages(organization, cursor):
                observed = datetime.now(UTC)
                entries, quarantined = await self._normalize(organization, page.entries, observed, chain)
                for extra in page.extra_events:  # gap events are links of the chain too
                    self._add(entries, extra, chain)
                await self.journal.append(
                    name,
                    organization,
                    entries,
                    page.cursor,
                    quarantined=quarantined,
                    chain=(chain.journaled, chain.head),
                )
                chain.journaled = chain.head
                status.events += entries.count
                status.pages += 1
                status.quarantined += len(quarantined)
                if quarantined:
                    log.warning(
                        "entries quarantined",
                        source=name,
                        organization=organization,
                        count=len(quarantined),
                        reason=quarantined[0][0],
                    )
                if entries.count:
                    self.on_append()
                # Dropped before the source fetches its next page, so two pages never sit in memory.
                del page, entries, quarantined
                if self.journal.is_full():
                    self._pause(status, organization)
                    return True
        except (SourceError, DiskFullError) as exc:
            return self._failed(status, organization, str(exc))
        except FencedError:  # another replica holds this organization now (logged and counted by the fence)
            status.state = "idle"
            return True
        except Exception as exc:  # a source bug must not take the daemon down
            if unreachable(exc):
                return self._failed(status, organization, f"the state database is unreachable: {type(exc).__name__}")
            log.exception("source failed unexpectedly", source=name, organization=organization)
            return self._failed(status, organization, f"{type(exc).__name__}: {exc}")
        if clock_problem is not None:  # read from the pulled-back cursor, but failing for this cycle
            return False
        status.state = "ok"
        status.error = None
        status.failing_since = None
        status.last_success = asyncio.get_running_loop().time()
        return True

    def _pause(self, status: OrgStatus, organization: str) -> None:
        """Warned once when an organization's polling pauses; each cycle it stays paused is a
        debug line: a sink down for a weekend wrote a warning per organization per cycle."""
        was_paused = status.state == "paused"
        status.state = "paused"
        events, size = self.journal.size
        (log.debug if was_paused else log.warning)(
            "journal is full; polling paused until sinks drain (nothing is dropped)",
            source=self.source.name,
            organization=organization,
            journal_events=events,
            journal_bytes=size,
        )

    async def _clock_check(
        self, status: OrgStatus, organization: str, cursor: dict[str, Any] | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The cursor pulled back if the clock stepped (``window.clock_step``), journaled at once:
        were this poll's walk to fail, the next one must start from it, not pull back again
        from a later now and skip the time in between. The organization shows failing, with
        the reason, for this cycle: entries may have been missed while the clock was wrong.
        A source without ``config.lag_s`` (a backfill's bounded walk) is not windowed by now."""
        lag_s = getattr(getattr(self.source, "config", None), "lag_s", None)
        if cursor is None or not isinstance(lag_s, int | float):
            return cursor, None
        cursor, problem = clock_step(cursor, now_ms(), int(lag_s * 1000))
        if problem is not None and cursor is not None:
            self._failed(status, organization, problem, "clock step: cursor ahead of the clock, pulled back")
            await self.journal.append(self.source.name, organization, Chunks(), cursor)
        return cursor, problem

    def _failed(self, status: OrgStatus, organization: str, error: str, message: str | None = None) -> bool:
        status.state = "failed"
        status.error = error
        status.failures += 1
        if status.failing_since is None:
            status.failing_since = asyncio.get_running_loop().time()
        if message is None:
            message = (
                "poll failed; the cursor stays, the next run starts from it"
                if self.once
                else "poll failed; will retry next cycle"
            )
        log.error(
            message,
            source=self.source.name,
            organization=organization,
            error=error,
        )
        return False

    async def _normalize(
        self,
        organization: str,
        raw_entries: list[tuple[Any, str]],
        observed: datetime,
        chain: StreamChain | None = None,
    ) -> tuple[Chunks, list[tuple[str, Any]]]:
        """Consumes ``raw_entries``: each entry is let go once it is serialized, so a page's parsed
        entries shrink while its chunks grow instead of both being held at their largest.

        Every ``YIELD_EVERY`` entries it lets the loop run: a vendor's page has no size cap
        (Codacy answers a whole slice at once), and 50,000 entries in one go held the sinks,
        ``/healthz`` and the watchdog's ping for over a second."""
        entries = Chunks()
        quarantined: list[tuple[str, Any]] = []
        normalize = self.source.normalize
        chain = chain or StreamChain()
        for i, (raw, key) in enumerate(raw_entries):
            raw_entries[i] = _CONSUMED
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            try:
                self._add(entries, normalize(organization, raw, key, observed), chain)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                quarantined.append((reason[:500], raw))
            del raw
        return entries, quarantined

    def _add(self, entries: Chunks, event: dict[str, Any], chain: StreamChain) -> None:
        """Serialized here, once: every sink gets these bytes (or formats from them), chain
        fields included (``forwarder.evidence.chain``). The link is kept only once the bytes are
        in: an event that fails here is quarantined and must not consume a seq."""
        fields = (event["id"], event["vendor"], parse_ms(event["time"]), *summary(event))
        if self.keep is not None and not self.keep(fields[2]):
            return
        linked = chain.link(event)
        try:
            entries.add(fields, orjson.dumps(event), linked.hash)  # the ledger notes the hash from here
        except BaseException:
            chain.drop()
            raise
        chain.keep()
