"""Amazon Security Lake custom sources: OCSF 1.1.0 events as Parquet objects in the lake's bucket.

Install the extra first: `pip install 'audit-forwarder[security-lake]'` (pyarrow and the official
OCSF schema; the base install stays without them). `audit-forwarder check` says so when it is
missing, and probes that the bucket takes objects under the source's prefix (it writes an empty
object there, create-only, and deletes it).

**What Amazon's user guide asks** ("Collecting data from custom sources in Security Lake", as
stored in 2026-12; only its opening could be read in full here): the data must be converted to
OCSF and meet Security Lake's requirements for partitioning, Parquet format, object size and rate;
each unique OCSF event class should be delivered as a separate custom source (at most 50 per
account), written as S3 objects under the prefix Security Lake assigns to the source; every object
is an Apache Parquet file, and the same OCSF event class applies to every record in an object; a
source should be checked with the OCSF validation tool for compatibility with **OCSF 1.1**, the
only version the guide names. Its best-practice section (partitions
`ext/<source>/region=<region>/accountId=<account or external id>/eventDay=<YYYYMMDD>/`, objects
sent every five minutes to once an event day, zstd, pages of about 1 MB at most, row groups of
256 MB at most, records sorted by time) is taken from the issue's and the research's summary of
the guide and from Tenzir's Security Lake documentation, which lists the same partitioning, rate
and sorting. The sink is pinned to OCSF **1.1.0**; the plain `ocsf` format defaults to 1.8.0 and
moves on independently.

**How the sink does it:**

- Where: under each custom source's location, `ext/<source>/`, or `ext/<source>/<source_version>/`
  when the sources were created with a `sourceVersion` (CreateCustomLogSource's
  `provider.location` says which; set `source_version` to match), then
  `region=<region>/accountId=<account_id>/eventDay=<YYYYMMDD>/`.
- One object per OCSF class and event day (UTC, from the event's time): a batch is split by both.
  Each class is its own custom source, named by `source_name` (`{class_uid}` or `{class}` filled
  in, e.g. `audit-forwarder-3004`; at most 20 characters, as CreateCustomLogSource requires of a
  custom source's name): register one custom source per class the
  events use (3001 Account Change, 3002 Authentication, 3004 Entity Management, 3005 User Access
  Management, 3006 Group Management, 6003 API Activity: `docs/formats.md` says which events go where).
- Parquet (pyarrow), zstd, data pages aimed at 3/4 MB and kept within 1 MB, row groups within
  256 MB; rows sorted by event time (then journal order).
- The columns of each class are its attributes in OCSF 1.1.0 (plus the `host` profile, which 1.1
  needs for an actor on 3004/3005/3006), derived from the official schema export, so every object of
  a class has the same schema; free-form values (`unmapped`) and objects nested deeper than three
  levels are JSON text. Every row is valid against the official 1.1.0 schema (tested).
- Rate, through the shared batching: a batch waits `batch_max_age_s` (default 300 s, at least 300,
  at most 86,400) unless it reaches `batch_max_events` or `batch_max_bytes` first; the end of a
  poll does not send it early (other sinks do). So an object goes out at most every five minutes
  unless it is large, and every event is in an object within `batch_max_age_s` (at least once an
  event day). A `once` run and a shutdown send what is waiting at once.

**Guarantees:** nothing lost, nothing stored twice. An object's name comes from the ids of the
events it holds (`<time of the first>-<hash of the ids>.parquet`) and it is written create-only
(`If-None-Match: *`) through the object writer it shares with the `s3` sink: a batch replayed
after a crash lands on the same keys, and S3's `412` for an object holding the same bytes counts
as delivered (the Parquet bytes are the same for the same events). Proven under SIGKILLs with every object read back
(`tests/reliability/test_security_lake_crash.py`). Credentials come only from the AWS SDK's standard
chain: the role Security Lake created for the custom source, assumed through the environment or a
profile. Connection, encryption, integrity and Object Lock options are the `s3` sink's (the shared
object writer, `sinks/s3_objects.py`): with `object_lock` every object is written under the lock and
with its SHA-256 (without a lock, `checksum: sha256` sends the SHA-256 alone).

**Evidence:** every row carries its event's hash-chain link (`metadata.sequence` and
`unmapped.chain`, docs/formats.md). The signed digests of the `s3` and `file` sinks (`evidence`) are
not offered here: they list each object's NDJSON lines and `audit-forwarder verify` reads gzip
NDJSON back, neither of which a Parquet object is, and the lake's bucket belongs to Security Lake,
not to a digest prefix of ours. Keep an `s3` sink with `evidence` beside this one for that proof.

**The role and its external id.** Security Lake creates for each custom source a role
(`AmazonSecurityLake-Provider-<source>-<region>`, CreateCustomLogSource's `provider.roleArn`)
that the source's writer assumes with the external id given when the source was created. Give
it as a profile (`AWS_PROFILE`): `role_arn`, `external_id` and `source_profile` (or
`credential_source`) in the AWS config file. botocore assumes the role again before its
credentials expire, so a long run goes on (tested against a loopback STS handing out
one-minute credentials). Keys in the environment (`AWS_ACCESS_KEY_ID`) win over `AWS_PROFILE`
in the chain: leave them unset, or the role is not assumed (temporary keys given that way
cannot be renewed: once expired, the sink retries saying so). A refused assumption (trust
policy, wrong external id) stops the sink naming STS, not S3. *Inferred*: each source's role
may write only under its own location, while this sink writes one source per class: give the
profile a role allowed to write under every source's location (`s3:PutObject` on
`ext/<prefix>*` of the lake's bucket).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from forwarder.formats import ocsf
from forwarder.record import Record
from sinks.base import FatalSinkError
from sinks.s3_objects import S3Objects, object_name
from sinks.security_lake.config import OCSF_VERSION, SecurityLakeSinkConfig

CONTENT_TYPE = "application/vnd.apache.parquet"
_DAY_MS = 86_400_000
CLASS_NAMES = {
    3001: "account_change",
    3002: "authentication",
    3004: "entity_management",
    3005: "user_access",
    3006: "group_management",
    6003: "api_activity",
}
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

    async def check(self) -> str:
        """The extra is installed, and the bucket takes objects under the prefix: an empty probe
        object is written (create-only) and deleted again; if the role may not delete, ``check``
        still passes and names the object to delete."""
        try:
            await asyncio.to_thread(self._parquet)
        except RuntimeError as exc:
            raise FatalSinkError(f"security_lake sink {self.name}: {exc}") from None
        client = await self._get_client()
        cfg = self.config
        prefix = cfg.location(self.source(6003))
        key = f"{prefix}.audit-forwarder-check-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        try:
            await asyncio.to_thread(client.put_object, Bucket=cfg.bucket, Key=key, Body=b"", IfNoneMatch="*")
        except Exception as exc:
            raise self._classify(exc, f"PutObject s3://{cfg.bucket}/{key}") from None
        try:
            await asyncio.to_thread(client.delete_object, Bucket=cfg.bucket, Key=key)
        except Exception as exc:  # the role Security Lake makes may grant PutObject only
            reason = self._classify(exc, "DeleteObject")
            return f"s3://{cfg.bucket}/{prefix} writable at {self._where()}; delete the probe object {key} ({reason})"
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
                f"{cfg.location(self.source(class_uid))}region={cfg.region}/accountId={cfg.account_id}/"
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
            client,
            key,
            body,
            records,
            CONTENT_TYPE,
            {"format": f"ocsf-{OCSF_VERSION}-parquet", "ocsf-class-uid": str(class_uid)},
        )
