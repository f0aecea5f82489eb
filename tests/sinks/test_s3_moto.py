"""S3 sink over real HTTP against moto's standalone server (a subprocess on 127.0.0.1).

moto does not validate Content-MD5 / checksum headers, does not check KMS key ids and (by
default) accepts any credentials, so integrity headers are checked here on the request as
botocore sends it, and credential failures use a second moto started with auth enabled.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError
from structlog.testing import capture_logs

from forwarder.event import make_event
from forwarder.record import Record, record_of
from sinks.base import FatalSinkError, RetryableError
from sinks.s3 import S3Sink, S3SinkConfig, object_name
from tests.support.moto_server import MotoServer, moto_server  # noqa: F401

pytestmark = pytest.mark.integration

SECRET = "dummy-secret-key-never-shown"
NAME = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{24}$")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials through the standard chain, and nothing from this machine's ~/.aws
    or instance metadata (which would be traffic off loopback)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)


def s3_client(endpoint_url: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:  # noqa: F811
    name = f"audit-{uuid.uuid4().hex[:12]}"
    s3_client(moto_server.endpoint_url).create_bucket(Bucket=name)
    return name


@pytest.fixture
def sinks_to_close() -> Iterator[list[S3Sink]]:
    opened: list[S3Sink] = []
    yield opened
    for sink in opened:
        if sink._client is not None:
            sink._client.close()


def make_sink(opened: list[S3Sink], endpoint_url: str, bucket: str, **options: Any) -> S3Sink:
    config = S3SinkConfig(type="s3", bucket=bucket, endpoint_url=endpoint_url, **options)
    sink = S3Sink("archive", config)
    opened.append(sink)
    return sink


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def record(
    seq: int, when: str, organization: str = "Acme Corp", source: str = "codacy-prod", vendor: str = "codacy"
) -> Record:
    event = make_event(
        id=f"{vendor}:{seq}",
        time=f"{when}.000Z",
        observed_time="2024-05-01T12:00:00.000Z",
        vendor=vendor,
        source=source,
        organization=organization,
        action="user.login",
        activity="login",
        category="authentication",
        outcome="success",
        raw={"n": seq},
    )
    return record_of(event, seq, ms(when))


def capture_puts(sink: S3Sink) -> list[Any]:
    """Requests as botocore sends them, since moto does not check integrity headers."""
    sent: list[Any] = []
    sink._client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request))
    return sent


def read_object(client: Any, bucket: str, key: str) -> tuple[bytes, list[dict[str, Any]]]:
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    text = gzip.decompress(body)
    assert text.endswith(b"\n")
    return body, [orjson.loads(line) for line in text.split(b"\n")[:-1]]


def all_keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


BATCH = [
    record(1, "2024-05-01T10:15:00"),
    record(2, "2024-05-01T10:20:00", organization="globex"),
    record(3, "2024-05-01T11:05:00"),
    record(4, "2024-05-01T10:45:00"),
]


async def test_objects_land_at_hive_keys_as_gzip_ndjson(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket)
    assert await sink.send(BATCH) is None
    client = s3_client(moto_server.endpoint_url)
    keys = all_keys(client, bucket)
    groups = {
        "audit/codacy/acme-corp/year=2024/month=05/day=01/hour=10/": [BATCH[0], BATCH[3]],
        "audit/codacy/acme-corp/year=2024/month=05/day=01/hour=11/": [BATCH[2]],
        "audit/codacy/globex/year=2024/month=05/day=01/hour=10/": [BATCH[1]],
    }
    assert keys == sorted(f"{p}{object_name(g)}.ndjson.gz" for p, g in groups.items())
    for prefix, records in groups.items():
        key = next(k for k in keys if k.startswith(prefix))
        match = NAME.match(key[len(prefix) : -len(".ndjson.gz")])
        assert match is not None
        earliest = datetime.fromtimestamp(min(r.time_ms for r in records) / 1000, UTC)
        assert match.group(1) == earliest.strftime("%Y%m%dT%H%M%SZ")
        _, events = read_object(client, bucket, key)
        assert events == [orjson.loads(r.data) for r in records]
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "application/gzip"
        assert "ContentEncoding" not in head
        assert head["Metadata"]["event-count"] == str(len(records))
        assert head["Metadata"]["first-event-time"] == events[0]["time"]


async def test_retried_batch_is_not_written_twice_and_bytes_are_reproducible(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    client = s3_client(moto_server.endpoint_url)
    batch = BATCH[:1]
    first = make_sink(sinks_to_close, moto_server.endpoint_url, bucket)
    await first.send(batch)
    [key] = all_keys(client, bucket)
    original, _ = read_object(client, bucket, key)
    assert original[4:8] == bytes(4)  # gzip MTIME zero: a retry's bytes do not depend on the clock

    # The retry finds its own object (412, same bytes): delivered, nothing written again.
    retry = make_sink(sinks_to_close, moto_server.endpoint_url, bucket)
    await retry.start()
    sent = capture_puts(retry)
    with capture_logs() as logs:
        assert await retry.send(batch) is None
    assert len(sent) == 1 and sent[0].headers["If-None-Match"] == b"*"
    assert all_keys(client, bucket) == [key]
    assert read_object(client, bucket, key)[0] == original
    assert not [entry for entry in logs if entry["log_level"] == "error"]

    # The same batch, later, from another sink instance: same key, byte-identical object.
    other = f"{bucket}-b"
    client.create_bucket(Bucket=other)
    await make_sink(sinks_to_close, moto_server.endpoint_url, other).send(batch)
    assert all_keys(client, other) == [key]
    assert read_object(client, other, key)[0] == original


async def test_sse_s3_and_storage_class_reach_the_object(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket, sse="AES256", storage_class="STANDARD_IA")
    await sink.send(BATCH[:1])
    client = s3_client(moto_server.endpoint_url)
    head = client.head_object(Bucket=bucket, Key=all_keys(client, bucket)[0])
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert "SSEKMSKeyId" not in head


async def test_sse_kms_headers_reach_the_object(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    kms = {"sse": "aws:kms", "kms_key_id": "alias/audit"}
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket, **kms)
    await sink.send(BATCH[:1])
    client = s3_client(moto_server.endpoint_url)
    head = client.head_object(Bucket=bucket, Key=all_keys(client, bucket)[0])
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == "alias/audit"
    assert "StorageClass" not in head  # STANDARD is implied


@pytest.mark.parametrize("options", [{}, {"checksum": "sha256"}, {"sse": "aws:kms", "kms_key_id": "alias/audit"}])
async def test_a_foreign_object_at_the_batch_key_is_left_alone_and_the_batch_stored_beside_it(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
    options: dict[str, Any],
) -> None:
    """Names are predictable: whoever else may write the bucket can place an object at a
    batch's key first. The 412 that follows must not count the batch as delivered. Each way
    of comparing is taken: the ETag (MD5), S3's SHA-256 checksum, the bytes (SSE-KMS)."""
    client = s3_client(moto_server.endpoint_url)
    batch = BATCH[:1]
    prefix = "audit/codacy/acme-corp/year=2024/month=05/day=01/hour=10/"
    key = f"{prefix}{object_name(batch)}.ndjson.gz"
    forged = gzip.compress(b'{"id":"codacy:1","action":"nothing happened"}\n', mtime=0)
    extra = {"ChecksumSHA256": base64.b64encode(hashlib.sha256(forged).digest()).decode()} if options else {}
    client.put_object(Bucket=bucket, Key=key, Body=forged, **extra)
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket, **options)
    with capture_logs() as logs:
        assert await sink.send(batch) is None
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == forged  # left alone
    [other] = [k for k in all_keys(client, bucket) if k != key]
    assert re.fullmatch(re.escape(f"{prefix}{object_name(batch)}-") + "[0-9a-f]{16}" + re.escape(".ndjson.gz"), other)
    assert read_object(client, bucket, other)[1] == [orjson.loads(batch[0].data)]  # the events, intact
    [error] = [entry for entry in logs if entry["log_level"] == "error"]
    assert error["key"] == key and error["stored_as"] == other and error["events"] == 1

    # Sent again (a retry of the same batch): the forged object still does not count as it.
    with capture_logs() as logs:
        assert await sink.send(batch) is None
    assert len(all_keys(client, bucket)) == 3
    assert [entry["key"] for entry in logs if entry["log_level"] == "error"] == [key]


