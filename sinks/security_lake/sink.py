"""Amazon Security Lake custom sources: OCSF 1.1.0 events as Parquet objects in the lake's bucket.

What the Security Lake user guide ("Collecting data from custom sources") asks, and how: one OCSF
event class per object (a batch is split by class, and each class is its own custom source,
``source_name``); Apache Parquet, zstd, data pages of about 1 MB at most and row groups of 256 MB
at most, records sorted by time (``parquet.to_parquet``); objects under
``ext/<source>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/`` (event time, UTC); an
object at most every five minutes unless large, at least once an event day (the batch settings,
``config.py``).

Nothing lost, nothing twice: an object's name comes from the ids of the events it holds (as the
``s3`` sink's do) and it is written create-only through the same ``S3Objects`` machinery, so a
batch replayed after a crash lands on the same keys, and S3's 412 for an object holding the same
bytes counts as delivered. Parquet output is deterministic for the same rows, which that
comparison needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from forwarder.formats import ocsf
from forwarder.record import Record
from sinks.base import DeliveryReport, FatalSinkError
from sinks.s3 import S3Objects, object_name
from sinks.security_lake.config import OCSF_VERSION, SecurityLakeSinkConfig

CONTENT_TYPE = "application/vnd.apache.parquet"
_DAY_MS = 86_400_000
CLASS_NAMES = {3001: "account_change", 3002: "authentication", 3004: "entity_management", 3005: "user_access",
               3006: "group_management", 6003: "api_activity"}  # fmt: skip
"""The OCSF 1.1.0 names of the classes the mapping emits (tests check them against the schema)."""


class SecurityLakeSink(S3Objects):
    type_name: ClassVar[str] = "security_lake"
    config: SecurityLakeSinkConfig

    def __init__(self, name: str, config: SecurityLakeSinkConfig) -> None:
        super().__init__(name, config)
        self._include_raw = bool(config.format_options.get("include_raw", True))
        self._pending: dict[str, tuple[int, list[dict[str, Any]]]] = {}

    async def start(self) -> None:
        await asyncio.to_thread(self._parquet)  # pyarrow missing: say so before any batch
        await super().start()

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        if not batch:
            return None
        client = await self._get_client()
        objects = await asyncio.to_thread(self._group, batch)
        await self._put_all(client, objects)
        return None

    async def check(self) -> str:
        """The extra is installed, and the bucket takes objects under the prefix: a probe object is
        written (create-only) and deleted again."""
        try:
            await asyncio.to_thread(self._parquet)
        except RuntimeError as exc:
            raise FatalSinkError(f"security_lake sink {self.name}: {exc}") from None
        client = await self._get_client()
        cfg = self.config
        prefix = f"ext/{cfg.source_name.format(**{'class': 'api_activity', 'class_uid': '6003'})}/"
        key = f"{prefix}.audit-forwarder-check-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        try:
            await asyncio.to_thread(client.put_object, Bucket=cfg.bucket, Key=key, Body=b"", IfNoneMatch="*")
        except Exception as exc:
            raise self._classify(exc, f"PutObject s3://{cfg.bucket}/{key}") from None
        try:
            await asyncio.to_thread(client.delete_object, Bucket=cfg.bucket, Key=key)
        except Exception as exc:
            raise self._classify(exc, f"DeleteObject s3://{cfg.bucket}/{key}") from None
        return f"s3://{cfg.bucket}/{prefix} writable at {self._where()}"

    @staticmethod
    def _parquet() -> Any:
        from sinks.security_lake import parquet  # pyarrow loads with it, only for this sink

        try:
            parquet._require()
        except parquet.MissingExtra as exc:
            raise RuntimeError(str(exc)) from None
        return parquet

    def source(self, class_uid: int) -> str:
        return self.config.source_name.format(**{"class": CLASS_NAMES[class_uid], "class_uid": str(class_uid)})

    def _group(self, batch: Sequence[Record]) -> dict[str, list[Record]]:
        """One object per class and event day, named after its events; the OCSF documents are kept
        for ``_put_sync`` (made once, here, with the class they decided)."""
        cfg = self.config
        groups: dict[tuple[int, int], list[tuple[Record, dict[str, Any]]]] = {}
        for record in batch:
            doc = ocsf.ocsf_event(record.event(), self._include_raw, OCSF_VERSION)
            groups.setdefault((doc["class_uid"], record.time_ms // _DAY_MS), []).append((record, doc))
        objects: dict[str, list[Record]] = {}
        self._pending = {}
        for (class_uid, day), members in groups.items():
            members.sort(key=lambda member: (member[0].time_ms, member[0].seq))  # sorted by time
            records = [record for record, _ in members]
            event_day = datetime.fromtimestamp(day * _DAY_MS / 1000, tz=UTC)
            key = (
                f"ext/{self.source(class_uid)}/region={cfg.region}/accountId={cfg.account_id}/"
                f"eventDay={event_day:%Y%m%d}/{object_name(records)}.parquet"
            )
            objects[key] = records
            self._pending[key] = (class_uid, [doc for _, doc in members])
        return objects

    def _put_sync(self, client: Any, key: str, records: list[Record]) -> None:
        class_uid, docs = self._pending[key]
        body = self._parquet().to_parquet(docs, OCSF_VERSION, class_uid)
        del docs
        self._store(
            client, key, body, records, CONTENT_TYPE,
            {"format": f"ocsf-{OCSF_VERSION}-parquet", "ocsf-class-uid": str(class_uid)},
        )  # fmt: skip
