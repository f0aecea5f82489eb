"""The sink contract (``docs/specs/sink.md``), run over every type in ``sinks.registry.SINKS``
against a real receiver from ``tests/contract/receivers.py``.

Registering a sink type without registering its receiver fails this suite with a message
saying what to add; a rule a sink cannot meet is listed, with its reason, in its receiver's
``exempt``, never skipped.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forwarder.event import format_ms, make_event
from forwarder.record import Record, record_of
from sinks.base import FatalSinkError, RetryableError, Sink
from sinks.registry import SINKS
from tests.contract.receivers import RECEIVERS, RULES, Receiver
from tests.support.ports import free_port
from tests.support.raw_http import raw_http_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

BASE_MS = 1_717_200_000_000
MISSING = (
    "sink type {type!r} is registered in sinks/registry.py but has no contract receiver: add a Receiver "
    "subclass for it to RECEIVERS in tests/contract/receivers.py (a real receiver on 127.0.0.1 and how to "
    "read back what it holds; see the module's docstring)"
)


def batch(count: int = 5) -> list[Record]:
    out = []
    for i in range(count):
        ms = BASE_MS + i * 1001
        event = make_event(
            id=f"contract:{i:04d}",
            time=format_ms(ms),
            observed_time=format_ms(ms + 5),
            vendor="codacy",
            source="contract",
            organization="gh/acme",
            action="user.login",
            activity="login",
            category="authentication",
            outcome="success",
            raw={"n": i},
            actor={"email": "alice@example.com", "type": "user"},
        )
        out.append(record_of(event, i + 1, ms))
    return out


def registered(rule: str | None = None) -> list[str]:
    """Every registered sink type, less those whose receiver is exempt from ``rule`` (a type
    without a receiver stays, and fails in the ``receiver`` fixture)."""
    return [t for t in sorted(SINKS) if rule is None or rule not in getattr(RECEIVERS.get(t), "exempt", {})]


@pytest.fixture
def receiver(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    sink_type: str = request.param
    if sink_type not in RECEIVERS:
        pytest.fail(MISSING.format(type=sink_type))
    cls = RECEIVERS[sink_type]
    for name, value in cls.env.items():
        monkeypatch.setenv(name, value)
    started = cls(tmp_path)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def build(config: dict[str, Any]) -> Sink:
    config_class, factory = SINKS[config["type"]]
    return factory("contract", config_class.model_validate(config))


async def send(sink: Sink, records: list[Record]) -> None:
    """What the delivery layer does for one attempt: start (once), then send."""
    await sink.start()
    await sink.send(records)


def test_every_registered_sink_has_a_receiver() -> None:
    missing = sorted(set(SINKS) - set(RECEIVERS))
    assert not missing, "\n".join(MISSING.format(type=t) for t in missing)
    assert not set(RECEIVERS) - set(SINKS), "a receiver for a sink type that is not registered"


def test_every_exemption_names_a_rule_and_a_reason() -> None:
    for sink_type, cls in RECEIVERS.items():
        for rule, why in cls.exempt.items():
            assert rule in RULES, f"{sink_type}: exempt from unknown rule {rule!r} (rules: {sorted(RULES)})"
            assert why.strip(), f"{sink_type}: exempt from {rule} without a reason"


@pytest.mark.parametrize("receiver", registered(), indirect=True)
async def test_a_batch_sent_again_after_a_crash_keeps_its_ids(receiver: Receiver) -> None:
    """Sent, then (the daemon killed before the offset's commit) sent again by a new sink:
    each event arrives under its own id, once or twice, never under another id."""
    records = batch()
    want = {record.event_id for record in records}
    crashed = build(receiver.config())
    await send(crashed, records)  # never closed: the process died
    again = build(receiver.config())
    await send(again, records)
    await again.close()
    await crashed.close()  # only to release its resources now

    def arrived() -> Counter[str]:
        ids = Counter(event["id"] for event in receiver.received())
        return ids if set(ids) >= want else Counter()

    ids = await asyncio.to_thread(wait_until, "the batch at the receiver", arrived, 30)
    assert set(ids) == want
    assert all(1 <= n <= 2 for n in ids.values()), ids


@pytest.mark.parametrize("receiver", registered("unreachable"), indirect=True)
async def test_a_refused_connection_is_retryable(receiver: Receiver) -> None:
    sink = build(receiver.unreachable_config(free_port()))
    try:
        with pytest.raises(RetryableError):
            await send(sink, batch(1))
    finally:
        await sink.close()


async def answer_503(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy")
    await writer.drain()


async def answer_500(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\noops")
    await writer.drain()


@pytest.mark.parametrize("answer", [answer_500, answer_503], ids=["500", "503"])
@pytest.mark.parametrize("receiver", registered("server_error"), indirect=True)
async def test_a_server_error_is_retryable(receiver: Receiver, answer: Any) -> None:
    async with raw_http_server(answer) as url:
        sink = build(receiver.config_at(url))
        try:
            with pytest.raises(RetryableError):
                await send(sink, batch(1))
        finally:
            await sink.close()


@pytest.mark.parametrize("receiver", registered("bad_credentials"), indirect=True)
async def test_bad_credentials_are_fatal(receiver: Receiver) -> None:
    sink = build(await asyncio.to_thread(receiver.bad_credentials_config))
    try:
        with pytest.raises(FatalSinkError):
            await send(sink, batch(1))
    finally:
        await sink.close()


@pytest.mark.parametrize("receiver", registered(), indirect=True)
async def test_close_twice_is_safe(receiver: Receiver) -> None:
    """Shutdown and reload may both close a sink; one that never started closes too."""
    used = build(receiver.config())
    await send(used, batch(2))
    await used.close()
    await used.close()
    unused = build(receiver.config())
    await unused.close()
    await unused.close()