@pytest.mark.parametrize(
    ("checksum", "header", "algorithm"),
    [("md5", "Content-MD5", hashlib.md5), ("sha256", "x-amz-checksum-sha256", hashlib.sha256)],
)
async def test_integrity_header_matches_the_stored_bytes(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
    checksum: str,
    header: str,
    algorithm: Any,
) -> None:
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket, checksum=checksum)
    await sink.start()
    sent = capture_puts(sink)
    await sink.send(BATCH[:1])
    client = s3_client(moto_server.endpoint_url)
    body, _ = read_object(client, bucket, all_keys(client, bucket)[0])
    [request] = sent
    assert request.headers[header].decode() == base64.b64encode(algorithm(body).digest()).decode()
    # Only our own checksum: botocore's default extra CRC32 is switched off.
    assert not any(h.lower() == "x-amz-checksum-crc32" for h in request.headers)


async def test_path_style_addressing(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    endpoint = f"http://localhost:{moto_server.port}"
    sink = make_sink(sinks_to_close, endpoint, bucket, force_path_style=True)
    await sink.start()
    sent = capture_puts(sink)
    await sink.send(BATCH[:1])
    [key] = all_keys(s3_client(moto_server.endpoint_url), bucket)
    assert unquote(sent[0].url) == f"{endpoint}/{bucket}/{key}"

    # Against AWS itself the flag decides between the two styles (presigning sends nothing).
    def url(force: bool) -> str:
        aws = S3Sink("x", S3SinkConfig(type="s3", bucket=bucket, region="eu-west-1", force_path_style=force))
        client = aws._make_client()
        try:
            result: str = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"})
        finally:
            client.close()
        return result

    assert re.match(rf"https://s3\.[a-z0-9.-]*amazonaws\.com/{bucket}/k\?", url(True))
    assert re.match(rf"https://{bucket}\.s3\.[a-z0-9.-]*amazonaws\.com/k\?", url(False))


async def test_template_with_source_and_date(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket, key_template="logs/{source}/dt={date}/{name}.gz")
    batch = [
        record(1, "2024-05-01T23:59:59", source="CodeStax EU", vendor="codestax"),
        record(2, "2024-05-02T00:00:01", source="CodeStax EU", vendor="codestax"),
        record(3, "2024-05-01T10:00:00", source="cat/prod", vendor="configcat"),
    ]
    await sink.send(batch)
    client = s3_client(moto_server.endpoint_url)
    assert [k.rsplit("/", 1)[0] for k in all_keys(client, bucket)] == [
        "logs/cat-prod/dt=2024-05-01",
        "logs/codestax-eu/dt=2024-05-01",
        "logs/codestax-eu/dt=2024-05-02",
    ]


async def test_missing_bucket_is_fatal(
    moto_server: MotoServer,  # noqa: F811
    sinks_to_close: list[S3Sink],
) -> None:
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, "no-such-bucket-here")
    with pytest.raises(FatalSinkError, match="NoSuchBucket") as sent:
        await sink.send(BATCH[:1])
    with pytest.raises(FatalSinkError, match="404") as checked:
        await sink.check()
    for exc in (sent.value, checked.value):
        assert "no-such-bucket-here" in str(exc) and SECRET not in str(exc)


