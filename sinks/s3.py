"""S3 sink: each batch becomes one gzip NDJSON object per partition (Hive-style key).

Idempotence without a coordinator: an object's name is derived from the ids of the events
it holds, its gzip bytes are the same on every attempt (``mtime=0``), and it is written create-only with
``If-None-Match: *``. A batch retried after a crash maps to the same keys, and S3 answers
``412 Precondition Failed`` for every object that already landed, which counts as delivered
once the stored object is shown to hold these very bytes (``_already_stored``). Names are
predictable, so anyone else allowed to write the bucket could place an object at a batch's
key first; a 412 for an object that does not match (or cannot be read to compare) is logged
as an error naming the key, and the batch is stored under the same name with a random suffix.

Convention (``shared/research/sinks-schemas.md`` §4.3): the object *is* a ``.gz`` file, so it
is stored as ``Content-Type: application/gzip`` with no ``Content-Encoding``; otherwise some
HTTP clients would silently gunzip it on download and the bytes would no longer match the
key's extension or the checksum.

Credentials come only from the AWS SDK's standard chain (environment, profile, instance or
container role); the config never holds a secret. botocore blocks, so every call runs in a
worker thread, and so do formatting and gzip, which are CPU work on up to megabytes.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from forwarder.evidence.settings import EvidenceSettings
from forwarder.formats import get_formatter
from forwarder.record import Record
from sinks.base import FatalSinkError, bounded, gzip_compress
from sinks.s3_objects import S3Objects, S3ObjectsConfig, object_name

DEFAULT_KEY_TEMPLATE = "audit/{vendor}/{organization}/year={year}/month={month}/day={day}/hour={hour}/{name}.ndjson.gz"
KEY_FIELDS = frozenset({"source", "vendor", "organization", "year", "month", "day", "hour", "date", "name"})
CONTENT_TYPE = "application/gzip"
_HOUR_MS = 3_600_000
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
KEY_MAX_BYTES = 1024  # S3's limit on a whole key, prefix included


def _template_fields(template: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def _slug(value: str) -> str:
    """Partition values become path segments: keep them lower-case and URL-safe so a ``/``
    or a space in an organization name cannot invent extra levels or need escaping."""
    return _UNSAFE.sub("-", value.lower()).strip("-") or "unknown"


@lru_cache(maxsize=256)
def _hour_fields(hour_index: int) -> dict[str, str]:
    dt = datetime.fromtimestamp(hour_index * _HOUR_MS / 1000, tz=UTC)
    return {
        "year": f"{dt.year:04d}",
        "month": f"{dt.month:02d}",
        "day": f"{dt.day:02d}",
        "hour": f"{dt.hour:02d}",
        "date": dt.strftime("%Y-%m-%d"),
    }


class S3SinkConfig(S3ObjectsConfig):
    """Defaults favour few, large objects: S3 bills per request and Athena-style readers
    are slow on many small files, while the journal already makes waiting safe."""

    type: Literal["s3"]
    key_template: str = Field(
        default=DEFAULT_KEY_TEMPLATE,
        description="Object key. Placeholders: `{vendor}`, `{source}`, `{organization}`, the event's UTC `{year}`, "
        "`{month}`, `{day}`, `{hour}`, `{date}` (2024-05-01) and `{name}` (required: named after the object's events). "
        "Vendor, source and organization are lower-cased and every run of characters other than `a-z0-9_-` becomes "
        "`-`, so `gh/Acme Corp` is `gh-acme-corp`: a `/` in a value never adds a level to the key.",
    )
    gzip_level: int = Field(
        default=1,
        ge=1,
        le=9,
        description="1 compresses with ISA-L: a quarter of zlib's level-1 CPU for the same size. 2 to 9 are "
        "zlib's levels, for smaller objects at more CPU (6: ten times the CPU of 1, objects ~30 % smaller).",
    )
    # ~0.3 MB gzip objects: a batch's records, NDJSON and gzip are in memory at once, and at
    # 5,000 events the daemon peaked at ~160 MB draining a 1M backlog (2,000: 146 to 150 MB).
    # Raise both for fewer, larger objects.
    batch_max_events: int = 2_000
    batch_max_bytes: int = 2 * 1024 * 1024
    batch_max_age_s: float = 60.0
    evidence: EvidenceSettings | None = Field(
        None, description="Signed, chained digests of the objects stored (docs/evidence.md)."
    )

    @field_validator("key_template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            fields = _template_fields(value)
        except ValueError as exc:
            raise ValueError(f"key_template is not a valid format string: {exc}") from None
        unknown = sorted(set(fields) - KEY_FIELDS)
        if unknown:
            raise ValueError(f"key_template has unknown placeholders {unknown}; allowed: {sorted(KEY_FIELDS)}")
        # Without {name} every batch of a partition would share one key, and create-only
        # writes would then drop all but the first as "already delivered".
        if "name" not in fields:
            raise ValueError("key_template must contain {name}")
        if value.startswith("/"):
            raise ValueError("key_template must not start with '/'")
        try:  # a format spec or conversion ({name:d}) passes the parse and fails every batch
            value.format(**dict.fromkeys(KEY_FIELDS, "x"))
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"key_template cannot be filled in: {exc}; use plain {{placeholders}}") from None
        return value

    def destination(self) -> str:
        """Keys name only the events: a second sink on the same bucket and template (another
        format, other redaction) would find its objects there, take them for its own earlier
        attempts (412) and store nothing."""
        return f"S3 objects {self.endpoint_url or self.region} s3://{self.bucket}/{self.key_template}"


class S3Sink(S3Objects):
    type_name: ClassVar[str] = "s3"
    config: S3SinkConfig

    def __init__(self, name: str, config: S3SinkConfig) -> None:
        super().__init__(name, config, config.evidence, config.key_template.split("{", 1)[0])
        self._format = get_formatter(config.format, config.format_options)
        self._partition_fields = tuple(sorted(set(_template_fields(config.key_template)) - {"name"}))

    def _put_sync(self, client: Any, key: str, records: list[Record]) -> None:
        cfg = self.config
        lines = [self._format(r) for r in records]
        lines.append(b"")  # the last line ends with a LF too
        content = b"\n".join(lines)
        body = gzip_compress(content, cfg.gzip_level)
        del lines
        if self.digests is None:  # only the digest ledger reads the NDJSON again: not held through the PUT
            content = b""
        self._store(client, key, body, records, CONTENT_TYPE, {"format": cfg.format}, content)

    def _group(self, batch: Sequence[Record]) -> dict[str, list[Record]]:
        """Split the batch so that no object spans two partitions, then name each group. Records
        are grouped by their raw values first: slugging and formatting the partition once per
        group instead of once per record was a tenth of this sink's CPU."""
        raw: dict[tuple[Any, ...], list[Record]] = {}
        for record in batch:
            raw.setdefault((record.time_ms // _HOUR_MS, record.source, record.organization, record.vendor), []).append(
                record
            )
        groups: dict[tuple[str, ...], list[Record]] = {}
        merged = set()
        for (hour, source, organization, vendor), records in raw.items():
            values = {
                **_hour_fields(hour),
                "source": _slug(source),
                "organization": _slug(organization),
                "vendor": _slug(vendor or "unknown"),
            }
            partition = tuple(values[f] for f in self._partition_fields)
            if partition in groups:  # e.g. a template without {hour}
                groups[partition] = groups[partition] + records
                merged.add(partition)
            else:
                groups[partition] = records
        for partition in merged:  # journal order inside an object, as without merging
            groups[partition].sort(key=lambda r: r.seq)
        keyed: dict[str, list[Record]] = {}
        for partition, records in groups.items():
            fields = dict(zip(self._partition_fields, partition, strict=True))
            key = self.config.key_template.format(**fields, name=object_name(records))
            if len(key.encode()) > KEY_MAX_BYTES:  # long names: bounded, with a hash (short ones keep their keys)
                bounded_fields = {k: bounded(v, 64) for k, v in fields.items()}
                key = self.config.key_template.format(**bounded_fields, name=object_name(records))
            if len(key.encode()) > KEY_MAX_BYTES:
                raise FatalSinkError(
                    f"s3 sink {self.name}: key_template makes keys of {len(key.encode())} bytes, over S3's "
                    f"{KEY_MAX_BYTES}; shorten it"
                )
            keyed[key] = records
        return keyed
