"""S3's documented error answers, given over a real loopback socket by a listener the test
writes (moto cannot be made to answer them), as the S3 sink reads them through botocore.

For each: retried or stopping as the error's meaning asks, a message naming the sink, the
status and S3's code and what to fix, never the secret key; and an object refused as too large
is stored as smaller objects, the one event too large alone dead-lettered, nothing lost.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.event import format_ms, make_event
from forwarder.record import Record, record_of
from sinks.base import FatalSinkError, RetryableError
from sinks.s3 import S3Sink, S3SinkConfig

pytestmark = pytest.mark.integration

SECRET = "dummy-secret-key-never-shown"
Answer = Callable[[str, bytes], tuple[int, str, str]]  # (path, body) -> (status, code, message)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials through the standard chain, nothing from this machine's ~/.aws."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


class Store:
    """What the listener took: key -> body."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}


@asynccontextmanager
async def s3_listener(answer: Answer) -> AsyncIterator[tuple[str, Store]]:
    store = Store()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # botocore keeps the connection open between requests
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1].split("?")[0]
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, code, message = answer(path, body)
                if status == 200:
                    store.objects[path] = body
                    writer.write(b'HTTP/1.1 200 OK\r\nETag: "0"\r\nContent-Length: 0\r\n\r\n')
                else:
                    xml = (
                        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message><RequestId>r1</RequestId></Error>"
                    ).encode()
                    writer.write(
                        f"HTTP/1.1 {status} Error\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(xml)}\r\n\r\n".encode()
                        + xml
                    )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", store
    finally:
        server.close()


def records(count: int) -> list[Record]:
    out = []
    for i in range(count):
        ms = 1_700_000_000_000 + i * 1000
        event = make_event(
            id=f"codacy:{i:04d}", time=format_ms(ms), observed_time=format_ms(ms), vendor="codacy",
            source="codacy-prod", organization="gh/acme", action="user.login", activity="login",
            category="authentication", outcome="success", raw={"n": i},
        )  # fmt: skip
        out.append(record_of(event, i + 1, ms))
    return out


def make_sink(url: str, **options: Any) -> S3Sink:
    settings = {"type": "s3", "bucket": "audit", "endpoint_url": url, "force_path_style": True, "region": "eu-west-1"}
    return S3Sink("archive", S3SinkConfig.model_validate(settings | options))


@pytest.mark.parametrize(
    ("status", "code", "kind", "hint"),
    [
        (503, "SlowDown", RetryableError, "503 SlowDown"),
        (500, "InternalError", RetryableError, "500 InternalError"),
        (403, "AccessDenied", FatalSinkError, "s3:PutObject"),
        (404, "NoSuchBucket", FatalSinkError, "create the bucket"),
        (403, "InvalidAccessKeyId", FatalSinkError, "access key id from the AWS credential chain"),
        (403, "SignatureDoesNotMatch", FatalSinkError, "secret key from the AWS credential chain"),
        (403, "RequestTimeTooSkewed", RetryableError, "fix its time synchronisation (NTP)"),
        (400, "ExpiredToken", RetryableError, "cannot renew"),
        (400, "KMS.DisabledException", FatalSinkError, "SSE-KMS key alias/audit refused (DisabledException)"),
        (400, "KMS.NotFoundException", FatalSinkError, "exists in the bucket's region"),
    ],
)
async def test_each_documented_error_is_retried_or_stops_the_sink_saying_what_to_fix(
    status: int, code: str, kind: type[Exception], hint: str
) -> None:
    async with s3_listener(lambda path, body: (status, code, "refused")) as (url, store):
        sink = make_sink(url, sse="aws:kms", kms_key_id="alias/audit")
        try:
            with pytest.raises(kind) as caught:
                await sink.send(records(3))
        finally:
            await sink.close()
    message = str(caught.value)
    assert message.startswith("s3 sink archive: PutObject s3://audit/") and f"{status} {code}" in message
    assert hint in message and SECRET not in message
    assert store.objects == {}


@pytest.mark.parametrize(("status", "code"), [(400, "EntityTooLarge"), (413, "RequestEntityTooLarge")])
async def test_an_object_too_large_is_stored_in_halves_and_only_the_event_too_large_alone_dead_lettered(
    status: int, code: str
) -> None:
    limit = 4000  # gzip bytes; a proxy's body limit in front of an S3-compatible store
    batch = records(40)
    noise = orjson.dumps(list(range(20_000))).decode()  # compresses to well over the limit on its own
    batch[13] = record_of({**batch[13].event(), "raw": {"noise": noise}}, batch[13].seq, batch[13].time_ms)

    def answer(path: str, body: bytes) -> tuple[int, str, str]:
        return (
            (status, code, "Your proposed upload exceeds the maximum allowed size")
            if len(body) > limit
            else (200, "", "")
        )

    async with s3_listener(answer) as (url, store):
        sink = make_sink(url)
        try:
            report = await sink.send(batch)
            again = await sink.send(batch)  # the same answers: the same objects, create-only (answered 200 here)
        finally:
            await sink.close()
    assert report is not None and again is not None
    assert [(r.event_id, "too large" in why and f"{status} {code}" in why) for r, why in report.rejected] == [
        ("codacy:0013", True)
    ]
    stored = [
        orjson.loads(line)["id"] for body in store.objects.values() for line in gzip.decompress(body).splitlines()
    ]
    assert sorted(stored) == sorted(r.event_id for r in batch if r.event_id != "codacy:0013")
    assert len(stored) == len(set(stored))  # each delivered event in exactly one object


async def test_a_store_refusing_every_object_as_too_large_stops_the_sink_instead_of_dead_lettering_all() -> None:
    """A proxy answering 413 to everything (a tiny body limit): halving down to single small
    events and dead-lettering each would empty the stream into the dead-letter store."""
    async with s3_listener(lambda path, body: (413, "RequestEntityTooLarge", "too large")) as (url, store):
        sink = make_sink(url)
        try:
            with pytest.raises(FatalSinkError, match="limit is not the events' size: check the body limit of a proxy"):
                await sink.send(records(8))
        finally:
            await sink.close()
    assert store.objects == {}
