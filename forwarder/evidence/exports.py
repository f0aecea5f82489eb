"""``verify`` of exported events: each stream's chain checked event by event.

Reads NDJSON (plain or gzip), a Splunk export (``{"result": {"_raw": ...}}`` per line, or one
document with ``"results"``) and a syslog file of RFC 5424 messages, each event in any output
format (docs/formats.md). Events are grouped by stream (source x organization); a seq seen twice
with the same hash is a duplicate (allowed: at-least-once), with another hash a conflict. Each
``json`` event's hash is recomputed (``altered``); the other formats carry the links but not the
whole normalized event, so for them only the links are checked, as docs/evidence.md promises
("gaps and order still can"). Each link to the previous seq is checked (``broken``), each seq
missing between the first and the last seen named (``missing``). What lies before the first seq
seen is out of the export, not missing: ``--from-seq`` says where it must start; what lies after
the last is not visible at all, so each stream's last seq and hash are shown, to be compared with
the chain head of ``report`` or the newest digest.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from forwarder.evidence.chain import GENESIS, content_hash, fields
from forwarder.evidence.lines import Link, link_of


@dataclass
class Finding:
    kind: str  # missing, altered, broken, conflict, unchained, unreadable, empty
    stream: str
    detail: str
    seqs: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "stream": self.stream, "detail": self.detail, "seqs": self.seqs}


@dataclass
class StreamSummary:
    stream: str
    first: int
    last: int
    events: int
    duplicates: int
    head: str
    links_only: int = 0  # events in a format without the whole event: links checked, hash not recomputed


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rb") as handle:
        for line in handle:
            line = line.strip()
            if line:
                yield line


def _syslog_msg(line: bytes) -> bytes | None:
    """The MSG of an RFC 5424 line: after PRI+VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID,
    MSGID and the STRUCTURED-DATA (``-`` or ``[...]`` elements, quotes escaped with ``\\``)."""
    if not line.startswith(b"<"):
        return None
    parts = line.split(b" ", 6)
    if len(parts) < 7:
        return None
    rest = parts[6]
    if rest.startswith(b"-"):
        msg = rest[1:]
    else:
        i, quoted = 0, False
        while i < len(rest):
            c = rest[i : i + 1]
            if c == b"\\":
                i += 2
                continue
            if c == b'"':
                quoted = not quoted
            elif not quoted and c == b"]" and rest[i + 1 : i + 2] != b"[":
                break
            i += 1
        msg = rest[i + 1 :]
    msg = msg.lstrip(b" ")
    return msg.removeprefix(b"\xef\xbb\xbf")


def payloads_of(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(line number, the event's text or None if unreadable) of every event in an export file:
    a syslog line's MSG, a Splunk result's ``_raw``, else the line itself."""
    for number, line in enumerate(_lines(path), 1):
        if line.startswith(b"<"):
            msg = _syslog_msg(line)
            line = msg if msg is not None else line
        if not line.startswith(b"{"):
            yield number, line  # CEF, LEEF or CSV: read by its links
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield number, None
            continue
        if isinstance(doc, dict) and isinstance(doc.get("results"), list):  # Splunk's JSON output_mode
            for result in doc["results"]:
                yield number, _splunk(result)
        elif isinstance(doc, dict) and isinstance(doc.get("result"), dict):  # Splunk's export, one per line
            if doc.get("preview") is not True:
                yield number, _splunk(doc["result"])
        else:
            yield number, line


def _splunk(result: Any) -> bytes | None:
    raw = result.get("_raw") if isinstance(result, dict) else None
    return raw.encode() if isinstance(raw, str) and raw.strip() else None


def _normalized(payload: bytes) -> dict[str, Any] | None:
    """The event when ``payload`` is a normalized (``json`` format) event, whose hash can be recomputed."""
    if not payload.startswith(b"{"):
        return None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "ecs" in doc or "class_uid" in doc:
        return None
    return doc


def _link(payload: bytes) -> Link | None:
    try:
        return link_of(payload)
    except (ValueError, IndexError, AttributeError, TypeError, csv.Error):  # orjson's error is a ValueError
        return None


def ranges_text(seqs: list[int]) -> str:
    out, start = [], None
    for i, seq in enumerate(seqs):
        if start is None:
            start = seq
        if i + 1 == len(seqs) or seqs[i + 1] != seq + 1:
            out.append(str(start) if start == seq else f"{start}-{seq}")
            start = None
    return ", ".join(out)


def verify_exports(paths: list[Path], from_seq: int | None = None) -> tuple[list[Finding], list[StreamSummary]]:
    findings: list[Finding] = []
    streams: dict[str, dict[int, str]] = {}  # stream -> seq -> hash
    prevs: dict[str, dict[int, str]] = {}
    duplicates: dict[str, int] = {}
    links_only: dict[str, set[int]] = {}  # stream -> seqs read by their links only
    altered: dict[str, set[int]] = {}
    for path in paths:
        for number, payload in payloads_of(path):
            event = _normalized(payload) if payload is not None else None
            if event is not None:
                stream = f"{event.get('source')}/{event.get('organization')}"
                found = fields(event)
                if found is None:
                    detail = f"{path}:{number}: event {event.get('id')} has no chain"
                    findings.append(Finding("unchained", stream, detail))
                    continue
                seq, prev, digest = found
                if content_hash(event, seq, prev) != digest:
                    detail = f"{path}:{number}: seq {seq} does not hash to its chain.hash"
                    findings.append(Finding("altered", stream, detail, [seq]))
                    altered.setdefault(stream, set()).add(seq)
                    continue
            else:
                link = _link(payload) if payload is not None else None
                if link is None:
                    findings.append(Finding("unreadable", "-", f"{path}:{number}: not an event in any output format"))
                    continue
                stream = link.stream
                if link.seq is None:
                    findings.append(Finding("unchained", stream, f"{path}:{number}: the event has no chain"))
                    continue
                seq, prev, digest = link.seq, link.prev, link.hash
                links_only.setdefault(stream, set()).add(seq)
            known = streams.setdefault(stream, {})
            if seq in known:
                if known[seq] == digest:
                    duplicates[stream] = duplicates.get(stream, 0) + 1
                else:
                    findings.append(
                        Finding("conflict", stream, f"{path}:{number}: seq {seq} seen with two hashes", [seq])
                    )
                continue
            known[seq] = digest
            prevs.setdefault(stream, {})[seq] = prev
    summaries = []
    for stream, known in sorted(streams.items()):
        seqs = sorted(known)
        start = seqs[0] if from_seq is None else min(from_seq, seqs[0])
        missing = sorted(set(range(start, seqs[-1] + 1)) - set(seqs) - altered.get(stream, set()))
        if missing:
            findings.append(Finding("missing", stream, f"seq {ranges_text(missing)} not in the export", missing))
        for seq in seqs:
            expected = known.get(seq - 1, GENESIS if seq == 1 else None)
            if expected is not None and prevs[stream][seq] != expected:
                findings.append(Finding("broken", stream, f"seq {seq}'s prev is not seq {seq - 1}'s hash", [seq]))
        summaries.append(
            StreamSummary(
                stream,
                seqs[0],
                seqs[-1],
                len(seqs),
                duplicates.get(stream, 0),
                known[seqs[-1]],
                len(links_only.get(stream, ())),
            )
        )
    if not streams and not findings:
        # An export of the wrong period or index is empty, and "every chain checks" of nothing
        # read as a pass (exit 0) to whoever ran it.
        names = ", ".join(str(path) for path in paths)
        findings.append(Finding("empty", "-", f"no event in {names}: nothing was checked"))
    return findings, summaries
