"""The evidence ledger: what was journaled, kept after the journal prunes the events.

``reconcile`` and ``report`` must answer, months later, "did the forwarder collect this vendor
entry, and did every sink confirm it?". The events themselves are pruned once every sink has
them, so at append time, in the page's own transaction, each event is noted: its journal seq,
its stream, its chain seq, its id, its event time and its chain hash. The notes are stored a
run at a time (``LedgerRun``: up to a chunk of consecutive events, their journal and chain seqs
both stepping by one, the other fields packed in three arrays): one row per chunk instead of
one per event made the ledger's share of an append a few percent of what it was, and every
question asked of it is by stream and event time, which a run's time span answers. A sink's
confirmation needs no row per event: offsets only grow, so a sink's offset says every journal
seq at or below it was confirmed or dead-lettered; the dead letters are noted by seq (kept
even after ``dlq purge``), and each sink's starting seq (a sink added later never had the
events before it). Gap events also leave a row in ``ledger_gaps`` with the interval lost.

Rows are kept ``evidence.ledger_retention_days`` (default: each source's vendor retention, past
which the vendor cannot be asked again anyway), pruned by event time by the daemon's pruner.

This module holds what both backends share (the rows, the runs, the notes built from a page);
``ledger_sqlite`` and ``postgres.ledger`` store them.
"""

from __future__ import annotations

import struct
from binascii import unhexlify
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import orjson

from forwarder.chunks import CHUNK_MAX_EVENTS, Chunks
from forwarder.evidence.chain import Head, fields
from forwarder.record import Record

GAP_ACTION = "forwarder.gap"
_HASH_KEY = b',"hash":"'
TIME_BYTES = 8
RUN_MAX_EVENTS = CHUNK_MAX_EVENTS  # what a listing unpacks at most to answer for one event


class LedgerRow(NamedTuple):
    seq: int  # the journal seq (what sink offsets count)
    chain_seq: int
    event_id: str
    time_ms: int
    hash: str


class LedgerRun(NamedTuple):
    """Consecutive events of one stream: journal seqs ``first_seq``.. and chain seqs
    ``first_chain_seq``.. both step by one. ``times``: big-endian int64 each (PostgreSQL's
    ``int8send``, so its migration packs them in SQL); ``hashes``: one width each (32 bytes from
    the chain; a hash read from an event written otherwise keeps its own, in a run of that
    width); ``ids``: a JSON array (an id may hold any character)."""

    first_seq: int
    first_chain_seq: int
    min_time: int
    max_time: int
    times: bytes
    hashes: bytes
    ids: bytes

    @property
    def events(self) -> int:
        return len(self.times) // TIME_BYTES


def unpack(run: LedgerRun, from_ms: int = -(1 << 63), to_ms: int = 1 << 63) -> Iterator[LedgerRow]:
    """The run's rows with an event time in ``[from_ms, to_ms)``, by seq."""
    ids = orjson.loads(run.ids)
    times = struct.unpack(f">{len(ids)}q", run.times)
    hashes = run.hashes
    width = len(hashes) // len(ids)
    for i, (event_id, time_ms) in enumerate(zip(ids, times, strict=True)):
        if from_ms <= time_ms < to_ms:
            digest = hashes[i * width : (i + 1) * width].hex()
            yield LedgerRow(run.first_seq + i, run.first_chain_seq + i, event_id, time_ms, digest)


def trimmed(run: LedgerRun, cutoff: int) -> tuple[list[LedgerRun], int]:
    """A run spanning a prune's ``cutoff`` without its events before it: the runs to write
    again in its place, and how many events it lost (both backends' prunes)."""
    kept = [(r.seq, r.chain_seq, r.event_id, r.time_ms, bytes.fromhex(r.hash)) for r in unpack(run, cutoff)]
    return pack(kept), run.events - len(kept)


def pack(rows: Iterable[tuple[int, int, str, int, bytes]]) -> list[LedgerRun]:
    """Rows ``(seq, chain_seq, event id, time_ms, raw hash)`` of one stream, by seq, as runs."""
    runs: list[LedgerRun] = []
    run: list[tuple[int, int, str, int, bytes]] = []

    def flush() -> None:
        times = [r[3] for r in run]
        runs.append(
            LedgerRun(
                run[0][0], run[0][1], min(times), max(times), struct.pack(f">{len(times)}q", *times),
                b"".join(r[4] for r in run), orjson.dumps([r[2] for r in run]),
            )
        )  # fmt: skip
        run.clear()

    for row in rows:
        if run and (
            row[0] != run[-1][0] + 1
            or row[1] != run[-1][1] + 1
            or len(row[4]) != len(run[-1][4])
            or len(run) >= RUN_MAX_EVENTS
        ):
            flush()
        run.append(row)
    if run:
        flush()
    return runs


class LedgerGap(NamedTuple):
    source: str
    organization: str
    chain_seq: int
    time_ms: int  # when the gap was noticed (the gap event's time)
    from_ms: int | None
    to_ms: int | None
    reason: str


class SinkConfirmation(NamedTuple):
    """A sink's word on the journal: seqs in ``(start, offset]`` were confirmed, except ``dead``."""

    sink: str
    start: int
    offset: int
    dead: frozenset[int]

    def state(self, seq: int) -> str:
        if seq <= self.start:
            return "not sent (the sink was added later)"
        if seq > self.offset:
            return "not confirmed"
        return "dead-lettered" if seq in self.dead else "confirmed"


