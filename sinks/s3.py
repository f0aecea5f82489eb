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

Credentials come only from boto3's standard chain (environment, profile, instance or
container role); the config never holds a secret. boto3 blocks, so every call runs in a
worker thread, and so do formatting and gzip, which are CPU work on up to megabytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import string
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, Literal

import structlog
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import Field, field_validator, model_validator

from forwarder.event import format_ms
from forwarder.evidence.s3_digests import S3Digests, lock_params
from forwarder.evidence.settings import EvidenceSettings, ObjectLock
from forwarder.formats import get_formatter
from forwarder.record import Record
from forwarder.retry import parse_retry_after
from sinks.base import DeliveryReport, FatalSinkError, RetryableError, SinkConfig, bounded, gzip_compress

DEFAULT_KEY_TEMPLATE = (
    "audit/{vendor}/{organization}/year={year}/month={month}/day={day}/hour={hour}/{name}.ndjson.gz"
)
KEY_FIELDS = frozenset({"source", "vendor", "organization", "year", "month", "day", "hour", "date", "name"})
CONTENT_TYPE = "application/gzip"
_HOUR_MS = 3_600_000
_UNSAFE = re.compile(r"[^a-z0-9_-]+")

# Codes a later attempt can get past; anything else in 4xx means the request itself is wrong.
_RETRYABLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable", "OperationAborted",
    "ConditionalRequestConflict", "ExpiredToken", "TokenRefreshRequired",
})  # fmt: skip
_FATAL_HINTS = {
    "AccessDenied": "check the IAM policy allows s3:PutObject (and kms:GenerateDataKey for SSE-KMS)",
    "403": "check the IAM policy allows s3:ListBucket on the bucket",
    "InvalidAccessKeyId": "the access key id from the AWS credential chain is not known to S3",
    "SignatureDoesNotMatch": "the secret key from the AWS credential chain does not match its key id",
    "NoSuchBucket": "create the bucket or fix `bucket` in the config",
    "404": "create the bucket or fix `bucket` in the config",
    "PermanentRedirect": "the bucket lives in another region: fix `region` in the config",
    "301": "the bucket lives in another region: fix `region` in the config",
    "NotImplemented": "the store does not implement a header the sink sent: If-None-Match (create-only "
    "writes, which store each batch once), or the checksum, encryption or storage class settings",
    "501": "the store does not implement a header the sink sent: If-None-Match (create-only writes, which "
    "store each batch once), or the checksum, encryption or storage class settings",
}
KEY_MAX_BYTES = 1024  # S3's limit on a whole key, prefix included
log = structlog.get_logger("sinks.s3")


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