async def test_check_reports_a_reachable_bucket(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    message = await make_sink(sinks_to_close, moto_server.endpoint_url, bucket).check()
    assert bucket in message and moto_server.endpoint_url in message


async def test_stopped_server_is_retryable(sinks_to_close: list[S3Sink]) -> None:
    with MotoServer() as server:
        s3_client(server.endpoint_url).create_bucket(Bucket="short-lived")
        sink = make_sink(sinks_to_close, server.endpoint_url, "short-lived", timeout_s=2)
        await sink.send(BATCH[:1])
    with pytest.raises(RetryableError, match="cannot reach S3"):
        await sink.send(BATCH[1:2])
    with pytest.raises(RetryableError):
        await sink.check()


async def test_unknown_access_key_is_fatal_without_leaking_the_secret(sinks_to_close: list[S3Sink]) -> None:
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as server:
        sink = make_sink(sinks_to_close, server.endpoint_url, "any-bucket")
        with pytest.raises(FatalSinkError, match="InvalidAccessKeyId") as caught:
            await sink.send(BATCH[:1])
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


async def test_no_credentials_is_fatal(
    monkeypatch: pytest.MonkeyPatch,
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket)
    with pytest.raises(FatalSinkError, match="no usable AWS credentials"):
        await sink.send(BATCH[:1])


def client_error(status: int, code: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (503, "SlowDown", RetryableError),
        (500, "InternalError", RetryableError),
        (409, "ConditionalRequestConflict", RetryableError),
        (400, "RequestTimeout", RetryableError),
        (403, "AccessDenied", FatalSinkError),
        (403, "SignatureDoesNotMatch", FatalSinkError),
        (400, "InvalidStorageClass", FatalSinkError),
        (501, "NotImplemented", FatalSinkError),  # a store without conditional writes: retrying never helps
    ],
)
def test_error_classification(status: int, code: str, kind: type[Exception]) -> None:
    sink = S3Sink("archive", S3SinkConfig(type="s3", bucket="bucket"))
    assert type(sink._classify(client_error(status, code), "PutObject")) is kind


