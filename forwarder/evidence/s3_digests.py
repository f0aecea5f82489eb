"""Digests of an S3 sink's objects (docs/evidence.md).

Every object the sink stores is noted, once S3 confirmed it, in a local ledger (one JSON line,
fsynced, before the batch counts as delivered): a crash after the PUT and before the note
leaves the batch unconfirmed, so it is sent again, finds its object (412, same bytes) and is
noted then. Every interval the ledger becomes a signed digest under ``digest_prefix``, chained
to the newest digest already there, and is emptied. A digest is written even with nothing new.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from forwarder.evidence import digest
from forwarder.evidence.digest_writer import DigestWriter, listing_of
from forwarder.evidence.settings import EvidenceSettings, ObjectLock


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
        self, sink: str, bucket: str, settings: EvidenceSettings, lock: ObjectLock | None, client: Any
    ) -> None:
        super().__init__(sink, settings)
        self.bucket = bucket
        self.object_lock = lock
        self.client = client  # a callable returning the sink's boto3 client
        directory = settings.ledger_directory or Path(".")
        self.ledger = directory / f"{sink}.pending.jsonl"
        self._mutex = threading.Lock()
        self._loaded = False

    def note(self, key: str, content: bytes) -> None:
        """In the PUT's worker thread, after S3 confirmed it: durable before the batch is."""
        line = orjson.dumps(listing_of(key, content).as_dict()) + b"\n"
        with self._mutex:
            self.ledger.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

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