class EvidenceRun(NamedTuple):
    kind: str  # verify, reconcile
    at: float
    scope: str
    ok: bool
    summary: dict[str, Any]


def hash_of(data: bytes, parse: bool = False) -> tuple[int, str] | None:
    """``(chain seq or 0, hash)`` of an event's JSON. The chain is the event's last key as
    serialized (``chain.link`` adds it last), so unless ``parse`` the hash is read off the tail
    without parsing the whole event (seq 0: the caller knows it); anything else is parsed."""
    if not parse and data[-76:-67] == _HASH_KEY and data[-3:] == b'"}}':
        return 0, data[-67:-3].decode()
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    found = fields(event) if isinstance(event, dict) else None
    return None if found is None else (found[0], found[2])


def rows_of(
    chunks: Chunks, first_seq: int, source: str, organization: str, chain: tuple[Head, Head] | None
) -> tuple[list[LedgerRun], list[LedgerGap]]:
    """The ledger runs of a page about to be journaled from ``first_seq``. With ``chain`` (the
    poller's heads before and after) the chain seqs follow from the order, and each chunk is one
    run: its columns packed as they are, the hashes the poller handed with the events (else read
    off each event's tail). Without it (a caller that links nothing) each event's own chain
    fields are read, and an event without any is not noted: it has no place a reconcile could
    check."""
    gaps: list[LedgerGap] = []
    ordered = chain is not None and chain[1].seq - chain[0].seq == chunks.count
    if not ordered:
        rows: list[tuple[int, int, str, int, bytes]] = []
        for i, entry in enumerate(chunks):
            found = hash_of(entry.data, parse=True)
            raw = None if found is None else _raw(found[1])
            if found is not None and raw is not None:
                rows.append((first_seq + i, found[0], entry.event_id, entry.time_ms, raw))
                if entry.action == GAP_ACTION:
                    gaps.append(_gap(source, organization, found[0], entry.time_ms, entry.data))
        return pack(rows), gaps
    assert chain is not None
    chunks.cut()
    hashes = chunks.hashes
    if hashes is None or len(hashes) != chunks.count or (hashes and hashes[-1] != chain[1].hash):
        return _searched(chunks, first_seq, source, organization, chain[0].seq + 1)
    runs: list[LedgerRun] = []
    seq, chain_seq, at = first_seq, chain[0].seq + 1, 0
    for (ids, _, times, actions, _, _), data in chunks.done:  # the columns as stored: no per-event work
        n = len(ids)
        runs.append(
            LedgerRun(
                seq, chain_seq, min(times), max(times), struct.pack(f">{n}q", *times),
                unhexlify("".join(hashes[at : at + n])), orjson.dumps(ids),
            )
        )  # fmt: skip
        if GAP_ACTION in actions:
            for i, line in enumerate(data.split(b"\n")):
                if actions[i] == GAP_ACTION:
                    gaps.append(_gap(source, organization, chain_seq + i, times[i], line))
        seq, chain_seq, at = seq + n, chain_seq + n, at + n
    return runs, gaps


def _searched(
    chunks: Chunks, first_seq: int, source: str, organization: str, chain_seq: int
) -> tuple[list[LedgerRun], list[LedgerGap]]:
    """``rows_of`` for linked events whose hashes were not handed over: each read off the
    event's tail (the chain is its last key), parsed only when it is not there."""
    rows: list[tuple[int, int, str, int, bytes]] = []
    gaps: list[LedgerGap] = []
    seq = first_seq
    for (ids, _, times, actions, _, _), data in chunks.done:
        for event_id, time_ms, action, line in zip(ids, times, actions, data.split(b"\n"), strict=True):
            if line[-76:-67] == _HASH_KEY and line[-3:] == b'"}}':
                raw = _raw(line[-67:-3].decode())
            else:
                found = hash_of(line, parse=True)
                raw = None if found is None else _raw(found[1])
            if raw is None:
                seq += 1
                chain_seq += 1
                continue
            rows.append((seq, chain_seq, event_id, time_ms, raw))
            if action == GAP_ACTION:
                gaps.append(_gap(source, organization, chain_seq, time_ms, line))
            seq += 1
            chain_seq += 1
    return pack(rows), gaps


def _raw(digest: str) -> bytes | None:
    """A hash as stored; None for one that is not hex (an event no chain wrote: not noted)."""
    try:
        return bytes.fromhex(digest)
    except ValueError:
        return None


def _gap(source: str, organization: str, chain_seq: int, time_ms: int, data: bytes) -> LedgerGap:
    from forwarder.event import parse_ms

    event = orjson.loads(data)
    details = event.get("details") if isinstance(event.get("details"), dict) else {}

    def ms(key: str) -> int | None:
        try:
            return parse_ms(details[key])
        except Exception:
            return None

    reason = str(event.get("message") or "history lost")
    return LedgerGap(source, organization, chain_seq, time_ms, ms("from"), ms("to"), reason)


def dead_seqs(dead: Sequence[tuple[Record, str]]) -> list[int]:
    return [record.seq for record, _ in dead]
