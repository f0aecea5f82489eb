"""The syslog sink against a real rsyslogd: every transport, both RFCs, both TCP framings.

Each test tags its messages with its own APP-NAME (TAG for RFC 3164), so tests sharing the
module's rsyslog only ever look at their own messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from forwarder.event import make_event
from forwarder.record import Record, record_of
from sinks.base import FatalSinkError, RetryableError
from sinks.syslog.config import SyslogSinkConfig
from sinks.syslog.encoding import SyslogEncoder
from sinks.syslog.sink import SyslogSink
from tests.formats.samples import parse_cef
from tests.support.rsyslog import RSYSLOG_MAX_MESSAGE, Received, Rsyslog, as_shown

pytestmark = pytest.mark.integration

HOSTILE = 'x "quoted" back\\slash ]bracket] é ü'
LONG_ACTION = "organization.member.permission.changed with spaces\tand tabs ünï"


def make_record(seq: int, **overrides: Any) -> Record:
    fields: dict[str, Any] = {
        "id": f"evt-{seq}-{uuid.uuid4().hex[:6]}",
        "time": f"2026-11-24T04:30:{seq % 60:02d}.{seq % 1000:03d}Z",
        "observed_time": "2026-11-24T05:00:00.000Z",
        "vendor": "codacy",
        "source": "codacy-main",
        "organization": "acme",
        "action": "repo.create",
        "activity": "create",
        "category": "entity_management",
        "outcome": "success",
        "raw": {"n": seq},
        "actor": {"name": "alice", "email": "alice@example.com"},
    }
    fields.update(overrides)
    event = make_event(**fields)
    return record_of(event, seq)


def mixed_batch() -> list[Record]:
    """Ordinary events plus the hostile ones: SD escapes, a long non-ASCII action, each severity."""
    return [
        *(make_record(i) for i in range(10)),
        make_record(10, organization=HOSTILE, action=HOSTILE, outcome="failure", category="authentication"),
        make_record(11, action=LONG_ACTION, category="access_management"),
        make_record(12, action="", outcome="failure", category="forwarder", details={"note": HOSTILE}),
    ]


def config(rsyslog: Rsyslog, transport: str, **extra: Any) -> SyslogSinkConfig:
    port = rsyslog.ports["udp" if transport == "udp" else transport]
    values: dict[str, Any] = {
        "type": "syslog",
        "host": "127.0.0.1",
        "port": port,
        "transport": "tls" if transport in ("tls", "mtls") else transport,
        "app_name": f"t{uuid.uuid4().hex[:10]}",
        "hostname": "collector.example.net",
        "facility": "local3",
    }
    if transport in ("tls", "mtls"):
        values["ca_file"] = str(rsyslog.pki.ca)
        values["server_name"] = "localhost"
    values.update(extra)
    return SyslogSinkConfig.model_validate(values)


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    with Rsyslog(tmp_path_factory.mktemp("rsyslog")) as server:
        yield server


@pytest.fixture
async def sinks() -> AsyncIterator[list[SyslogSink]]:
    """Sinks a test opens are closed even when it fails."""
    opened: list[SyslogSink] = []
    yield opened
    for sink in opened:
        await sink.close()


def open_sink(sinks: list[SyslogSink], cfg: SyslogSinkConfig) -> SyslogSink:
    sink = SyslogSink("test", cfg)
    sinks.append(sink)
    return sink


def expected_severity(event: dict[str, Any]) -> int:
    if event["outcome"] == "failure":
        return 3 if event["category"] == "forwarder" else 4
    return 5 if event["category"] in ("access_management", "user_management") else 6


def expected_msgid(action: str) -> str:
    if not action:
        return "-"
    return "".join(c if "!" <= c <= "~" else "_" for c in action[:32])


def assert_5424(sent: Record, got: Received, cfg: SyslogSinkConfig, input_name: str) -> None:
    event = sent.event()
    assert got["input"] == input_name
    assert got["version"] == "1"
    assert int(got["pri"]) == 19 * 8 + expected_severity(event)
    assert got["timestamp"] == event["time"]
    assert got["hostname"] == "collector.example.net"
    assert got["app_name"] == cfg.app_name
    assert got["procid"] == str(os.getpid())
    assert got["msgid"] == expected_msgid(event["action"])
    params = {
        "id": event["id"],
        "vendor": "codacy",
        "org": event["organization"],
        "action": event["action"],
        "outcome": event["outcome"],
        "category": event["category"],
    }
    assert got["sd_parsed"] == {"audit@32473": {k: as_shown(v) for k, v in params.items() if v}}
    assert got["msg"].startswith("\ufeff"), "RFC 5424 MSG-UTF8 starts with a BOM"
    assert json.loads(got["msg"][1:]) == event


async def deliver_and_check(rsyslog: Rsyslog, sink: SyslogSink, input_name: str) -> list[Received]:
    batch = mixed_batch()
    await sink.send(batch[:5])
    await sink.send(batch[5:])
    got = await rsyslog.wait_for(len(batch), lambda r: r["app_name"] == sink.config.app_name)
    by_id = {r["sd_parsed"]["audit@32473"]["id"]: r for r in got}
    assert sorted(by_id) == sorted(r.event_id for r in batch)
    for record in batch:
        assert_5424(record, by_id[record.event_id], sink.config, input_name)
    return got


async def test_udp_delivers_every_event(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    sink = open_sink(sinks, config(rsyslog, "udp"))
    await sink.start()
    got = await deliver_and_check(rsyslog, sink, "udp")
    hostile = next(r for r in got if r["sd_parsed"]["audit@32473"]["org"] == HOSTILE)
    assert 'org="x \\"quoted\\" back\\\\slash \\]bracket\\] é ü"' in hostile["sd"]
    assert sink.truncated_count == 0
    assert "nothing was sent" in await sink.check()


@pytest.mark.parametrize("framing", ["octet_counting", "lf"])
async def test_tcp_delivers_every_event(rsyslog: Rsyslog, sinks: list[SyslogSink], framing: str) -> None:
    sink = open_sink(sinks, config(rsyslog, "tcp", framing=framing))
    await deliver_and_check(rsyslog, sink, "tcp")
    assert "connected" in await sink.check()


@pytest.mark.parametrize("framing", ["octet_counting", "lf"])
async def test_tcp_line_feeds_keep_one_message_per_event(
    rsyslog: Rsyslog, sinks: list[SyslogSink], framing: str
) -> None:
    """LF framing cannot carry an LF, so the sink writes it as ``\\n``; octet counting carries it
    as is (rsyslog shows a received control character as ``#012``). Either way one event stays one
    message, and a 40 kB event is not cut under a cap raised to the receiver's limit."""
    sink = open_sink(sinks, config(rsyslog, "tcp", framing=framing, max_message_bytes=RSYSLOG_MAX_MESSAGE))
    batch = [
        make_record(1, organization="line one\nline two"),
        make_record(2, details={"blob": "y" * 40_000}),
        make_record(3),
    ]
    await sink.send(batch)
    got = await rsyslog.wait_for(3, lambda r: r["app_name"] == sink.config.app_name)
    by_id = {r["sd_parsed"]["audit@32473"]["id"]: r for r in got}
    shown = "line one\\nline two" if framing == "lf" else as_shown("line one\nline two")
    assert by_id[batch[0].event_id]["sd_parsed"]["audit@32473"]["org"] == shown
    assert json.loads(by_id[batch[1].event_id]["msg"][1:]) == batch[1].event()
    assert json.loads(by_id[batch[2].event_id]["msg"][1:]) == batch[2].event()
    assert sink.truncated_count == 0


async def test_tls_verified_against_the_test_ca(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    sink = open_sink(sinks, config(rsyslog, "tls"))
    await sink.start()
    await deliver_and_check(rsyslog, sink, "tls")
    assert "certificate verified" in await sink.check()


async def test_mutual_tls_with_a_client_certificate(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    pki = rsyslog.pki
    sink = open_sink(sinks, config(rsyslog, "mtls", client_cert=str(pki.client_cert), client_key=str(pki.client_key)))
    await deliver_and_check(rsyslog, sink, "mtls")


@pytest.mark.parametrize("wrong", ["ca", "name"])
async def test_tls_refuses_an_unverified_server(rsyslog: Rsyslog, sinks: list[SyslogSink], wrong: str) -> None:
    override = {"ca_file": str(rsyslog.pki.other_ca)} if wrong == "ca" else {"server_name": "wrong.example"}
    sink = open_sink(sinks, config(rsyslog, "tls", **override))
    with pytest.raises(RetryableError, match="TLS certificate verification failed"):
        await sink.send([make_record(1)])
    with pytest.raises(RetryableError, match="TLS certificate verification failed"):
        await sink.check()
    await asyncio.sleep(0.2)
    assert rsyslog.records(lambda r: r["app_name"] == sink.config.app_name) == []


async def test_tls_without_verification_still_encrypts(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    sink = open_sink(sinks, config(rsyslog, "tls", ca_file=None, server_name=None, verify=False))
    await sink.send([make_record(1)])
    got = await rsyslog.wait_for(1, lambda r: r["app_name"] == sink.config.app_name)
    assert got[0]["input"] == "tls"
    assert "NOT verified" in await sink.check()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_rfc3164(rsyslog: Rsyslog, sinks: list[SyslogSink], transport: str) -> None:
    sink = open_sink(sinks, config(rsyslog, transport, rfc="3164"))
    batch = [make_record(5, outcome="failure"), make_record(17, organization=HOSTILE)]
    await sink.send(batch)
    got = await rsyslog.wait_for(2, lambda r: r["app_name"] == sink.config.app_name)
    by_id = {json.loads(r["msg"])["id"]: r for r in got}
    for record in batch:
        event, received = record.event(), by_id[record.event_id]
        assert received["version"] == "0"
        assert int(received["pri"]) == 19 * 8 + expected_severity(event)
        assert received["hostname"] == "collector.example.net"
        assert received["msgid"] == "-" and received["sd"] == "-"
        header = f"<{received['pri']}>Nov 24 04:30:{record.seq:02d} collector.example.net {sink.config.app_name}: "
        assert received["rawmsg"].startswith(header)
        assert json.loads(received["msg"]) == event


async def test_bom_false_leaves_the_byte_order_mark_out(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    """For receivers that read the BOM as part of a CEF or LEEF payload: the MSG starts with it."""
    sink = open_sink(sinks, config(rsyslog, "tcp", bom=False, format="cef", app_name="no-bom"))
    await sink.send([make_record(3)])
    (received,) = await rsyslog.wait_for(1, lambda r: r["app_name"] == "no-bom")
    assert received["msg"].startswith("CEF:0|"), received["msg"][:20]
    assert received["sd_parsed"]["audit@32473"]["action"]  # still a whole RFC 5424 message


async def test_udp_truncates_oversize_messages_visibly(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    sink = open_sink(sinks, config(rsyslog, "udp", max_message_bytes=1000))
    batch = [
        make_record(1, details={"blob": "a" * 5000}),
        make_record(2, details={"blob": "é" * 3000}),  # 2-byte characters: the cut must not split one
        make_record(3),
    ]
    with capture_logs() as logs:
        await sink.send(batch)
    # one line for the batch, with the count: a batch of big events must not log once an event
    assert [(e["messages"], e["limit"]) for e in logs if "truncated" in e["event"]] == [(2, 1000)]
    got = await rsyslog.wait_for(3, lambda r: r["app_name"] == sink.config.app_name)
    by_id = {r["sd_parsed"]["audit@32473"]["id"]: r for r in got}
    for record in batch[:2]:
        received = by_id[record.event_id]
        assert received["msg"].endswith("...[truncated]")
        assert 999 <= len(received["rawmsg"].encode()) <= 1000  # at most one byte of a split é dropped
        assert record.event()["id"] == received["sd_parsed"]["audit@32473"]["id"]
    assert json.loads(by_id[batch[2].event_id]["msg"][1:]) == batch[2].event()
    assert sink.truncated_count == 2


async def test_tcp_cap_applies_when_set(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    sink = open_sink(sinks, config(rsyslog, "tcp", max_message_bytes=1000))
    await sink.send([make_record(1, details={"blob": "b" * 3000}), make_record(2)])
    got = await rsyslog.wait_for(2, lambda r: r["app_name"] == sink.config.app_name)
    assert sorted(r["msg"].endswith("...[truncated]") for r in got) == [False, True]
    assert len(next(r for r in got if r["msg"].endswith("]"))["rawmsg"].encode()) == 1000
    assert sink.truncated_count == 1


@pytest.fixture
def own_rsyslog(tmp_path: Path, rsyslog: Rsyslog) -> Iterator[Rsyslog]:
    """A daemon of its own, for tests that stop it."""
    with Rsyslog(tmp_path, pki=rsyslog.pki) as server:
        yield server


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_reconnects_after_the_receiver_restarts(
    own_rsyslog: Rsyslog, sinks: list[SyslogSink], transport: str
) -> None:
    sink = open_sink(sinks, config(own_rsyslog, transport))
    mine = lambda r: r["app_name"] == sink.config.app_name  # noqa: E731
    first, second = [make_record(i) for i in range(3)], [make_record(i) for i in range(3, 6)]
    await sink.send(first)
    await own_rsyslog.wait_for(3, mine)

    own_rsyslog.stop()
    await asyncio.sleep(0.2)  # the receiver's FIN reaches the sink's connection
    with pytest.raises(RetryableError, match="cannot connect"):
        await sink.send(second)
    with pytest.raises(RetryableError, match="cannot connect"):
        await sink.send(second)  # still down: the delivery layer's next attempt fails the same way

    own_rsyslog.start()
    await sink.send(second)
    got = await own_rsyslog.wait_for(6, mine)
    assert {r["sd_parsed"]["audit@32473"]["id"] for r in got} == {r.event_id for r in first + second}


async def test_start_fails_retryably_when_nobody_listens(own_rsyslog: Rsyslog) -> None:
    cfg = config(own_rsyslog, "tcp", connect_timeout_s=2)
    own_rsyslog.stop()
    sink = SyslogSink("test", cfg)
    with pytest.raises(RetryableError, match="cannot connect"):
        await sink.start()
    with pytest.raises(RetryableError, match="cannot connect"):
        await sink.check()
    await sink.close()


def test_config_defaults_and_validation() -> None:
    tcp = SyslogSinkConfig.model_validate({"type": "syslog", "host": "h"})
    assert (tcp.port, tcp.transport, tcp.framing, tcp.max_message_bytes, tcp.facility) == (
        514,
        "tcp",
        "octet_counting",
        8192,  # RFC 5425 4.3.1; uncapped, a receiver read the rest of a long message as new ones
        16,
    )
    assert (tcp.app_name, tcp.sd_id) == ("audit-forwarder", "audit@32473")
    udp = SyslogSinkConfig.model_validate({"type": "syslog", "host": "h", "transport": "udp"})
    assert udp.max_message_bytes == 2048
    bsd = {"type": "syslog", "host": "h", "transport": "udp", "rfc": "3164"}
    assert SyslogSinkConfig.model_validate(bsd).max_message_bytes == 1024  # RFC 3164 4.1
    assert SyslogSinkConfig.model_validate({**bsd, "max_message_bytes": 4096}).max_message_bytes == 4096  # as set
    tls = SyslogSinkConfig.model_validate({"type": "syslog", "host": "h", "transport": "tls", "facility": "AUTHPRIV"})
    assert (tls.port, tls.facility, tls.verify) == (6514, 10, True)
    assert SyslogSinkConfig.model_validate({"type": "syslog", "host": "h", "facility": "13"}).facility == 13
    bad: list[dict[str, Any]] = [
        {"sd_id": "audit"},
        {"sd_id": "audit@pen"},
        {"sd_id": "a b@32473"},
        {"sd_id": "x" * 30 + "@32473"},
        {"facility": "local8"},
        {"facility": 24},
        {"ca_file": "/ca.pem"},  # TLS option without transport tls
        {"transport": "tls", "client_key": "/k.pem"},
        {"max_message_bytes": 100},
    ]
    for extra in bad:
        with pytest.raises(ValidationError):
            SyslogSinkConfig.model_validate({"type": "syslog", "host": "h", **extra})
    assert SyslogSinkConfig.model_validate({"type": "syslog", "host": "h", "sd_id": "x@1.2.3"}).sd_id == "x@1.2.3"


async def test_unreadable_tls_files_are_fatal(rsyslog: Rsyslog, tmp_path: Path) -> None:
    """Retrying cannot fix a missing CA file: the sink stops loudly instead of looping."""
    sink = SyslogSink("test", config(rsyslog, "tls", ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(FatalSinkError, match="bad TLS files"):
        await sink.send([make_record(1)])
    await sink.close()


def test_timestamps_formatted_per_minute_match_the_full_format() -> None:
    """The header's date and minute are remembered between events; every time still reads alike."""
    from forwarder.event import format_ms
    from sinks.syslog.encoding import SyslogEncoder

    encoder = SyslogEncoder(SyslogSinkConfig(type="syslog", host="127.0.0.1"))
    times = [1_700_000_000_000 + step for step in (0, 999, 1_000, 1_001, 59_999, 60_000, 61_001, -1, 86_400_000 * 400)]
    times += [-1_001, -1_000, -999, -1, 0, 1, 59_999, 60_000]  # around the epoch, where minutes are negative
    for ms in times:
        assert encoder._timestamp(ms) == format_ms(ms).encode(), ms


def test_sd_values_are_escaped_and_plain_ones_pass_through() -> None:
    from sinks.syslog.encoding import sd_escape

    assert sd_escape('id "1"] back\\slash é') == 'id \\"1\\"\\] back\\\\slash é'.encode()
    assert sd_escape("codacy:3f2a") == b"codacy:3f2a"
    assert sd_escape("") == b""


async def test_a_huge_sd_value_is_cut_and_the_message_still_parses(rsyslog: Rsyslog, sinks: list[SyslogSink]) -> None:
    """An action of 2,100 characters filled a 2,048-byte datagram with header: the SD element
    was never closed and the event's body was lost."""
    sink = open_sink(sinks, config(rsyslog, "udp"))
    batch = [make_record(1, action="a" * 2100)]
    await sink.send(batch)
    (got,) = await rsyslog.wait_for(1, lambda r: r["app_name"] == sink.config.app_name)
    params = got["sd_parsed"]["audit@32473"]
    assert params["id"] == batch[0].event_id and params["action"] == "a" * 255
    assert got["msg"]  # the body (the event's JSON, cut to the cap) is there
    quoted = [make_record(2, action='"' * 600, organization="]" * 600, vendor="\\" * 600)]  # escaping doubles
    await sink.send(quoted)
    (got,) = await rsyslog.wait_for(1, lambda r: r["app_name"] == sink.config.app_name and "evt-2" in r["rawmsg"])
    assert got["sd_parsed"]["audit@32473"]["id"] == quoted[0].event_id and got["msg"]


async def test_a_long_value_cannot_forge_messages_at_a_default_receiver(
    rsyslog: Rsyslog, sinks: list[SyslogSink]
) -> None:
    """A receiver cuts a message over its size limit and reads the rest as new messages
    (rsyslog's default, ``discardTruncatedMsg`` off): a user name of 100 KB ending in a syslog
    line would arrive as a message of its own, under any APP-NAME it names. The stream default
    cap keeps every message within what RFC 5425 says receivers take (8192 octets)."""
    cfg = config(rsyslog, "tcp")
    assert cfg.max_message_bytes == 8192
    forged = "<13>1 2026-01-01T00:00:00Z evil forged - - - root logged in"
    probe = make_record(1, actor={"name": "Q" * 70_000})
    start = SyslogEncoder(cfg.model_copy(update={"max_message_bytes": None})).encode(probe).index(b"Q")
    cut = RSYSLOG_MAX_MESSAGE + 1  # rsyslog 8.2302 keeps this many bytes; the rest is a message of its own
    name = "Q" * (cut - start) + forged + "Q" * 70_000
    sink = open_sink(sinks, cfg)
    with capture_logs() as logs:
        await sink.send([make_record(1, actor={"name": name}), make_record(2)])
    await rsyslog.wait_for(2, lambda r: r["app_name"] == cfg.app_name)
    assert rsyslog.records(lambda r: r["app_name"] == "forged") == []
    assert [e["messages"] for e in logs if e["event"] == "syslog messages truncated to max_message_bytes"] == [1]


@pytest.mark.parametrize("framing", ["octet_counting", "lf"])
async def test_a_cut_message_never_ends_in_half_an_escape(
    rsyslog: Rsyslog, sinks: list[SyslogSink], framing: str
) -> None:
    """The cap cuts the formatted line: a cut right after the backslash of a CEF escape (``\\\\``,
    ``\\=``, or LF framing's ``\\n``) left ``\\.`` before the marker, an escape CEF does not define
    and ArcSight's parser refuses. Both parities of a run of backslashes must read back."""
    cfg = config(rsyslog, "tcp", format="cef", framing=framing, max_message_bytes=1000)
    sink = open_sink(sinks, cfg)
    batch = [make_record(1, message="\\" * 3000), make_record(2, message="x" + "\\" * 3000)]
    await sink.send(batch)
    got = await rsyslog.wait_for(2, lambda r: r["app_name"] == cfg.app_name)
    for received in got:
        line = received["msg"].removeprefix("\ufeff")
        assert line.endswith("...[truncated]")
        value = parse_cef(line)[1]["msg"]
        assert value.endswith("...[truncated]")
        assert set(value.removesuffix("...[truncated]").removeprefix("x")) == {"\\"}
    assert sink.truncated_count == 2
