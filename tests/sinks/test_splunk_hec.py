"""The Splunk HEC sink against the HEC receiver emulator, over real loopback sockets.

The receiver runs as its own process (``python -m forwarder.emulators splunk_hec``), as it
does for the daemon's integration tests; a second part checks the receiver's protocol edge
cases directly, so that the sink tests rest on a receiver that behaves like Splunk.
"""

from __future__ import annotations

import base64
import gzip
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from forwarder.event import format_ms, make_event
from forwarder.record import Record, record_of
from sinks.base import FatalSinkError, RetryableError
from sinks.splunk_hec import SplunkHecSink, SplunkHecSinkConfig

pytestmark = pytest.mark.integration

TOKEN = "0b6c9f3e-6a51-4c1f-9d0e-secret-token"
BASE_MS = 1_700_000_000_000


class Hec:
    """The receiver process plus its /_control plane."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def config(self, **switches: Any) -> None:
        self.http.post("/_control/config", json=switches).raise_for_status()

    def fault(self, **fault: Any) -> None:
        self.http.post("/_control/faults", json=fault).raise_for_status()

    def entries(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_control/entries").json())

    def batches(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_control/batches").json())

    def post(self, body: bytes, path: str = "/services/collector/event", **headers: str) -> httpx.Response:
        headers.setdefault("Authorization", f"Splunk {TOKEN}")
        return self.http.post(path, content=body, headers={k.replace("_", "-"): v for k, v in headers.items()})


@pytest.fixture
def hec() -> Iterator[Hec]:
    options = orjson.dumps({"config": {"tokens": [TOKEN], "disabled_tokens": ["disabled-token"]}}).decode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "forwarder.emulators", "splunk_hec", "--port", "0", "--options", options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("LISTENING http://127.0.0.1:"), line
        receiver = Hec(line.removeprefix("LISTENING "))
        yield receiver
        receiver.http.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def records(count: int, start: int = 0, pad: int = 0) -> list[Record]:
    out = []
    for i in range(start, start + count):
        ms = BASE_MS + i * 1001
        event = make_event(
            id=f"codacy:{i:04d}",
            time=format_ms(ms),
            observed_time=format_ms(ms + 5),
            vendor="codacy",
            source="codacy-prod",
            organization="gh/acme",
            action="user.login",
            activity="login",
            category="authentication",
            outcome="success",
            raw={"n": i, "pad": "x" * pad},
            actor={"email": "alice@example.com", "type": "user"},
        )
        out.append(record_of(event, i, ms))
    return out


def make_sink(url: str, **options: Any) -> SplunkHecSink:
    settings: dict[str, Any] = {"type": "splunk_hec", "url": url, "token": TOKEN, "host": "fwd-1"}
    settings |= {"ack_poll_interval_s": 0.05, "ack_timeout_s": 2.0} | options
    return SplunkHecSink("hec", SplunkHecSinkConfig(**settings))


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["fields"]["event_id"] for e in entries]


# --- the sink --------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
async def test_delivers_one_post_per_batch_with_envelope_fields(hec: Hec, compress: bool) -> None:
    batch = records(5)
    sink = make_sink(hec.url, gzip=compress, index="audit")
    assert await sink.send(batch) is None
    await sink.close()
    [request] = hec.batches()
    assert request["events"] == 5
    assert request["content_encoding"] == ("gzip" if compress else None)
    entries = hec.entries()
    assert [e["event"] for e in entries] == [orjson.loads(r.data) for r in batch]
    first = entries[1]
    assert first["time"] == pytest.approx(1_700_000_001.001, abs=1e-6)
    assert (first["host"], first["source"], first["sourcetype"], first["index"]) == (
        "fwd-1",
        "codacy:gh/acme",
        "audit-forwarder:json",
        "audit",
    )
    assert first["fields"] == {
        "vendor": "codacy",
        "organization": "gh/acme",
        "source": "codacy-prod",
        "action": "user.login",
        "category": "authentication",
        "outcome": "success",
        "event_id": "codacy:0001",
    }


async def test_envelope_time_has_three_decimals_and_index_is_optional() -> None:
    sink = make_sink("http://127.0.0.1:9")
    [record] = records(1)
    envelope = sink._envelope(record)
    assert envelope.startswith(b'{"time":1700000000.000,"host":"fwd-1"')
    assert "index" not in orjson.loads(envelope)


async def test_envelope_time_before_1970_is_the_same_instant() -> None:
    """HEC's time is epoch seconds with the milliseconds as decimals: 1 ms before the epoch is
    -0.001, not -1.999 (floor division on the milliseconds)."""
    sink = make_sink("http://127.0.0.1:9")
    [event] = records(1)
    for ms, text in ((-1, b"-0.001"), (-1500, b"-1.500"), (-2000, b"-2.000"), (999, b"0.999")):
        envelope = sink._envelope(record_of(event.event(), 0, ms))
        assert envelope.startswith(b'{"time":' + text + b","), envelope[:30]
        assert orjson.loads(envelope)["time"] * 1000 == pytest.approx(ms)


async def test_remembered_envelope_parts_never_mix_events() -> None:
    """Envelopes are assembled from parts remembered per combination of fields: each event still
    gets its own time, event and id, a source template naming the event id is formatted per
    event, and non-string values (hostile records) are never shared with equal strings."""
    sink = make_sink("http://127.0.0.1:9", source="{vendor}:{event_id}")
    a, b = records(2)
    odd = a._replace(event_id="codacy:odd", action=1, category=True)
    same = a._replace(event_id="codacy:same", action="1", category="True")
    envelopes = [orjson.loads(sink._envelope(r)) for r in (a, b, odd, same, a)]
    assert [e["source"] for e in envelopes] == [
        "codacy:codacy:0000",
        "codacy:codacy:0001",
        "codacy:codacy:odd",
        "codacy:codacy:same",
        "codacy:codacy:0000",
    ]
    assert [e["fields"]["event_id"] for e in envelopes] == [
        "codacy:0000",
        "codacy:0001",
        "codacy:odd",
        "codacy:same",
        "codacy:0000",
    ]
    assert [e["event"] for e in envelopes] == [orjson.loads(r.data) for r in (a, b, odd, same, a)]
    assert envelopes[2]["fields"]["action"] == envelopes[3]["fields"]["action"] == "1"
    assert envelopes[0]["time"] != envelopes[1]["time"]
    plain = make_sink("http://127.0.0.1:9")
    assert [orjson.loads(plain._envelope(r))["fields"]["event_id"] for r in (a, b, a)] == [
        "codacy:0000",
        "codacy:0001",
        "codacy:0000",
    ]
    assert len(plain._envelopes) == 1


async def test_other_formats_send_the_text_as_a_string(hec: Hec) -> None:
    from forwarder.formats import get_formatter

    batch = records(2)
    sink = make_sink(hec.url, format="cef", source="{vendor}/{category}")
    await sink.send(batch)
    entries = hec.entries()
    cef = get_formatter("cef", {})
    assert [e["event"] for e in entries] == [cef(r).decode() for r in batch]
    assert entries[0]["event"].startswith("CEF:0|") and entries[0]["source"] == "codacy/authentication"


async def test_ack_mode_waits_for_acks_that_read_true_once(hec: Hec) -> None:
    # the receiver keeps a batch only once its ack was read true: had send returned on a
    # false, nothing would be there yet
    hec.config(use_ack=True, ack_delay_s=0.2, drop_unacked=True)
    sink = make_sink(hec.url, use_ack=True)
    assert await sink.send(records(3)) is None
    assert len(hec.entries()) == 3
    [request] = hec.batches()
    assert request["ackId"] == 0 and request["channel"] == sink.config.channel
    reply = hec.post(b'{"acks":[0]}', "/services/collector/ack", X_Splunk_Request_Channel=sink.config.channel)
    assert reply.json() == {"acks": {"0": False}}  # the sink already read it true
    await sink.send(records(1, start=3))
    assert hec.batches()[1]["ackId"] == 1
    assert len(hec.entries()) == 4


async def test_ack_timeout_raises_retryable_and_redelivery_succeeds(hec: Hec) -> None:
    hec.config(use_ack=True, ack_never=True, drop_unacked=True)
    sink = make_sink(hec.url, use_ack=True, ack_timeout_s=0.3)
    batch = records(3)
    with pytest.raises(RetryableError, match="not confirmed"):
        await sink.send(batch)
    assert hec.entries() == []  # the receiver lost the unacked batch
    hec.config(ack_never=False)
    assert await sink.send(batch) is None
    assert ids(hec.entries()) == [r.event_id for r in batch]


async def test_ack_on_but_token_without_ack_is_fatal(hec: Hec) -> None:
    with pytest.raises(FatalSinkError, match="no ackId"):
        await make_sink(hec.url, use_ack=True).send(records(1))


async def test_busy_503_is_retryable_with_retry_after(hec: Hec) -> None:
    hec.fault(status=503, retry_after="7")
    sink = make_sink(hec.url)
    with pytest.raises(RetryableError, match="code 9 Server is busy") as caught:
        await sink.send(records(2))
    assert caught.value.retry_after == 7.0
    assert hec.entries() == []
    await sink.send(records(2))
    assert len(hec.entries()) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, RetryableError),
        (429, RetryableError),
        (500, RetryableError),
        (502, RetryableError),
        (404, FatalSinkError),
        (501, FatalSinkError),
    ],
)
async def test_status_classification(hec: Hec, status: int, error: type[Exception]) -> None:
    hec.fault(status=status)
    with pytest.raises(error, match=f"HTTP {status}"):
        await make_sink(hec.url).send(records(1))


async def test_network_error_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nobody listens once closed
    with pytest.raises(RetryableError, match="unreachable"):
        await make_sink(f"http://127.0.0.1:{port}", timeout_s=2).send(records(1))


async def test_413_splits_the_batch_and_rejects_a_lone_oversized_event(hec: Hec) -> None:
    sink = make_sink(hec.url)
    batch = records(7)
    size = max(len(sink._envelope(r)) for r in batch)
    hec.config(max_content_length=int(size * 2.5))  # decoded size: two events of the batch fit
    huge = records(1, start=7, pad=size * 3)[0]
    report = await sink.send([*batch[:3], huge, *batch[3:]])
    assert report is not None
    assert [(r.event_id, reason) for r, reason in report.rejected] == [
        ("codacy:0007", "event larger than the HEC request size limit")
    ]
    assert sorted(ids(hec.entries())) == [r.event_id for r in batch]
    assert [b["events"] for b in hec.batches()] == [2, 1, 2, 2]


@pytest.mark.parametrize("code", [6, 12, 13])
async def test_per_event_rejection_dead_letters_the_bad_one_and_delivers_the_rest(hec: Hec, code: int) -> None:
    batch = records(5)
    hec.config(poison_events={"codacy:0002": code})
    report = await make_sink(hec.url).send(batch)
    assert report is not None
    [(record, reason)] = report.rejected
    assert record is batch[2] and f"code {code}" in reason
    # Splunk keeps the events before the bad one; the resend delivers them again (at least once)
    assert ids(hec.entries()) == [
        "codacy:0000",
        "codacy:0001",
        *[r.event_id for r in batch if r is not batch[2]],
    ]


async def test_unparseable_record_is_dead_lettered_and_the_rest_delivered(hec: Hec) -> None:
    """The sink embeds the journaled JSON without parsing it (that parse was most of its CPU):
    HEC itself refuses the broken envelope (code 6, naming it) and the rest is resent."""
    good = records(1)[0]
    bad = Record(9, "codacy:bad", "codacy-prod", "gh/acme", BASE_MS, b"{not json")
    report = await make_sink(hec.url).send([bad, good])
    assert report is not None and report.rejected[0][0] is bad
    assert ids(hec.entries()) == ["codacy:0000"]


@pytest.mark.parametrize("token", ["wrong-token-4c1f9d0e", "disabled-token"])
async def test_forbidden_token_is_fatal_and_never_shown(hec: Hec, token: str) -> None:
    sink = make_sink(hec.url, token=token)
    with pytest.raises(FatalSinkError, match="HTTP 403") as caught:
        await sink.send(records(1))
    assert token not in str(caught.value) and token not in repr(sink) and token not in repr(sink.config)
    assert hec.entries() == []


async def test_missing_token_401_is_fatal(hec: Hec) -> None:
    hec.fault(status=401, body='{"text":"Token is required","code":2}')
    with pytest.raises(FatalSinkError, match="HTTP 401 code 2 Token is required") as caught:
        await make_sink(hec.url).send(records(1))
    assert TOKEN not in str(caught.value)


async def test_a_token_echoed_by_the_receiver_is_scrubbed(hec: Hec) -> None:
    hec.fault(status=403, body=orjson.dumps({"text": f"Invalid token {TOKEN}", "code": 4}).decode())
    with pytest.raises(FatalSinkError) as caught:
        await make_sink(hec.url).send(records(1))
    assert TOKEN not in str(caught.value) and "Invalid token ***" in str(caught.value)


async def test_check_reports_health_and_token(hec: Hec) -> None:
    assert "healthy and accepts the token" in await make_sink(hec.url).check()
    with pytest.raises(FatalSinkError, match="code 4"):
        await make_sink(hec.url, token="nope").check()
    hec.config(healthy=False)
    with pytest.raises(RuntimeError, match="code 18"):
        await make_sink(hec.url).check()
    assert hec.entries() == []


def test_config_normalizes_url_and_validates() -> None:
    config = SplunkHecSinkConfig(type="splunk_hec", url="https://s:8088/services/collector/event/", token=TOKEN)
    assert config.url == "https://s:8088"
    for endpoint in (
        "/services/collector",
        "/services/collector/event/1.0",
        "/services/collector/raw",
        "/services/collector/raw/1.0",
        "/services/collector/health/1.0",
    ):
        assert (
            SplunkHecSinkConfig(type="splunk_hec", url=f"https://s:8088{endpoint}", token=TOKEN).url == "https://s:8088"
        )
    proxied = SplunkHecSinkConfig(type="splunk_hec", url="https://proxy.example/splunk", token=TOKEN)
    assert proxied.url == "https://proxy.example/splunk"  # a path prefix of a proxy stays
    assert uuid.UUID(config.channel) and TOKEN not in repr(config)
    assert SplunkHecSinkConfig(type="splunk_hec", url="http://s", token=TOKEN).channel != config.channel
    for bad in ({"source": "{nope}"}, {"channel": "not-a-guid"}, {"url": "s:8088"}, {"token": " "}):
        with pytest.raises(ValidationError):
            SplunkHecSinkConfig(**({"type": "splunk_hec", "url": "http://s", "token": TOKEN} | bad))


# --- the receiver's protocol -----------------------------------------------------------------
def test_receiver_auth_codes(hec: Hec) -> None:
    body = b'{"event":"a"}'
    assert hec.http.post("/services/collector/event", content=body).json()["code"] == 2
    cases = [(f"Bearer {TOKEN}", 401, 3), ("Splunk nope", 403, 4), ("Splunk disabled-token", 403, 1)]
    for header, status, code in cases:
        reply = hec.post(body, Authorization=header)
        assert (reply.status_code, reply.json()["code"]) == (status, code)
    basic = "Basic " + base64.b64encode(f"any:{TOKEN}".encode()).decode()
    assert hec.post(body, Authorization=basic).json() == {"text": "Success", "code": 0}


def test_receiver_parses_concatenated_envelopes_on_every_alias(hec: Hec) -> None:
    for path in ("/services/collector", "/services/collector/event", "/services/collector/event/1.0"):
        reply = hec.post(b'{"event":"a"} {"event":{"x":1}}\n{"event":"c","fields":{"k":["v"]}}', path)
        assert reply.json() == {"text": "Success", "code": 0}
    assert [e["event"] for e in hec.entries()] == ["a", {"x": 1}, "c"] * 3


def test_receiver_per_event_errors_keep_the_events_before(hec: Hec) -> None:
    cases = [
        (b'{"event":"a"}{"event":', 6),
        (b'{"event":"a"}[1]', 6),
        (b'{"event":"a"}{"time":1}', 12),
        (b'{"event":"a"}{"event":""}', 13),
    ]
    for body, code in cases:
        reply = hec.post(body)
        assert reply.status_code == 400
        assert (reply.json()["code"], reply.json()["invalid-event-number"]) == (code, 1)
    assert len(hec.entries()) == 4
    assert hec.post(b'{"event":"a","fields":{"k":{"n":1}}}').json()["code"] == 15
    assert hec.post(b" \n").json() == {"text": "No data", "code": 5}


def test_receiver_content_encoding_and_size_limit(hec: Hec) -> None:
    hec.config(max_content_length=1000)
    assert hec.post(gzip.compress(b'{"event":"z"}'), Content_Encoding="gzip").status_code == 200
    assert hec.post(b'{"event":"z"}', Content_Encoding="deflate").status_code == 415
    assert hec.post(b"not gzip", Content_Encoding="gzip").json()["code"] == 6
    bomb = gzip.compress(b'{"event":"' + b"x" * 5000 + b'"}')
    assert len(bomb) < 1000 and hec.post(bomb, Content_Encoding="gzip").status_code == 413
    assert hec.post(b'{"event":"' + b"x" * 1000 + b'"}').status_code == 413
    assert [e["event"] for e in hec.entries()] == ["z"]


def test_receiver_ack_protocol(hec: Hec) -> None:
    ack_path = "/services/collector/ack"
    assert hec.post(b'{"acks":[0]}', ack_path, X_Splunk_Request_Channel=str(uuid.uuid4())).json()["code"] == 14
    hec.config(use_ack=True)
    assert hec.post(b'{"event":"a"}').json()["code"] == 10
    assert hec.post(b'{"event":"a"}', X_Splunk_Request_Channel="chan-1").json()["code"] == 11
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    got = [hec.post(b'{"event":"a"}', X_Splunk_Request_Channel=c).json().get("ackId") for c in (one, one, two)]
    assert got == [0, 1, 0]
    assert hec.post(b'{"acks":[0,1,5]}', ack_path, X_Splunk_Request_Channel=one).json() == {
        "acks": {"0": True, "1": True, "5": False}
    }
    assert hec.post(b'{"acks":[0,1]}', ack_path, X_Splunk_Request_Channel=one).json() == {
        "acks": {"0": False, "1": False}
    }
    assert hec.post(b'{"event":"r"}', "/services/collector/raw").json()["code"] == 10


def test_receiver_health_and_injected_busy(hec: Hec) -> None:
    assert hec.http.get("/services/collector/health").json() == {"text": "HEC is healthy", "code": 17}
    hec.fault(status=503)
    reply = hec.post(b'{"event":"a"}')
    assert (reply.status_code, reply.json()) == (503, {"text": "Server is busy", "code": 9})
    assert hec.entries() == []


async def test_json_formats_are_embedded_as_objects(hec: Hec) -> None:
    sink = make_sink(hec.url, format="ecs")
    await sink.send(records(1))
    [entry] = hec.entries()
    assert isinstance(entry["event"], dict)
    assert entry["event"]["event"]["module"] == "codacy"


# --- every documented refusal says what to fix -----------------------------------------------
async def test_an_index_the_token_may_not_write_stops_the_sink_naming_the_index(hec: Hec) -> None:
    """Code 7 is the same for every event of the sink (one `index`): dead-lettering them one
    by one would empty the journal into the dead-letter store; the sink stops saying what to fix."""
    hec.config(allowed_indexes=["main"])
    with pytest.raises(FatalSinkError) as caught:
        await make_sink(hec.url, index="audit").send(records(3))
    message = str(caught.value)
    assert "code 7 Incorrect index" in message and "index 'audit'" in message and "allowed indexes" in message
    assert hec.entries() == []


@pytest.mark.parametrize(
    ("status", "code", "text", "hint"),
    [
        (403, 1, "Token disabled", "disabled in Splunk"),
        (401, 2, "Token is required", "Authorization header"),
        (401, 3, "Invalid authorization", "Authorization header"),
        (403, 4, "Invalid token", "check the HEC token"),
        (400, 6, "Invalid data format", "the body"),
        (400, 10, "Data channel is missing", "X-Splunk-Request-Channel"),
        (400, 11, "Invalid data channel", "X-Splunk-Request-Channel"),
        (400, 15, "Error in handling indexed fields", "indexed-field settings"),
        (400, 16, "Query string authorization is not enabled", "?token="),
        (404, None, "Not Found", "check `url`"),
    ],
)
async def test_every_documented_refusal_stops_the_sink_with_what_to_fix(
    hec: Hec, status: int, code: int | None, text: str, hint: str
) -> None:
    body = orjson.dumps({"text": text, "code": code} if code is not None else {"text": text}).decode()
    hec.fault(status=status, body=body)
    with pytest.raises(FatalSinkError) as caught:
        await make_sink(hec.url).send(records(2))
    message = str(caught.value)
    assert message.startswith("sink hec: HEC refused: HTTP") and f"{status}" in message
    assert hint in message and TOKEN not in message


async def test_ack_disabled_while_polling_stops_the_sink_saying_to_turn_use_ack_off(hec: Hec) -> None:
    hec.config(use_ack=True)
    hec.fault(status=400, body='{"text":"ACK is disabled","code":14}', path_contains="/ack")
    with pytest.raises(FatalSinkError, match=r"code 14 ACK is disabled.*use_ack: false"):
        await make_sink(hec.url, use_ack=True).send(records(2))