def test_a_412_without_an_error_code_is_an_object_already_there() -> None:
    """Some S3-compatible stores answer 412 with no body; botocore then names the code "412"."""
    from sinks.s3_errors import error_code

    assert error_code(client_error(412, "412")) == "PreconditionFailed"
    assert error_code(client_error(412, "PreconditionFailed")) == "PreconditionFailed"
    assert error_code(client_error(409, "OperationAborted")) == "OperationAborted"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"key_template": "audit/{vendor}/x.gz"}, "must contain {name}"),
        ({"key_template": "audit/{region}/{name}"}, "unknown placeholders"),
        ({"key_template": "/audit/{name}"}, "must not start"),
        ({"key_template": "audit/{name"}, "not a valid format string"),
        ({"key_template": "audit/{name:d}.gz"}, "cannot be filled in"),
        ({"key_template": "audit/{name!z}.gz"}, "cannot be filled in"),
        ({"kms_key_id": "alias/x"}, "kms_key_id needs"),
        ({"sse": "aws:kms", "secret_access_key": "x"}, "Extra inputs"),
    ],
)
def test_config_validation(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        S3SinkConfig(type="s3", bucket="bucket", **options)


def test_config_defaults_suit_s3() -> None:
    config = S3SinkConfig(type="s3", bucket="bucket")
    batching = (config.batch_max_events, config.batch_max_bytes, config.batch_max_age_s)
    assert batching == (2_000, 2 << 20, 60.0)
    assert (config.sse, config.checksum, config.region) == ("none", "md5", "us-east-1")


def test_partitions_merge_in_journal_order() -> None:
    """Records of several hours (and sources) that share one partition land in one object, in
    journal order, so a re-read batch gets the same name."""
    sink = S3Sink("archive", S3SinkConfig(type="s3", bucket="bucket", key_template="audit/{vendor}/{name}.gz"))
    batch = [
        record(1, "2024-05-01T10:00:00"),
        record(2, "2024-05-01T11:00:00", source="other"),
        record(3, "2024-05-01T10:30:00"),
        record(4, "2024-05-01T12:00:00", vendor="configcat"),
    ]
    groups = sink._group(batch)
    assert sorted((key.split("/")[1], [r.seq for r in records]) for key, records in groups.items()) == [
        ("codacy", [1, 2, 3]),
        ("configcat", [4]),
    ]
    assert sink._group(list(batch)) == groups


async def test_a_slash_in_an_organization_never_adds_a_key_level(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    """What key_template's description promises (docs/sinks.md): `gh/Acme Corp` is `gh-acme-corp`,
    and `..` or a leading `/` cannot climb or start an empty level."""
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket)
    await sink.send([record(1, "2024-05-01T10:15:00", "gh/Acme Corp"), record(2, "2024-05-01T10:15:00", "/../Evil//")])
    keys = all_keys(s3_client(moto_server.endpoint_url), bucket)
    assert sorted(key.split("/")[2] for key in keys) == ["evil", "gh-acme-corp"]
    assert all(len(key.split("/")) == 8 for key in keys)  # the template's levels, none more


async def test_a_long_organization_name_still_makes_a_key_s3_accepts(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
) -> None:
    """S3 refuses keys over 1,024 bytes (moto does not check, so the length is asserted here)."""
    sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket)
    long_one, other = record(1, "2024-05-01T10:15:00", "x" * 1100), record(2, "2024-05-01T10:15:00", "x" * 1101)
    await sink.send([long_one, other])
    keys = all_keys(s3_client(moto_server.endpoint_url), bucket)
    assert len(keys) == 2 and all(len(key.encode()) <= 1024 for key in keys)
    assert len({key.split("/")[2] for key in keys}) == 2  # two long names still two partitions
    name = "y" * 200  # a long name that fits keeps the key earlier releases gave it
    (batch,) = sink._group([record(3, "2024-05-01T10:15:00", name)]).items()
    assert batch[0].split("/")[2] == name


