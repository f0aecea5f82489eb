"""The object writer shared by the sinks that store batches as S3 objects (``s3``,
``security_lake``): the botocore client, create-only PUTs (``If-None-Match: *``, a 412 for the
same bytes counts as delivered, a foreign object at the key is left alone), the integrity
checksum, S3 Object Lock, encryption, and the mapping of S3's errors onto the delivery layer's
two outcomes (with a hint saying what to fix), and an object refused as too large stored again
as two halves (``_store_batch``). With ``evidence`` (the ``s3`` sink only) every confirmed object is noted in the
digest ledger before its batch counts as delivered (``forwarder.evidence.s3_digests``).

botocore blocks: callers run ``_store`` in a worker thread (``_put_all``), never on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import structlog
from pydantic import Field, model_validator

from forwarder.event import format_ms
from forwarder.evidence.s3_digests import S3Digests, lock_params
from forwarder.evidence.settings import EvidenceSettings, ObjectLock
from forwarder.http_shared import cleartext_url
from forwarder.memory import release_freed_heap
from forwarder.record import Record
from forwarder.retry import parse_retry_after, retryable_status
from sinks.base import DeliveryReport, FatalSinkError, RetryableError, SinkConfig
from sinks.s3_endpoints import use_lean_loader
from sinks.s3_errors import (
    RETRY_HINTS,
    RETRYABLE_CODES,
    SMALLEST_REFUSAL_BELIEVED,
    TOO_LARGE_CODES,
    ObjectTooLarge,
    error_code,
    fatal_hint,
    kms_hint,
)

log = structlog.get_logger("sinks.s3")


class S3ObjectsConfig(SinkConfig):
    """Where and how objects are written: shared by every sink that stores batches as S3 objects
    (``s3``, ``security_lake``)."""

    bucket: str = Field(min_length=3, max_length=63)
    region: str = "us-east-1"
    endpoint_url: str | None = None
    force_path_style: bool = False
    sse: Literal["none", "AES256", "aws:kms", "aws:kms:dsse"] = "none"
    kms_key_id: str | None = None
    storage_class: str | None = None
    checksum: Literal["md5", "sha256"] = "md5"
    timeout_s: float = Field(default=60.0, gt=0)
    max_parallel_puts: int = Field(default=4, ge=1, le=32)
    object_lock: ObjectLock | None = Field(
        None,
        description="Write every object (and digest) under S3 Object Lock: `{mode: COMPLIANCE, retain_days: 400}`.",
    )

    def transport_warnings(self) -> list[str]:
        """``endpoint_url`` is a plain string (botocore takes it as given), so the shared check of
        ``HttpUrl`` settings does not see it: an S3-compatible store over ``http://`` elsewhere
        carries the events (and the signed requests) readable on the path."""
        found = super().transport_warnings()
        warning = cleartext_url("endpoint_url", self.endpoint_url) if self.endpoint_url else None
        return [*found, warning] if warning else found

    @model_validator(mode="after")
    def _check_kms(self) -> S3ObjectsConfig:
        if self.kms_key_id and not self.sse.startswith("aws:kms"):
            raise ValueError("kms_key_id needs sse: aws:kms or aws:kms:dsse")
        return self


class S3Objects:
    """The S3 client and the create-only PUT that sinks storing batches as objects share: a 412
    counts as delivered once the stored object is shown to hold the same bytes."""

    type_name: ClassVar[str] = "s3"

    def __init__(
        self, name: str, config: S3ObjectsConfig, evidence: EvidenceSettings | None = None, prefix: str = ""
    ) -> None:
        """``prefix``: the fixed start of the sink's keys (where a replica taking over looks for
        objects its predecessor stored but no digest lists yet)."""
        self.name = name
        self.config = config
        self._client: Any = None
        self._parallel = asyncio.Semaphore(config.max_parallel_puts)
        self.digests = (
            None
            if evidence is None
            else S3Digests(name, config.bucket, evidence, config.object_lock, lambda: self._client, prefix)
        )

    async def start(self) -> None:
        await self._get_client()
        if self.digests is not None:
            self.digests.start()

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        """The objects a batch is cut into (``_group``, off the loop: it formats every event),
        stored in parallel."""
        if not batch:
            return None
        client = await self._get_client()
        report = DeliveryReport()
        await self._store_batch(client, list(batch), report)
        return report if report.rejected else None

    async def _store_batch(self, client: Any, records: list[Record], report: DeliveryReport) -> None:
        """An object the store refuses as too large (S3's ``EntityTooLarge``, or a 413 from a proxy
        in front of an S3-compatible store, whose body limit may be 1 MB) is stored as two objects
        of half its events each, recursively; an event too large alone is dead-lettered with why,
        and the others delivered. Halves are named after their own events, so a retry after a
        crash lands on the same keys as long as the store answers the same."""
        objects = await asyncio.to_thread(self._group, records)
        for members, detail in await self._put_all(client, objects):
            if len(members) == 1:
                if len(members[0].data) < SMALLEST_REFUSAL_BELIEVED:
                    # a store or proxy refusing even this as too large refuses everything: stop, do
                    # not dead-letter the whole stream one event at a time
                    raise FatalSinkError(
                        f"{detail}: even one {len(members[0].data)}-byte event was refused as too large, so the "
                        "limit is not the events' size: check the body limit of a proxy in front of the store"
                    )
                report.rejected.append((members[0], f"{detail}: the event alone is over the store's object size limit"))
                continue
            middle = len(members) // 2
            await self._store_batch(client, members[:middle], report)
            await self._store_batch(client, members[middle:], report)

    def _group(self, batch: Sequence[Record]) -> dict[str, list[Record]]:
        raise NotImplementedError

    async def _put_all(self, client: Any, objects: dict[str, list[Record]]) -> list[tuple[list[Record], str]]:
        """The objects' records the store refused as too large, with its answer."""
        results = await asyncio.gather(
            *(self._put(client, key, records) for key, records in objects.items()), return_exceptions=True
        )
        errors = [
            result for result in results if isinstance(result, BaseException) and not isinstance(result, ObjectTooLarge)
        ]
        if errors:
            # Objects that did land are harmless on the retry: their keys answer 412.
            raise next((e for e in errors if isinstance(e, FatalSinkError)), errors[0])
        return [
            (records, str(result))
            for records, result in zip(objects.values(), results, strict=True)
            if isinstance(result, ObjectTooLarge)
        ]

    async def _put(self, client: Any, key: str, records: list[Record]) -> None:
        async with self._parallel:
            await asyncio.to_thread(self._put_sync, client, key, records)

    def _put_sync(self, client: Any, key: str, records: list[Record]) -> None:
        raise NotImplementedError

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
        # Imported here: botocore takes ~0.15 s to import, paid by every CLI command (the registry
        # imports this module) although only an S3 sink needs it. botocore's own session, not
        # boto3's: the same credential chain and client, without boto3's resource layer and
        # s3transfer (2.2 MB of a draining daemon's peak RSS; docs/performance.md, round 10).
        import botocore.session
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
        session = botocore.session.Session()  # one per client: a shared session is not thread-safe
        use_lean_loader(session)  # endpoints.json cut to S3 and the credential chain: 4 MB less held
        client = session.create_client(
            "s3", region_name=cfg.region, endpoint_url=cfg.endpoint_url, config=botocore_config
        )
        release_freed_heap()  # the parsed data files the client does not keep (2 MB of the drain's peak)
        return client

    def _store(
        self,
        client: Any,
        key: str,
        body: bytes,
        records: Sequence[Record],
        content_type: str,
        extra: dict[str, str],
        content: bytes = b"",
    ) -> None:
        """``body`` at ``key``, create-only, with the integrity, lock, encryption and metadata
        headers; then, with evidence on, ``content`` (the NDJSON inside ``body``) noted in the
        digest ledger before the batch counts as delivered (``forwarder.evidence.s3_digests``)."""
        cfg = self.config
        times = [r.time_ms for r in records]
        params: dict[str, Any] = {
            "Bucket": cfg.bucket,
            "Key": key,
            "Body": body,
            "IfNoneMatch": "*",
            "ContentType": content_type,
            "Metadata": {
                "event-count": str(len(records)),
                "first-event-time": format_ms(min(times)),
                "last-event-time": format_ms(max(times)),
                **extra,
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
        name = object_name(records)
        stored = key if self._create(client, params) else self._stored_elsewhere(client, params, name, len(records))
        if self.digests is not None:
            self.digests.note(stored, content)

    def _create(self, client: Any, params: dict[str, Any]) -> bool:
        """True if this put created the object or found these very bytes there already."""
        from botocore.exceptions import ClientError

        try:
            client.put_object(**params)
        except ClientError as exc:
            if error_code(exc) == "PreconditionFailed":
                return self._already_stored(client, params["Key"], params["Body"])
            if error_code(exc) in TOO_LARGE_CODES:
                raise ObjectTooLarge(
                    f"{self.type_name} sink {self.name}: PutObject s3://{self.config.bucket}/{params['Key']} of "
                    f"{len(params['Body'])} bytes refused as too large: "
                    f"{exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')} {error_code(exc)}"
                ) from None
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
        from botocore.exceptions import ClientError

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

    def _stored_elsewhere(self, client: Any, params: dict[str, Any], name: str, events: int) -> str:
        """The batch's key holds an object that is not this batch's: another writer of the
        bucket, or an earlier attempt with other format settings. It is left alone; the
        events go under the same name with a random suffix, create-only still."""
        key = params["Key"]
        other = key.replace(name, f"{name}-{secrets.token_hex(8)}")
        log.error(
            "s3 object at the batch's key is not this batch (another writer, or other format settings): left "
            "alone; the batch is stored under another key",
            sink=self.name,
            bucket=self.config.bucket,
            key=key,
            stored_as=other,
            events=events,
        )
        if not self._create(client, {**params, "Key": other}):
            raise RetryableError(f"{self.type_name} sink {self.name}: s3://{self.config.bucket}/{other} exists already")
        return str(other)

    def _where(self) -> str:
        return self.config.endpoint_url or f"region {self.config.region}"

    def _classify(self, exc: Exception, what: str) -> Exception:
        """Map boto errors onto the delivery layer's two outcomes. Messages carry S3's error
        code and text only: never request headers, which hold the signature."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        prefix = f"{self.type_name} sink {self.name}: {what}"  # the sink's own type: s3 or security_lake
        if isinstance(exc, ClientError):
            code = error_code(exc)
            meta = exc.response.get("ResponseMetadata", {})
            status = int(meta.get("HTTPStatusCode") or 0)
            message = exc.response.get("Error", {}).get("Message")
            detail = f"{prefix} failed: {status} {code}" + (f" ({message})" if message else "")
            if code in RETRYABLE_CODES or retryable_status(status):
                hint = RETRY_HINTS.get(code)
                return RetryableError(
                    f"{detail}; {hint}" if hint else detail,
                    parse_retry_after(meta.get("HTTPHeaders", {}).get("retry-after")),
                )
            hint = fatal_hint(exc, code, status) or kms_hint(code, self.config.kms_key_id)
            return FatalSinkError(f"{detail}; {hint}" if hint else detail)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return FatalSinkError(
                f"{prefix} failed: no usable AWS credentials in the standard chain "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, instance or container role)"
            )
        if isinstance(exc, ParamValidationError):
            return FatalSinkError(f"{prefix} rejected by botocore: {exc}")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return RetryableError(f"{prefix} failed: cannot reach S3 at {self._where()} ({type(exc).__name__})")
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
