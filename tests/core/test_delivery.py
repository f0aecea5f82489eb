"""The shared delivery layer around a sink (``forwarder.delivery.SinkWorker``), with sinks that
misbehave on purpose: a unit test of its bookkeeping, no receiver needed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from forwarder.delivery import RetrySettings, SinkWorker
from forwarder.journal import Journal
from sinks.base import FatalSinkError, Record, RetryableError
from sinks.file import FileSinkConfig


class Hanging:
    calls = 0

    async def start(self) -> None:
        return None

    async def send(self, batch: Any) -> None:
        self.calls += 1
        if self.calls > 1:  # ends the test's delivery should it be retried
            raise FatalSinkError("sent again after a cancellation")
        await asyncio.sleep(3600)  # a firewalled receiver: every attempt waits out its timeout


class Failing(Hanging):
    async def send(self, batch: Any) -> None:
        raise RetryableError("503 from the receiver")


@pytest.fixture
async def journal(tmp_path: Path) -> Any:
    journal = Journal(tmp_path / "journal.sqlite3")
    await journal.open()
    yield journal
    await journal.close()


def worker(sink: object, journal: Journal, tmp_path: Path, **retry: Any) -> SinkWorker:
    config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
    return SinkWorker("s", cast(Any, sink), config, journal, RetrySettings(initial_backoff_s=0.01, **retry))


RECORD = Record(1, "e1", "src", "org", 0, b"{}", "codacy")


async def test_a_cancelled_send_ends_the_delivery_instead_of_being_retried(journal: Journal, tmp_path: Path) -> None:
    """tenacity's attempt swallows a cancellation like any error: retried, a stopping daemon kept
    sending past shutdown_timeout_s, for ever with the default unbounded retries."""
    delivery = asyncio.create_task(worker(Hanging(), journal, tmp_path)._deliver([RECORD], 1))
    await asyncio.sleep(0.1)
    delivery.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(delivery, 2)
    assert await journal.offset("s") == 0  # nothing confirmed, nothing committed


async def test_a_batch_wholly_dead_lettered_is_not_a_delivered_batch(journal: Journal, tmp_path: Path) -> None:
    await journal.register_sinks(["s"])
    failing = worker(Failing(), journal, tmp_path, max_attempts=2)
    await failing._deliver([RECORD], 1)
    assert (failing.status.batches, failing.status.delivered, failing.status.dead_lettered) == (0, 0, 1)
    assert await journal.offset("s") == 1  # past it: it waits in the dead-letter store
