"""What changed inside an object whose SHA-256 no longer matches its digest.

The digest vouches for the object as a whole; an auditor told only "this file was altered"
still has to find which events. Its listing also names the exact seqs each stream had in the
object (``chains``), and each event carries its own chain hash, so the stored lines are read
back: seqs listed but no longer there are *missing*, lines whose content no longer hashes to
their ``chain.hash`` are *altered* (in the ``json`` format only: the others carry the links but
not the whole normalized event, docs/evidence.md), lines that are no event are *unreadable*.
A line repeating a seq the object already holds with the same hash is a *duplicate* and one
whose seq is below an earlier line's of its stream is *out of order*: the events themselves are
intact, yet the object is not what the sink wrote, and without naming them "altered" would send
the auditor looking for a change that is not in any event.

An open file is read whole (its listing vouches for a prefix): a listed seq found past the
prefix is present, not missing; what lies past the prefix is not judged for duplicates or order,
since a batch re-sent after a crash legitimately repeats lines there (at-least-once).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any

import orjson

from forwarder.evidence.chain import intact
from forwarder.evidence.exports import ranges_text
from forwarder.evidence.lines import link_of


@dataclass
class Changes:
    missing: dict[str, list[int]] = field(default_factory=dict)  # stream -> seqs listed, not found
    altered: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # stream -> (line, seq)
    unreadable: list[int] = field(default_factory=list)  # line numbers
    duplicated: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # stream -> (line, seq)
    out_of_order: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # stream -> (line, seq)

    def streams(self) -> set[str]:
        return set(self.missing) | set(self.altered) | set(self.duplicated) | set(self.out_of_order)

    def seqs(self) -> list[int]:
        found = {s for seqs in self.missing.values() for s in seqs}
        for named in (self.altered, self.duplicated, self.out_of_order):
            found |= {seq for pairs in named.values() for _, seq in pairs}
        return sorted(found)

    def text(self) -> str:
        parts = [f"{stream} seq {ranges_text(seqs)} missing" for stream, seqs in sorted(self.missing.items())]
        for named, what in (
            (self.altered, "altered"),
            (self.out_of_order, "out of order (after a higher seq of its stream)"),
            (self.duplicated, "a duplicate of an intact event (added after the digest)"),
        ):
            for stream, pairs in sorted(named.items()):
                lines = ", ".join(f"line {line} (seq {seq})" for line, seq in pairs[:20])
                more = f" and {len(pairs) - 20} more" if len(pairs) > 20 else ""
                parts.append(f"{stream} {lines}{more} {what}")
        if self.unreadable:
            shown = ", ".join(map(str, self.unreadable[:20]))
            parts.append(f"line(s) {shown}{' ...' if len(self.unreadable) > 20 else ''} not an event")
        return "; ".join(parts)


def listed_seqs(item: dict[str, Any]) -> dict[str, set[int]]:
    """The seqs of each stream an object's listing says it holds."""
    out: dict[str, set[int]] = {}
    for stream, chain in (item.get("chains") or {}).items():
        held = out.setdefault(stream, set())
        for first, last in chain.get("seqs") or [[chain["first"], chain["last"]]]:
            held.update(range(first, last + 1))
    return out


def changes(content: bytes, item: dict[str, Any], sealed: int | None = None) -> Changes:
    """``item``: the object's listing in its digest; ``sealed``: for an open file, the length of
    the prefix it vouches for (``content`` is the whole file)."""
    found = Changes()
    present: dict[str, set[int]] = {}
    hashes: dict[tuple[str, int], str] = {}  # (stream, seq) -> hash of its first line
    highest: dict[str, int] = {}
    lines = content.split(b"\n")
    lines.pop()  # what follows the last LF: empty, or a line cut short (a file being appended to)
    start = 0
    for number, line in enumerate(lines, 1):
        judged = sealed is None or start < sealed
        start += len(line) + 1
        try:
            link = link_of(line)
        except (ValueError, IndexError, AttributeError, TypeError, csv.Error):  # orjson's error is a ValueError
            found.unreadable.append(number)
            continue
        if link is None:
            continue
        if link.seq is None:
            found.unreadable.append(number)
            continue
        if line.lstrip().startswith(b"{"):
            event = orjson.loads(line)
            if "chain" in event and not intact(event):
                found.altered.setdefault(link.stream, []).append((number, link.seq))
                continue
        key = (link.stream, link.seq)
        if key in hashes and hashes[key] == link.hash:
            if judged:
                found.duplicated.setdefault(link.stream, []).append((number, link.seq))
            continue
        if judged and link.seq < highest.get(link.stream, 0):
            found.out_of_order.setdefault(link.stream, []).append((number, link.seq))
        hashes.setdefault(key, link.hash)
        highest[link.stream] = max(highest.get(link.stream, 0), link.seq)
        present.setdefault(link.stream, set()).add(link.seq)
    for stream, seqs in listed_seqs(item).items():
        gone = sorted(seqs - present.get(stream, set()) - {s for _, s in found.altered.get(stream, [])})
        if gone:
            found.missing[stream] = gone
    return found