class S3SinkConfig(SinkConfig):
    """Defaults favour few, large objects: S3 bills per request and Athena-style readers
    are slow on many small files, while the journal already makes waiting safe."""

    type: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    key_template: str = DEFAULT_KEY_TEMPLATE
    region: str = "us-east-1"
    endpoint_url: str | None = None
    force_path_style: bool = False
    sse: Literal["none", "AES256", "aws:kms", "aws:kms:dsse"] = "none"
    kms_key_id: str | None = None
    storage_class: str | None = None
    checksum: Literal["md5", "sha256"] = "md5"
    gzip_level: int = Field(
        default=1, ge=1, le=9,
        description="1 compresses with ISA-L: a quarter of zlib's level-1 CPU for the same size. 2 to 9 are "
        "zlib's levels, for smaller objects at more CPU (6: ten times the CPU of 1, objects ~30 % smaller).",
    )
    timeout_s: float = Field(default=60.0, gt=0)
    max_parallel_puts: int = Field(default=4, ge=1, le=32)
    # ~0.3 MB gzip objects: a batch's records, NDJSON and gzip are in memory at once, and at
    # 5,000 events the daemon peaked at ~160 MB draining a 1M backlog (2,000: 146 to 150 MB).
    # Raise both for fewer, larger objects.
    batch_max_events: int = 2_000
    batch_max_bytes: int = 2 * 1024 * 1024
    batch_max_age_s: float = 60.0
    evidence: EvidenceSettings | None = Field(
        None, description="Signed, chained digests of the objects stored (docs/evidence.md)."
    )
    object_lock: ObjectLock | None = Field(
        None,
        description="Write every object and digest under S3 Object Lock: `{mode: COMPLIANCE, retain_days: 400}`.",
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
            raise ValueError(
                f"key_template has unknown placeholders {unknown}; allowed: {sorted(KEY_FIELDS)}"
            )
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

    @model_validator(mode="after")
    def _check_kms(self) -> S3SinkConfig:
        if self.kms_key_id and not self.sse.startswith("aws:kms"):
            raise ValueError("kms_key_id needs sse: aws:kms or aws:kms:dsse")
        return self


class S3Sink:
    type_name: ClassVar[str] = "s3"

    def __init__(self, name: str, config: S3SinkConfig) -> None:
        self.name = name
        self.config = config
        self._format = get_formatter(config.format, config.format_options)
        self._partition_fields = tuple(sorted(set(_template_fields(config.key_template)) - {"name"}))
        self._client: Any = None
        self._parallel = asyncio.Semaphore(config.max_parallel_puts)
        self.digests = None if config.evidence is None else S3Digests(
            name, config.bucket, config.evidence, config.object_lock, lambda: self._client
        )  # fmt: skip

    async def start(self) -> None:
        await self._get_client()
        if self.digests is not None:
            self.digests.start()

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        if not batch:
            return None
        client = await self._get_client()
        groups = await asyncio.to_thread(self._group, batch)
        results = await asyncio.gather(
            *(self._put(client, key, records) for key, records in groups.items()), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            # Objects that did land are harmless on the retry: their keys answer 412.
            raise next((e for e in errors if isinstance(e, FatalSinkError)), errors[0])
        return None

    async def check(self) -> str:
        client = await self._get_client()
        try:
            await asyncio.to_thread(client.head_bucket, Bucket=self.config.bucket)
        except Exception as exc:
            raise self._classify(exc, f"HeadBucket {self.config.bucket}") from None
        return f"bucket {self.config.bucket} reachable at {self._where()}"

    async def close(self) -> None:
        if self.digests is not None:
            await self.digests.stop()
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def _get_client(self) -> Any:
        if self._client is None:
            # Building a client loads botocore's service model from disk: keep it off the loop.
            self._client = await asyncio.to_thread(self._make_client)
        return self._client

    def _make_client(self) -> Any:
        # Imported here: boto3 and botocore.config take ~0.15 s to import, paid by every CLI
        # command (the registry imports this module) although only an S3 sink needs them.
        import boto3
        from botocore.config import Config

        cfg = self.config
        botocore_config = Config(
            connect_timeout=min(10.0, cfg.timeout_s),
            read_timeout=cfg.timeout_s,
            # The delivery layer owns retries and backoff for every sink; a second retry
            # loop inside botocore would only stretch outages and hide them from metrics.
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path" if cfg.force_path_style else "auto"},
            # We always send our own Content-MD5 or SHA-256; botocore's default extra CRC32
            # header is rejected by some S3-compatible stores.
            request_checksum_calculation="when_required",
            max_pool_connections=max(10, cfg.max_parallel_puts),
        )
        session = boto3.session.Session()
        return session.client(
            "s3", region_name=cfg.region, endpoint_url=cfg.endpoint_url, config=botocore_config
        )

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
                **_hour_fields(hour), "source": _slug(source), "organization": _slug(organization),
                "vendor": _slug(vendor or "unknown"),
            }  # fmt: skip
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

    async def _put(self, client: Any, key: str, records: list[Record]) -> None:
        async with self._parallel:
            await asyncio.to_thread(self._put_sync, client, key, records)

    def _put_sync(self, client: Any, key: str, records: list[Record]) -> None:
        cfg = self.config
        lines = [self._format(r) for r in records]
        lines.append(b"")  # the last line ends with a LF too
        content = b"\n".join(lines)
        body = gzip_compress(content, cfg.gzip_level)
        del lines
        times = [r.time_ms for r in records]
        params: dict[str, Any] = {
            "Bucket": cfg.bucket,
            "Key": key,
            "Body": body,
            "IfNoneMatch": "*",
            "ContentType": CONTENT_TYPE,
            "Metadata": {
                "event-count": str(len(records)),
                "first-event-time": format_ms(min(times)),
                "last-event-time": format_ms(max(times)),
                "format": cfg.format,
            },
        }
        if cfg.object_lock is not None:  # a lock-enabled bucket requires a checksum; evidence wants SHA-256
            params.update(lock_params(cfg.object_lock))
        if cfg.checksum == "md5" and cfg.object_lock is None:
            params["ContentMD5"] = _b64(hashlib.md5(body, usedforsecurity=False))
        else:
            params["ChecksumSHA256"] = _b64(hashlib.sha256(body))
        if cfg.sse != "none":
            params["ServerSideEncryption"] = cfg.sse
            if cfg.kms_key_id:
                params["SSEKMSKeyId"] = cfg.kms_key_id
        if cfg.storage_class:
            params["StorageClass"] = cfg.storage_class
        stored = key if self._create(client, params) else self._stored_elsewhere(client, params, records)
        if self.digests is not None:  # noted before the batch counts as delivered (forwarder.evidence.s3_digests)
            self.digests.note(stored, content)

    def _create(self, client: Any, params: dict[str, Any]) -> bool:
        """True if this put created the object or found these very bytes there already."""
        try:
            client.put_object(**params)
        except ClientError as exc:
            if _error_code(exc) == "PreconditionFailed":
                return self._already_stored(client, params["Key"], params["Body"])
            raise self._classify(exc, f"PutObject s3://{self.config.bucket}/{params['Key']}") from None
        except Exception as exc:
            raise self._classify(exc, f"PutObject s3://{self.config.bucket}/{params['Key']}") from None
        return True

    def _already_stored(self, client: Any, key: str, body: bytes) -> bool:
        """Whether the object a 412 found holds ``body``, judged by what S3 computed rather than
        by anything the writer chose (metadata would be): the SHA-256 checksum S3 verified on
        upload, else the ETag, which is the MD5 of the bytes for objects stored unencrypted or
        with SSE-S3, else (SSE-KMS) the bytes themselves. False when it cannot be read
        (s3:GetObject not granted): storing again may duplicate, trusting could lose."""
        cfg = self.config
        try:
            head = client.head_object(Bucket=cfg.bucket, Key=key, ChecksumMode="ENABLED")
            if int(head.get("ContentLength", -1)) != len(body):
                return False
            if head.get("ChecksumSHA256"):
                return bool(head["ChecksumSHA256"] == _b64(hashlib.sha256(body)))
            etag = str(head.get("ETag", "")).strip('"')
            if not cfg.sse.startswith("aws:kms") and re.fullmatch(r"[0-9a-f]{32}", etag):
                return etag == hashlib.md5(body, usedforsecurity=False).hexdigest()
            stored = client.get_object(Bucket=cfg.bucket, Key=key)["Body"]
            try:
                return bool(stored.read(len(body) + 1) == body)
            finally:
                stored.close()
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (403, 404):  # not allowed to read it, or gone again: store anew
                return False
            raise self._classify(exc, f"HeadObject s3://{cfg.bucket}/{key}") from None
        except Exception as exc:
            raise self._classify(exc, f"HeadObject s3://{cfg.bucket}/{key}") from None

    def _stored_elsewhere(self, client: Any, params: dict[str, Any], records: list[Record]) -> str:
        """The batch's key holds an object that is not this batch's: another writer of the
        bucket, or an earlier attempt with other format settings. It is left alone; the
        events go under the same name with a random suffix, create-only still."""
        key, name = params["Key"], object_name(records)
        other = key.replace(name, f"{name}-{secrets.token_hex(8)}")
        log.error(
            "s3 object at the batch's key is not this batch (another writer, or other format settings): left "
            "alone; the batch is stored under another key",
            sink=self.name, bucket=self.config.bucket, key=key, stored_as=other, events=len(records),
        )  # fmt: skip
        if not self._create(client, {**params, "Key": other}):
            raise RetryableError(f"s3 sink {self.name}: s3://{self.config.bucket}/{other} exists already")
        return str(other)

    def _where(self) -> str:
        return self.config.endpoint_url or f"region {self.config.region}"

    def _classify(self, exc: Exception, what: str) -> Exception:
        """Map boto errors onto the delivery layer's two outcomes. Messages carry S3's error
        code and text only: never request headers, which hold the signature."""
        prefix = f"s3 sink {self.name}: {what}"
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            meta = exc.response.get("ResponseMetadata", {})
            status = int(meta.get("HTTPStatusCode") or 0)
            message = exc.response.get("Error", {}).get("Message")
            detail = f"{prefix} failed: {status} {code}" + (f" ({message})" if message else "")
            if code in _RETRYABLE_CODES or (status >= 500 and status != 501) or status in (408, 429):
                return RetryableError(detail, parse_retry_after(meta.get("HTTPHeaders", {}).get("retry-after")))
            hint = _FATAL_HINTS.get(code) or _FATAL_HINTS.get(str(status))
            return FatalSinkError(f"{detail}; {hint}" if hint else detail)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return FatalSinkError(
                f"{prefix} failed: no usable AWS credentials in the standard chain "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, instance or container role)"
            )
        if isinstance(exc, ParamValidationError):
            return FatalSinkError(f"{prefix} rejected by botocore: {exc}")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return RetryableError(
                f"{prefix} failed: cannot reach S3 at {self._where()} ({type(exc).__name__})"
            )
        if isinstance(exc, BotoCoreError):
            return RetryableError(f"{prefix} failed: {type(exc).__name__}: {exc}")
        return exc


def object_name(records: Sequence[Record]) -> str:
    """Same events, same name: the time of the earliest event keeps listings in time order,
    and a hash of every event id in journal order (with the count) tells batches apart.
    A batch re-read from the journal after a crash therefore lands on the same key."""
    digest = hashlib.sha256(f"{len(records)}\n".encode())
    for record in records:
        digest.update(record.event_id.encode() + b"\n")
    first = datetime.fromtimestamp(min(r.time_ms for r in records) / 1000, tz=UTC)
    return f"{first:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:24]}"


def _b64(digest: Any) -> str:
    return base64.b64encode(digest.digest()).decode()


def _error_code(exc: ClientError) -> str:
    if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
        return "PreconditionFailed"  # whatever the body: some S3-compatible stores send none (code "412")
    return str(exc.response.get("Error", {}).get("Code", ""))
