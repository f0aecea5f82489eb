"""A page's events as the journal stores them: chunks of up to ``CHUNK_MAX_EVENTS`` consecutive
events, their JSON one per line (orjson's output never holds a LF), plus columns of their ids,
vendors, times, actions, categories and outcomes that the sinks read without parsing the JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import orjson

CHUNK_MAX_EVENTS = 1000
CHUNK_MAX_BYTES = 1 << 20


class JournalEntry(NamedTuple):
    """A tuple (built once per event; a frozen dataclass's __init__ cost as much as the dump)."""

    event_id: str
    vendor: str
    time_ms: int
    data: bytes
    action: Any = None  # these three are kept beside the JSON for the sinks (see ``Record``)
    category: Any = None
    outcome: Any = None


class Chunks:
    """A page's events cut into chunks as they arrive. Each event's JSON is copied into the
    chunk's buffer at once: orjson hands back each one in a 4 KiB allocation, and a chunk's
    thousand of them held apart cost four times the chunk's size (and a page fault each)."""

    def __init__(self) -> None:
        self.done: list[tuple[list[list[Any]], bytes]] = []  # (columns, the events' JSON lines)
        self.count = 0
        # Each event's chain hash as its adder knew it (``forwarder.journal.ledger`` notes them
        # without searching the JSON); None once an event came without one.
        self.hashes: list[str] | None = []
        self._reset()

    def _reset(self) -> None:
        self._fields: list[tuple[Any, ...]] = []  # JournalEntry's fields but data, per event
        self._buffer = bytearray()  # the events' JSON, each followed by a LF

    def add(self, fields: tuple[str, str, int, Any, Any, Any], data: bytes, chain_hash: str | None = None) -> None:
        """``fields``: event_id, vendor, time_ms, action, category, outcome. ``data`` is one line of
        JSON (orjson never writes a raw LF); a LF would split it in two when read back.
        ``chain_hash``: the ``chain.hash`` written into ``data``, when the caller linked it."""
        if 10 in data:  # a LF byte; ``b"\n" in data`` first tries b"\n" as an int and formats a TypeError (8x slower)
            raise ValueError("an event's JSON holds a line feed")
        if self.hashes is not None:
            if chain_hash is None:
                self.hashes = None
            else:
                self.hashes.append(chain_hash)
        self._fields.append(fields)
        buffer = self._buffer
        buffer += data
        buffer += b"\n"
        self.count += 1
        if len(self._fields) >= CHUNK_MAX_EVENTS or len(buffer) >= CHUNK_MAX_BYTES:
            self.cut()

    def cut(self) -> None:
        if self._fields:
            columns = [list(column) for column in zip(*self._fields, strict=True)]
            del self._buffer[-1]
            self.done.append((columns, bytes(self._buffer)))
            self._reset()

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[JournalEntry]:
        self.cut()
        for (ids, vendors, times, actions, categories, outcomes), data in self.done:
            yield from map(JournalEntry, ids, vendors, times, data.split(b"\n"), actions, categories, outcomes)

    @classmethod
    def of(cls, entries: Iterable[JournalEntry]) -> Chunks:
        chunks = cls()
        for e in entries:
            chunks.add((e.event_id, e.vendor, e.time_ms, e.action, e.category, e.outcome), e.data)
        return chunks

    def rows(self, first_seq: int, source: str, organization: str, now: float) -> list[tuple[Any, ...]]:
        """Rows of the chunks table, numbered from ``first_seq``."""
        self.cut()
        rows: list[tuple[Any, ...]] = []
        for columns, data in self.done:
            last_seq = first_seq + len(columns[0]) - 1
            meta = bytes(memoryview(orjson.dumps(columns)))  # orjson's buffer is up to twice the size
            rows.append((first_seq, last_seq, source, organization, now, len(data), meta, data))
            first_seq = last_seq + 1
        return rows
