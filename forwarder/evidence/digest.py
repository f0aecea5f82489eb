"""Signed, chained digests of what a sink stored (format: docs/evidence.md, "Digest format").

A digest file is ``{"body": {...}, "signature": "<base64>"}``; the signature is Ed25519 over
the body as canonical JSON (sorted keys, orjson). The body names the previous digest (its
location, the SHA-256 of its file and its signature), so deleting, reordering or replacing one
breaks the chain; it is written every interval even when nothing was stored.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from forwarder.event import canonical_json, format_time
from forwarder.evidence.keys import fingerprint, public_pem, valid

if TYPE_CHECKING:  # cryptography is loaded where a key is: a daemon without evidence never loads it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION = 1
NAME = re.compile(r"digest-(\d{8}T\d{6}\.\d{3}Z)\.json")
_MS = timedelta(milliseconds=1)


def digest_name(at: datetime) -> str:
    """Sorts in time order; the name is the body's ``to``, to the millisecond (``verify`` checks it)."""
    at = at.astimezone(UTC)
    return f"digest-{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z.json"


def interval_end(previous_end: datetime | None) -> datetime:
    """Now, to the millisecond, and after the previous digest's end (two digests never share a name)."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return now if previous_end is None or now > previous_end else previous_end + _MS


@dataclass
class StreamRange:
    """What one listed object holds of one stream's chain: its lowest and highest seq (with the
    ``prev`` of the one and the ``hash`` of the other, to join objects into the chain) and the
    exact seqs, as ``[first, last]`` runs: an object need not hold a contiguous run (a batch
    split across two hourly partitions interleaves them)."""

    first: int
    last: int
    first_prev: str
    last_hash: str
    seqs: list[list[int]] = field(default_factory=list)
    _held: set[int] = field(default_factory=set, repr=False)

    def add(self, seq: int, prev: str, digest: str) -> None:
        if seq < self.first:
            self.first, self.first_prev = seq, prev
        if seq > self.last:
            self.last, self.last_hash = seq, digest
        self._held.add(seq)

    def as_dict(self) -> dict[str, Any]:
        runs: list[list[int]] = [list(r) for r in self.seqs]
        for seq in sorted(self._held):
            if runs and runs[-1][1] + 1 >= seq:
                runs[-1][1] = max(runs[-1][1], seq)
            else:
                runs.append([seq, seq])
        return {
            "first": self.first,
            "last": self.last,
            "first_prev": self.first_prev,
            "last_hash": self.last_hash,
            "seqs": runs,
        }


@dataclass
class Listing:
    """One object or file in a digest: its content's SHA-256 (uncompressed), events and chains."""

    location: str
    sha256: str
    bytes: int
    events: int = 0
    first_time: str | None = None
    last_time: str | None = None
    chains: dict[str, StreamRange] = field(default_factory=dict)
    state: str = "closed"  # file sink: "open" lists the prefix of a file still being appended to

    def add_event(self, stream: str, seq: int | None, prev: str, digest: str, time: str | None) -> None:
        self.events += 1
        if time is not None:
            self.first_time = time if self.first_time is None else min(self.first_time, time)
            self.last_time = time if self.last_time is None else max(self.last_time, time)
        if seq is not None:
            found = self.chains.get(stream)
            if found is None:
                found = self.chains[stream] = StreamRange(seq, seq, prev, digest)
            found.add(seq, prev, digest)

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "events": self.events,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "state": self.state,
            "chains": {s: r.as_dict() for s, r in sorted(self.chains.items())},
        }


def build(
    *,
    sink: str,
    kind: str,
    start: datetime,
    end: datetime,
    listings: list[Listing],
    previous: dict[str, Any] | None,
    key: Ed25519PrivateKey,
) -> bytes:
    body = {
        "version": VERSION,
        "sink": sink,
        "kind": kind,
        "from": format_time(start),
        "to": format_time(end),
        "previous": previous,
        "key_fingerprint": fingerprint(key.public_key()),
        "public_key": public_pem(key.public_key()),
        "objects": [listing.as_dict() for listing in sorted(listings, key=lambda x: x.location)],
    }
    signature = base64.b64encode(key.sign(canonical_json(body))).decode()
    return orjson.dumps({"body": body, "signature": signature}, option=orjson.OPT_INDENT_2) + b"\n"


def previous_of(location: str, data: bytes) -> dict[str, Any]:
    """What the next digest says of this one."""
    return {
        "location": location,
        "sha256": hashlib.sha256(data).hexdigest(),
        "signature": orjson.loads(data)["signature"],
    }


def parse(data: bytes) -> tuple[dict[str, Any], str]:
    doc = orjson.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict) or not isinstance(doc.get("signature"), str):
        raise ValueError("not a digest document")
    return doc["body"], doc["signature"]


def signed_by(body: dict[str, Any], signature: str, key: Ed25519PublicKey) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    return valid(key, raw, canonical_json(body))
