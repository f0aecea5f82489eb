"""The HEC sink against answers no Splunk gives: something else on the port, a proxy's page,
an answer that trickles or never ends. Each must be a retry (never a batch counted as
delivered, never a sink held for ever or a daemon out of memory) or a clear stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from forwarder.record import Record
from sinks.base import FatalSinkError, RetryableError
from sinks.splunk_hec import SplunkHecSink, SplunkHecSinkConfig
from tests.support.raw_http import Answer, raw_http_server, trickle

pytestmark = pytest.mark.integration

TOKEN = "11111111-2222-3333-4444-555555555555"


def fixed(status: str, body: bytes, content_type: bytes = b"application/json") -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status.encode(), content_type, len(body), body)
        )
        await writer.drain()

    return answer


async def endless(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b"[" * (1 << 16))
    while True:
        writer.write(chunk)
        await writer.drain()


def batch() -> list[Record]:
    return [Record(1, "e1", "src", "org", 1_700_000_000_000, orjson.dumps({"id": "e1"}), "codacy", "a", "c", "success")]


def sink(url: str, **overrides: object) -> SplunkHecSink:
    return SplunkHecSink(
        "hec",
        SplunkHecSinkConfig.model_validate(
            {"type": "splunk_hec", "url": url, "token": TOKEN, "timeout_s": 1, **overrides}
        ),
    )


@pytest.mark.parametrize(
    "answer",
    [fixed("200 OK", b"<html>maintenance</html>", b"text/html"), fixed("200 OK", b""), fixed("200 OK", b"[]")],
    ids=["html page", "empty", "not an object"],
)
async def test_a_200_that_is_not_hecs_success_answer_is_retried(answer: Answer) -> None:
    async with raw_http_server(answer) as url:
        hec = sink(url)
        with pytest.raises(RetryableError, match="answered 200 without HEC's success answer"):
            await hec.send(batch())
        await hec.close()


@pytest.mark.parametrize("answer", [trickle, endless], ids=["trickled", "endless"])
async def test_an_answer_that_trickles_or_never_ends_is_a_retry_within_timeout_s(answer: Answer) -> None:
    async with raw_http_server(answer) as url:
        hec = sink(url)
        # the sink ends it (a trickle by its deadline, an endless body at 64 KiB); a hang: the outer TimeoutError
        with pytest.raises(RetryableError, match=r"no complete answer within timeout_s|without HEC's success answer"):
            await asyncio.wait_for(hec.send(batch()), 10)
        await hec.close()


async def test_a_malformed_ack_answer_is_a_retry() -> None:
    answers = iter([fixed("200 OK", b'{"text":"Success","code":0,"ackId":7}'), fixed("200 OK", b'{"acks":[true]}')])

    async def answer(writer: asyncio.StreamWriter) -> None:
        await next(answers)(writer)

    async with raw_http_server(answer) as url:
        hec = sink(url, use_ack=True)
        with pytest.raises(RetryableError, match="ack answer is malformed"):
            await hec.send(batch())
        await hec.close()


async def test_a_missing_ca_file_stops_the_sink_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-ca.pem"
    hec = sink("https://127.0.0.1:9", ca_file=str(missing))
    with pytest.raises(FatalSinkError, match=f"cannot use ca_file {missing}"):
        await hec.send(batch())
