"""What each part of the daemon needs of the journal, and nothing more.

These are the seam a second state backend implements: the poller depends on ``PollJournal``,
a sink worker on ``DeliveryJournal``, the daemon and the operator tools on ``StateJournal``.
Whatever the backend, the rules of ``forwarder.journal`` hold: ``append`` writes a page's
events, its quarantined entries and its cursor in one durable transaction; ``commit`` moves
a sink's offset (with that batch's dead letters) only after the receiver confirmed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack

from forwarder.chunks import Chunks, JournalEntry
from forwarder.evidence.chain import Head
from forwarder.journal.ledger import EvidenceRun, LedgerGap, LedgerRow, SinkConfirmation
from forwarder.journal.types import DeadLetter, JournalStats
from forwarder.record import Record


class PageParts(TypedDict, total=False):
    """What a page's append carries besides its events and cursor, in the same transaction."""

    quarantined: Sequence[tuple[str, Any]]  # entries that could not be normalized, with the reason
    cursor_source: str | None  # the cursor's key when not the events' source (a backfill's progress)
    chain: tuple[Head, Head] | None  # the stream's chain head (before, after): refused if moved meanwhile


class PollJournal(Protocol):
    async def get_cursor(self, source: str, organization: str) -> dict[str, Any] | None: ...

    async def append(
        self, source: str, organization: str, entries: Chunks, cursor: dict[str, Any], **page: Unpack[PageParts]
    ) -> None:
        """Events, quarantined entries and the cursor in one durable transaction, or none."""
        ...

    async def chain_head(self, source: str, organization: str) -> Head:
        """The head of the stream's hash chain (``forwarder.evidence.chain.START`` if none)."""
        ...

    def is_full(self) -> bool: ...

    @property
    def size(self) -> tuple[int, int]:
        """Events and bytes held."""
        ...


class DeliveryJournal(Protocol):
    @property
    def head(self) -> int:
        """The seq of the last event journaled."""
        ...

    async def offset(self, sink: str) -> int: ...

    async def inflight(self, sink: str) -> int | None:
        """The last seq of a batch begun and never committed: the batch to send first."""
        ...

    async def begin(self, sink: str, last_seq: int) -> None: ...

    async def read(self, after_seq: int, max_events: int, max_bytes: int) -> list[Record]: ...

    async def journaled_at(self, seq: int) -> float | None: ...

    async def commit(self, sink: str, seq: int, dead: Sequence[tuple[Record, str]] = ()) -> None:
        """Moves the offset and records the batch's dead letters in one transaction."""
        ...


class EvidenceLedger(Protocol):
    """What ``reconcile`` and ``report`` read, kept after the events are pruned
    (``forwarder.journal.ledger``), and the runs of ``verify`` and ``reconcile``."""

    async def ledger(self, source: str, organization: str, from_ms: int, to_ms: int) -> list[LedgerRow]: ...

    async def ledger_streams(self) -> list[tuple[str, str]]: ...

    async def ledger_gaps(self, from_ms: int, to_ms: int) -> list[LedgerGap]: ...

    async def confirmations(self) -> list[SinkConfirmation]: ...

    async def quarantined_in(self, from_s: float, to_s: float) -> dict[tuple[str, str], list[str]]: ...

    async def prune_ledger(self, cutoffs: dict[str, int], default_cutoff: int) -> int:
        """Deletes the rows whose event time (ms) is before their source's cutoff."""
        ...

    async def record_run(self, kind: str, scope: str, ok: bool, summary: dict[str, Any]) -> None: ...

    async def evidence_runs(self) -> list[EvidenceRun]:
        """The newest run of each kind and scope."""
        ...


class StateJournal(PollJournal, DeliveryJournal, EvidenceLedger, Protocol):
    """Everything: the daemon's lifecycle and the operator tools."""

    @property
    def path(self) -> Path | str:
        """Where the state is, for messages: the SQLite file, or PostgreSQL's host and database."""
        ...

    def problems(self) -> list[str]:
        """What keeps the state from taking writes, for ``/readyz`` (an unwritable file)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self,
        source: str,
        organization: str,
        entries: Sequence[JournalEntry] | Chunks,
        cursor: dict[str, Any],
        **page: Unpack[PageParts],
    ) -> None: ...

    async def register_sinks(self, names: Iterable[str]) -> list[str]: ...

    async def prune(self) -> int: ...

    async def stats(self) -> JournalStats: ...

    async def set_cursor(self, source: str, organization: str, cursor: dict[str, Any] | None) -> None: ...

    async def delete_cursors(self, source: str | None, organization: str | None) -> int: ...

    async def dead_letters(self, sink: str | None = None, ids: Sequence[int] = ()) -> list[DeadLetter]: ...

    async def delete_dead_letters(self, ids: Sequence[int], *, delivered: bool = False) -> int:
        """``delivered``: a replay's receiver confirmed them, so the evidence ledger's note that
        they were dead-lettered goes too (a purge keeps it: those events never arrived)."""
        ...