async def test_a_batch_interrupted_before_its_commit_is_stored_once_after_a_restart(
    moto_server: MotoServer,  # noqa: F811
    bucket: str,
    sinks_to_close: list[S3Sink],
    tmp_path: Path,
) -> None:
    """A crash between PutObject and the offset's commit: the restarted worker sends the same
    members first, so S3's create-only write finds its object (412) instead of storing a
    bigger batch that repeats the events under another name."""
    from forwarder.chunks import Chunks, JournalEntry
    from forwarder.delivery import SinkWorker
    from forwarder.journal import SqliteJournal
    from forwarder.retry import RetrySettings

    def append(records: list[Record]) -> Any:
        entries = [JournalEntry(r.event_id, r.vendor, r.time_ms, r.data) for r in records]
        return journal.append("codacy-prod", "Acme Corp", Chunks.of(entries), {"w": 1})

    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    try:
        await journal.register_sinks(["archive"])
        first = [record(n, "2024-05-01T10:15:00") for n in (1, 2, 3)]
        await append(first)

        def worker() -> SinkWorker:
            sink = make_sink(sinks_to_close, moto_server.endpoint_url, bucket, batch_max_age_s=0.0)
            return SinkWorker("archive", sink, sink.config, journal, RetrySettings())

        crashing = worker()
        crashing.offset = await journal.offset("archive")
        batch = await crashing._next_batch()
        commit = journal.commit

        async def crash(*args: Any) -> None:
            raise RuntimeError("killed before the commit")

        journal.commit = crash  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await crashing._route_and_deliver(batch)
        journal.commit = commit  # type: ignore[method-assign]
        await append([record(n, "2024-05-01T10:15:00") for n in (4, 5)])  # polling went on meanwhile

        restarted = worker()
        restarted.offset = await journal.offset("archive")
        restarted.replay_upto = await journal.inflight("archive")
        while restarted.offset < journal.head:
            await restarted._route_and_deliver(await restarted._next_batch())
    finally:
        await journal.close()
    client = s3_client(moto_server.endpoint_url)
    stored = [event["id"] for key in all_keys(client, bucket) for event in read_object(client, bucket, key)[1]]
    assert sorted(stored) == [f"codacy:{n}" for n in (1, 2, 3, 4, 5)]  # each once


def test_the_ndjson_is_let_go_before_the_put_unless_the_ledger_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's NDJSON (up to 2 MiB) is only read again by the digest ledger: without evidence it
    is dropped before the PUT, which is the longest part of a batch (peak RSS, round 10)."""
    sink = S3Sink("archive", S3SinkConfig(type="s3", bucket="bucket"))
    stored: list[bytes] = []
    monkeypatch.setattr(
        sink, "_store", lambda client, key, body, records, kind, extra, content=b"": stored.append(content)
    )
    batch = [record(i, "2025-01-01T00:00:00") for i in range(1, 4)]
    sink._put_sync(None, "key", batch)
    assert stored == [b""]
    sink.digests = object()  # type: ignore[assignment]  # evidence on: the ledger notes the NDJSON
    sink._put_sync(None, "key", batch)
    assert stored[1] == b"".join(r.data + b"\n" for r in batch)
