"""Digests of an S3 sink's objects (docs/evidence.md).

Every object the sink stores is noted, once S3 confirmed it, in a local ledger (one JSON line,
fsynced, before the batch counts as delivered): a crash after the PUT and before the note
leaves the batch unconfirmed, so it is sent again, finds its object (412, same bytes) and is
noted then. Every interval the ledger becomes a signed digest under ``digest_prefix``, chained
to the newest digest already there, and is emptied. A digest is written even with nothing new.

Replicas (docs/high-availability.md): the ledger is local to the replica that stored the
objects, so a replica that crashed, was frozen or gave the sink up for the balance may leave
noted objects no digest lists. The replica that gains the lease therefore sweeps the store
before its first digest (``_sweep``): every object under the sink's prefix stored since the
newest digest's start and listed neither there nor in its own ledger is read, listed and noted.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog

from forwarder.evidence import digest
from forwarder.evidence.digest_writer import DigestWriter, listing_of
from forwarder.evidence.settings import EvidenceSettings, ObjectLock

log = structlog.get_logger("forwarder.evidence")


def lock_params(lock: ObjectLock | None) -> dict[str, Any]:
    if lock is None:
        return {}
    until = datetime.now(UTC) + timedelta(days=lock.retain_days)
    # S3 refuses a locked PUT without a checksum it can name: x-amz-sdk-checksum-algorithm
    # with the x-amz-checksum-sha256 the caller sets (or Content-MD5, which evidence does not use).
    return {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": until, "ChecksumAlgorithm": "SHA256"}


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class S3Digests(DigestWriter):
    kind = "s3"

    def __init__(
        self, sink: str, bucket: str, settings: EvidenceSettings, lock: ObjectLock | None, client: Any,
        prefix: str = "",
    ) -> None:  # fmt: skip
        """``prefix``: the fixed start of the sink's keys, where a takeover sweeps."""
        super().__init__(sink, settings)
        self.bucket = bucket
        self.prefix = prefix
        self.object_lock = lock
        self.client = client  # a callable returning the sink's boto3 client
        directory = settings.ledger_directory or Path(".")
        self.ledger = directory / f"{sink}.pending.jsonl"
        self._mutex = threading.Lock()
        self._loaded = False

    def note(self, key: str, content: bytes) -> None:
        """In the PUT's worker thread, after S3 confirmed it: durable before the batch is."""
        with self._mutex:
            self._append([listing_of(key, content)])

    def _append(self, listings: list[digest.Listing]) -> None:
        if not listings:
            return
        self.ledger.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"".join(orjson.dumps(listing.as_dict()) + b"\n" for listing in listings))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _refresh(self) -> None:
        with self._mutex:
            if not self._stale and self._previous is not None:
                found = self.client().list_objects_v2(
                    Bucket=self.bucket, Prefix=self.settings.digest_prefix, StartAfter=self._previous[0]
                )
                prefix = self.settings.digest_prefix
                self._stale = any(digest.NAME.fullmatch(i["Key"][len(prefix) :]) for i in found.get("Contents", []))
            if self._stale:
                self._previous = None
                self._load_previous()
                self._sweep()
                self._stale = False

    def _sweep(self) -> None:
        """Objects another holder stored and noted in its own ledger, but no digest lists yet:
        those ``verify`` would call unlisted once this replica's next digest is written. Read
        from the store since the newest digest's start (a second's allowance, as ``verify``)."""
        client, since, listed = self.client(), None, {x.location for x in self._pending()}
        if self._previous is not None:
            body, _ = digest.parse(self._previous[1])
            since = datetime.fromisoformat(body["from"].replace("Z", "+00:00")) - timedelta(seconds=1)
            listed |= {o["location"] for o in body["objects"]}
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.startswith(self.settings.digest_prefix) or key in listed:
                    continue
                if since is None or item["LastModified"] >= since:
                    body_bytes = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    content = gzip.decompress(body_bytes) if body_bytes[:2] == b"\x1f\x8b" else body_bytes
                    found.append(listing_of(key, content))
        self._append(found)
        if found:
            log.info("objects stored by the lease's previous holder, listed in this replica's next digest",
                     sink=self.sink, objects=len(found))  # fmt: skip

    def _load_previous(self) -> None:
        client, prefix = self.client(), self.settings.digest_prefix
        newest: str | None = None
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if digest.NAME.fullmatch(name) and (newest is None or name > newest):
                    newest = name
        if newest is not None:
            self._chain_to(prefix + newest, client.get_object(Bucket=self.bucket, Key=prefix + newest)["Body"].read())
        self._loaded = True

    def _pending(self) -> list[digest.Listing]:
        seen: dict[str, digest.Listing] = {}
        try:
            raw = self.ledger.read_bytes()
        except FileNotFoundError:
            return []
        for line in raw.splitlines():
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a note cut by a crash: its batch was not confirmed, it is noted again
            listing = digest.Listing(
                item["location"], item["sha256"], item["bytes"], item["events"], item["first_time"], item["last_time"]
            )
            listing.chains = {s: digest.StreamRange(**r) for s, r in item["chains"].items()}
            seen[listing.location] = listing
        return list(seen.values())

    def write(self) -> str:
        with self._mutex:
            if not self._loaded:
                self._load_previous()
            now = self._end()
            data = self._signed(self._pending(), now)
            key = self.settings.digest_prefix + digest.digest_name(now)
            self.client().put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                ContentType="application/json",
                ChecksumSHA256=sha256_b64(data),
                **lock_params(self.object_lock),
            )
            self._chain_to(key, data, now)
            self.ledger.unlink(missing_ok=True)  # a crash before this lists them again: verify allows it
            return key
