"""What the file and the S3 sinks' digest writers share (docs/evidence.md).

Both write one signed digest every ``digest_interval_s`` and a last one at shutdown, each
chained to the one before it; both list an object by its content's bytes and the chained
events in it. Only where the listings come from and where a digest goes differ, so those
are the subclasses' ``write``; the loop, the chaining and the listing are here, once.

Replicas on one PostgreSQL state (docs/high-availability.md) share one store and one chain:
only the replica holding the sink's lease writes a digest (``owns``, set by the sink's
``SinkWorker``). A replica that gains the lease, or finds a digest newer than its own, chains
to the newest digest in the store (``_refresh``) instead of to the one it remembers: a chain
forked by two writers would show ``verify`` digests off the chain.
"""

from __future__ import annotations

import asyncio
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

import structlog

from forwarder.evidence import digest
from forwarder.evidence.keys import SigningKeyError, load_private
from forwarder.evidence.lines import link_of
from forwarder.evidence.settings import EvidenceSettings

log = structlog.get_logger("forwarder.evidence")


def listing_of(location: str, content: bytes, state: str = "closed") -> digest.Listing:
    out = digest.Listing(location, hashlib.sha256(content).hexdigest(), len(content), state=state)
    for line in content.split(b"\n"):
        try:
            found = link_of(line)
        except (ValueError, IndexError):
            continue  # a line cut by a crash, ended by the sink: listed by its bytes, not as an event
        if found is not None:
            out.add_event(found.stream, found.seq, found.prev, found.hash, found.time)
    return out


class DigestWriter(ABC):
    """The interval loop and the chain; a subclass's ``write`` lists, signs (``_signed``),
    stores, then records what it stored (``_chain_to``)."""

    kind: ClassVar[str]

    def __init__(self, sink: str, settings: EvidenceSettings) -> None:
        self.sink = sink
        self.settings = settings
        try:
            self.key = load_private(settings.signing_key_file)
        except SigningKeyError as exc:  # named by its setting: the operator fixes the YAML, not a class
            raise SigningKeyError(f"evidence.signing_key_file: {exc}") from None
        self._previous: tuple[str, bytes, datetime] | None = None  # location, bytes and end of the newest digest
        self._task: asyncio.Task[None] | None = None
        # whether this process holds the sink's lease; None: one process owns the state, always
        self.owns: Callable[[], bool] | None = None
        self._stale = True  # the chain head must be read from the store before the next digest

    @abstractmethod
    def write(self) -> object:
        """Gather the listings, sign and store one digest (blocking: run in a worker thread)."""

    @abstractmethod
    def _refresh(self) -> None:
        """Replicas only: before a digest, the chain head is read again from the store if this
        process did not hold the lease at its previous digest (``_stale``) or the store holds a
        digest newer than this process's last one. Blocking: run in the writer's thread."""

    def holding(self) -> bool:
        """Whether this process may write a digest now; a lease not held makes the chain head
        stale, so the next holding period starts from the newest digest in the store."""
        if self.owns is None:
            return True
        if not self.owns():
            self._stale = True
            return False
        return True

    def _write_if_holding(self) -> object:
        if not self.holding():
            return None
        if self.owns is not None:
            self._refresh()
        return self.write()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """A last digest at shutdown: what was written since the last one is covered now."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            try:  # before the lease is released (``StateOwner.stop`` comes after the sinks close)
                await asyncio.to_thread(self._write_if_holding)
            except Exception as exc:  # S3 unreachable, a full disk: the next start's first digest covers it
                log.error("cannot write the last digest; the next start writes it", sink=self.sink, error=str(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.digest_interval_s)
            try:
                await asyncio.to_thread(self._write_if_holding)
            except Exception as exc:  # a full disk, a damaged digest: logged, tried again, the sink carries on
                log.error("cannot write a digest; tried again next interval", sink=self.sink, error=str(exc))

    def _chain_to(self, location: str, data: bytes, end: datetime | None = None) -> None:
        """The next digest names this one; ``end`` None: read from the digest (found at start)."""
        if end is None:
            body, _ = digest.parse(data)
            end = datetime.fromisoformat(body["to"].replace("Z", "+00:00"))
        self._previous = (location, data, end)

    def _end(self) -> datetime:
        """The end of the digest being written, taken before its listings are gathered."""
        return digest.interval_end(None if self._previous is None else self._previous[2])

    def _signed(self, listings: list[digest.Listing], end: datetime) -> bytes:
        previous, start = None, end
        if self._previous is not None:
            previous = digest.previous_of(self._previous[0], self._previous[1])
            start = self._previous[2]
        return digest.build(
            sink=self.sink, kind=self.kind, start=start, end=end, listings=listings, previous=previous, key=self.key
        )
