"""``verify`` of a file-sink directory or an S3 prefix, as ``aws cloudtrail validate-logs`` does
for CloudTrail: the digests walked back from the newest, each signature and link checked,
every listed object re-hashed, every missing, altered, moved or unlisted one named.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forwarder.evidence import digest
from forwarder.evidence.altered import changes, listed_seqs
from forwarder.evidence.exports import Finding, ranges_text
from forwarder.evidence.file_digests import ROTATED, data_files, identity, read_content
from forwarder.evidence.keys import SigningKeyError, fingerprint, load_public

_STAMP = re.compile(r"\.(\d{8}T\d{6}Z)(?:\.\d+)?(?:\.gz)?$")


@dataclass
class StoredObject:
    location: str  # as a digest lists it
    written: datetime  # S3's LastModified, a rotated file's rotation time, else its mtime
    rotated: bool = True  # False: a file sink's file still being appended to


class Store(Protocol):
    where: str

    def digests(self) -> dict[str, bytes]: ...

    def objects(self) -> dict[str, StoredObject]: ...

    def content(self, location: str, limit: int | None = None) -> bytes | None: ...


class FileStore:
    def __init__(self, root: Path, digests: Path | None = None) -> None:
        self.root = root
        self.directory = digests or root / "_digests"
        self.where = str(root)

    def digests(self) -> dict[str, bytes]:
        if not self.directory.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in self.directory.iterdir() if p.is_file() and p.name.startswith("digest")}

    def objects(self) -> dict[str, StoredObject]:
        out = {}
        for path in data_files(self.root, self.directory):
            if ROTATED.fullmatch(path.name):
                stamp = _STAMP.search(path.name)
                assert stamp is not None
                written = datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                out[str(Path(identity(path)).relative_to(self.root))] = StoredObject("", written)
            else:
                written = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
                out[str(path.relative_to(self.root))] = StoredObject("", written, rotated=False)
        for location, item in out.items():
            item.location = location
        return out

    def content(self, location: str, limit: int | None = None) -> bytes | None:
        for candidate in (self.root / location, self.root / f"{location}.gz"):
            if candidate.is_file():
                return read_content(candidate, limit)
        return None


class S3Store:
    def __init__(self, client: Any, bucket: str, prefix: str, digest_prefix: str) -> None:
        self.client, self.bucket, self.prefix, self.digest_prefix = client, bucket, prefix, digest_prefix
        self.where = f"s3://{bucket}/{prefix}"

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += page.get("Contents", [])
        return out

    def digests(self) -> dict[str, bytes]:
        return {
            item["Key"]: self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            for item in self._list(self.digest_prefix)
        }

    def objects(self) -> dict[str, StoredObject]:
        return {
            item["Key"]: StoredObject(item["Key"], item["LastModified"])
            for item in self._list(self.prefix)
            if not item["Key"].startswith(self.digest_prefix)
        }

    def content(self, location: str, limit: int | None = None) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=location)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


@dataclass
class Result:
    findings: list[Finding]
    digests: int
    objects: int
    pending: list[str]
    streams: dict[str, tuple[int, int]]
    # the newest digest reached, and when it was written: nothing can show that a later one
    # existed (deleted) or that output was written after it, so its age is for the auditor to judge
    newest: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.findings,
            "newest_digest": self.newest,
            "digests": self.digests,
            "objects": self.objects,
            "pending": self.pending,
            "streams": {s: {"first": a, "last": b} for s, a, b in ((s, *r) for s, r in sorted(self.streams.items()))},
            "findings": [f.as_dict() for f in self.findings],
        }


def _name(location: str) -> str:
    return location.rsplit("/", 1)[-1]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def verify_store(store: Store, keys: list[Ed25519PublicKey], *, allow_chain_gaps: bool = False) -> Result:
    """``keys``: every public key trusted over the period (more than one across a key rotation)."""
    findings: list[Finding] = []

    def bad(kind: str, detail: str) -> None:
        findings.append(Finding(kind, "-", detail))

    raw = store.digests()
    parsed: dict[str, tuple[dict[str, Any], str]] = {}
    for location, data in sorted(raw.items()):
        if not digest.NAME.fullmatch(_name(location)):
            continue
        try:
            body, signature = digest.parse(data)
        except ValueError:
            bad("digest_unreadable", f"{location}: not a digest")
            continue
        if not any(digest.signed_by(body, signature, key) for key in keys):
            other = ""
            try:
                embedded = load_public(str(body.get("public_key", "")).encode(), location)
                if digest.signed_by(body, signature, embedded):
                    other = f" (signed by another key, fingerprint {fingerprint(embedded)})"
            except SigningKeyError:
                pass
            bad("digest_signature", f"{location}: signature does not verify with the trusted key{other}")
            continue
        if body.get("to") is None or digest.digest_name(_time(body["to"])) != _name(location):
            bad("digest_moved", f"{location}: its name does not match the time it was written ({body.get('to')})")
        parsed[location] = (body, signature)
    if not parsed:
        bad("no_digests", f"no valid digest under {store.where}")
        return Result(findings, 0, 0, [], {})
    # the chain: back from the newest, each link to the one before by location, hash and signature
    newest = max(parsed, key=lambda loc: (_name(loc), loc))
    reached: list[str] = []
    current: str | None = newest
    while current is not None and current not in reached:
        reached.append(current)
        body, _ = parsed[current]
        previous = body.get("previous")
        if previous is None:
            break
        location = previous.get("location")
        linked = raw.get(location)
        if linked is None:
            bad("digest_missing", f"{current}: its previous digest {location} is missing")
            break
        if hashlib.sha256(linked).hexdigest() != previous.get("sha256"):
            bad("digest_link", f"{current}: previous digest {location} is not the one it was chained to")
            break
        if location not in parsed:
            break  # reported above (signature or format)
        if parsed[location][1] != previous.get("signature") or parsed[location][0]["to"] != body["from"]:
            bad("digest_link", f"{current}: previous digest {location} does not link (signature or interval)")
            break
        current = location
    for location in sorted(set(parsed) - set(reached)):
        bad("digest_unchained", f"{location}: not on the chain back from the newest digest {newest}")
    # the objects the reached digests list
    listed: dict[str, dict[str, Any]] = {}
    for location in reached:
        for item in parsed[location][0]["objects"]:
            if item.get("state") == "open" and location != newest:
                continue  # superseded by a later digest's listing of that file
            prior = listed.get(item["location"])
            if prior is not None and prior["sha256"] != item["sha256"] and prior.get("state") == item.get("state"):
                bad("conflict", f"{item['location']}: listed with two different hashes")
            listed.setdefault(item["location"], item)
    stored = store.objects()
    hashes: dict[str, str] = {}  # sha256 of each unlisted stored object, to find moved ones
    unlisted = [loc for loc in stored if loc not in listed]
    for location in unlisted:
        found = store.content(location)
        if found is not None:
            hashes[hashlib.sha256(found).hexdigest()] = location
    moved_to: set[str] = set()
    streams: dict[str, set[int]] = {}

    def holds(item: dict[str, Any]) -> None:
        """The seqs an object shown intact (where listed, or moved) holds."""
        for stream, chain in item.get("chains", {}).items():
            held = streams.setdefault(stream, set())
            for first, last in chain.get("seqs") or [[chain["first"], chain["last"]]]:
                held.update(range(first, last + 1))

    for location, item in sorted(listed.items()):
        content = store.content(location, item["bytes"] if item.get("state") == "open" else None)
        if content is not None and item.get("state") == "open":
            content = content[: item["bytes"]]
        if content is None:
            elsewhere = hashes.get(item["sha256"])
            if elsewhere is not None:
                moved_to.add(elsewhere)
                bad("moved", f"{location}: not there; its content is at {elsewhere}")
                holds(item)
            elif item.get("state") == "open" and _rotated_since(store, stored, location, item):
                pass
            else:
                held = {stream: sorted(seqs) for stream, seqs in listed_seqs(item).items() if seqs}
                text = "; ".join(f"{stream} seq {ranges_text(seqs)}" for stream, seqs in sorted(held.items()))
                findings.append(
                    Finding(
                        "missing",
                        next(iter(held)) if len(held) == 1 else "-",
                        f"{location}: listed in a digest, not found" + (f"; it held {text}" if text else ""),
                        sorted({seq for seqs in held.values() for seq in seqs}),
                    )
                )
            continue
        if hashlib.sha256(content).hexdigest() != item["sha256"]:
            if item.get("state") == "open" and _rotated_since(store, stored, location, item):
                continue
            if item.get("state") == "open":  # the whole file: its listed seqs may have moved past the prefix
                inside = changes(store.content(location) or content, item, item["bytes"])
            else:
                inside = changes(content, item)
            streams_changed = inside.streams()
            detail = f"{location}: content does not match its digest's SHA-256"
            findings.append(
                Finding(
                    "altered",
                    next(iter(streams_changed)) if len(streams_changed) == 1 else "-",
                    f"{detail}: {inside.text()}" if inside.text() else detail,
                    inside.seqs(),
                )
            )
            continue
        holds(item)
    # S3's LastModified and a rotation's stamp have whole seconds: a second's allowance
    newest_from = _time(parsed[newest][0]["from"]) - timedelta(seconds=1)
    newest_to = _time(parsed[newest][0]["to"])
    pending = []
    for location in sorted(unlisted):
        if location in moved_to:
            continue
        item = stored[location]
        fresh = item.written >= newest_from if item.rotated else item.written > newest_to
        if fresh:
            pending.append(location)
        else:
            bad("unlisted", f"{location}: stored before the newest digest, yet listed in none")
    ranges: dict[str, tuple[int, int]] = {}
    for stream, seqs in streams.items():
        first, last = min(seqs), max(seqs)
        ranges[stream] = (first, last)
        missing = sorted(set(range(first, last + 1)) - seqs)
        if missing and not allow_chain_gaps:
            findings.append(Finding("chain_gap", stream, f"seq {ranges_text(missing)} in no listed object", missing))
    newest_seen = {"location": newest, "to": parsed[newest][0]["to"]}
    return Result(findings, len(reached), len(listed), pending, ranges, newest_seen)


def _rotated_since(store: Store, stored: dict[str, StoredObject], location: str, item: dict[str, Any]) -> bool:
    """An open file of the newest digest since rotated: a rotated file must start with the listed prefix."""
    for candidate in stored:
        if candidate.startswith(location + ".") and ROTATED.fullmatch(_name(candidate)):
            content = store.content(candidate)
            if content is not None and hashlib.sha256(content[: item["bytes"]]).hexdigest() == item["sha256"]:
                return True
    return False
