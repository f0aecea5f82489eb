"""Digests of an S3 sink's objects (docs/evidence.md).

Every object the sink stores is noted, once S3 confirmed it, in a local ledger (one JSON line,
fsynced, before the batch counts as delivered): a crash after the PUT and before the note
leaves the batch unconfirmed, so it is sent again, finds its object (412, same bytes) and is
noted then. Every interval the ledger becomes a signed digest under ``digest_prefix``, chained
to the newest digest already there, and is emptied. A digest is written even with nothing new.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog

from forwarder.evidence import digest
from forwarder.evidence.keys import load_private
from forwarder.evidence.lines import link_of
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


def listing_of(key: str, content: bytes) -> digest.Listing:
    out = digest.Listing(key, hashlib.sha256(content).hexdigest(), len(content))
    for line in content.split(b"\n"):
        found = link_of(line)
        if found is not None:
            out.add_event(found.stream, found.seq, found.prev, found.hash, found.time)
    return out


class S3Digests:
    def __init__(
        self, sink: str, bucket: str, settings: EvidenceSettings, lock: ObjectLock | None, client: Any
    ) -> None:
        self.sink = sink
        self.bucket = bucket
        self.settings = settings
        self.object_lock = lock
        self.client = client  # a callable returning the sink's boto3 client
        self.key = load_private(settings.signing_key_file)
        directory = settings.ledger_directory or Path(".")
        self.ledger = directory / f"{sink}.pending.jsonl"
        self._mutex = threading.Lock()
        self._previous: tuple[str, bytes, datetime] | None = None
        self._loaded = False
        self._task: asyncio.Task[None] | None = None

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

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            try:
                await asyncio.to_thread(self.write)
            except Exception as exc:  # S3 unreachable at shutdown: the ledger keeps it for the next start
                log.error("cannot write the last digest; the next start writes it", sink=self.sink, error=str(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.digest_interval_s)
            try:
                await asyncio.to_thread(self.write)
            except Exception as exc:
                log.error("cannot write a digest; tried again next interval", sink=self.sink, error=str(exc))

    def _load_previous(self) -> None:
        client, prefix = self.client(), self.settings.digest_prefix
        newest: str | None = None
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if digest.NAME.fullmatch(name) and (newest is None or name > newest):
                    newest = name
        if newest is not None:
            data = client.get_object(Bucket=self.bucket, Key=prefix + newest)["Body"].read()
            body, _ = digest.parse(data)
            self._previous = (prefix + newest, data, datetime.fromisoformat(body["to"].replace("Z", "+00:00")))
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
            listing = digest.Listing(item["location"], item["sha256"], item["bytes"], item["events"],
                                     item["first_time"], item["last_time"])  # fmt: skip
            listing.chains = {s: digest.StreamRange(**r) for s, r in item["chains"].items()}
            seen[listing.location] = listing
        return list(seen.values())

    def write(self) -> str:
        with self._mutex:
            if not self._loaded:
                self._load_previous()
            now = digest.interval_end(None if self._previous is None else self._previous[2])
            listings = self._pending()
            previous, start = None, now
            if self._previous is not None:
                previous = digest.previous_of(self._previous[0], self._previous[1])
                start = self._previous[2]
            data = digest.build(sink=self.sink, kind="s3", start=start, end=now, listings=listings,
                                previous=previous, key=self.key)  # fmt: skip
            key = self.settings.digest_prefix + digest.digest_name(now)
            self.client().put_object(
                Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", ContentType="application/json",
                ChecksumSHA256=sha256_b64(data), **lock_params(self.object_lock),
            )  # fmt: skip
            self._previous = (key, data, now)
            self.ledger.unlink(missing_ok=True)  # a crash before this lists them again: verify allows it
            return key
