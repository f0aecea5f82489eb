"""A sink's failing, as the endpoints report it, and the clock: how long a sink has been failing
is measured on the monotonic clock (a wall-clock step must neither make a sink that failed a
second ago look failing for an hour on ``/readyz`` nor hide one that has), a batch given up on
leaves the sink failing, and a clock set back never holds a small batch past its max age."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest

from forwarder.delivery import SinkWorker
from forwarder.health import report
from forwarder.journal import SqliteJournal
from forwarder.record import Record
from forwarder.retry import RetrySettings
from sinks.base import RetryableError
from sinks.file_config import FileSinkConfig

ERROR = "sink out: HEC answered HTTP 503 code 9 Server is busy"


def view(worker: SinkWorker) -> Any:
    journal = SimpleNamespace(problems=lambda: [], size=(5, 500), is_full=lambda: False, head=5)
    worker.journal = cast(Any, journal)
    metrics = SimpleNamespace(source_failing_threshold_s=900.0, sink_failing_threshold_s=900.0)
    return SimpleNamespace(
        settings=SimpleNamespace(metrics=metrics),
        started=True,
        started_at=time.time(),
        config_path=None,
        pollers={},
        workers={"out": worker},
        journal=journal,
        replicas=None,
    )


def make_worker(tmp_path: Path) -> SinkWorker:
    config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
    return SinkWorker("out", cast(Any, None), config, cast(Any, None), RetrySettings())


def test_a_clock_step_forward_does_not_make_a_fresh_failure_look_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(tmp_path)
    daemon = view(worker)
    worker.status.failed(ERROR)
    stepped = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: stepped)
    ready, body = report(daemon)
    assert ready, body["problems"]
    assert body["sinks"]["out"]["failing_since"] == pytest.approx(stepped, abs=60)


def test_a_sink_failing_past_the_threshold_is_named_with_its_lag_and_error(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    daemon = view(worker)
    worker.status.failed(ERROR)
    assert worker.status.failing_since is not None
    worker.status.failing_since -= 1000  # failing for 1000 s by the monotonic clock
    ready, body = report(daemon)
    assert not ready
    assert body["problems"] == [f"sink out has been failing for over 900s, 5 events behind: {ERROR}"]
    worker.status.confirmed(time.time())
    assert report(daemon)[0]


class Refusing:
    """Out of reach until told otherwise."""

    def __init__(self) -> None:
        self.up = False

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, batch: Any) -> None:
        if not self.up:
            raise RetryableError("sink out: HEC unreachable: ConnectError: All connection attempts failed")


async def test_a_batch_given_up_on_leaves_the_sink_failing_until_a_batch_is_confirmed(tmp_path: Path) -> None:
    """``max_attempts`` moved the batch to the dead-letter store: nothing was confirmed, so the
    sink still shows failing, with why, rather than healthy."""
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    try:
        await journal.register_sinks(["out"])
        sink = Refusing()
        config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
        worker = SinkWorker(
            "out", cast(Any, sink), config, journal, RetrySettings(initial_backoff_s=0.01, max_attempts=2)
        )
        await worker._deliver([Record(1, "e1", "src", "org", 0, b"{}", "codacy")], 1)
        assert worker.status.dead_lettered == 1
        assert worker.status.state == "running"  # not retrying that batch any more
        assert worker.status.failing_since is not None and "unreachable" in (worker.status.error or "")
        sink.up = True
        await worker._deliver([Record(2, "e2", "src", "org", 0, b"{}", "codacy")], 2)
        assert worker.status.failing_since is None and worker.status.error is None
    finally:
        await journal.close()


class FullBatches(FileSinkConfig):
    """As Security Lake: batches wait for ``batch_max_age_s`` even at a poll's end."""

    flush_on_poll_end: ClassVar[bool] = False


async def test_a_clock_stepped_back_does_not_hold_a_small_batch_past_its_max_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forwarder import delivery
    from forwarder.chunks import Chunks, JournalEntry

    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    try:
        await journal.register_sinks(["out"])
        await journal.append("src", "org", Chunks.of([JournalEntry("e1", "codacy", 0, b"{}")]), {"w": 1})
        config = FullBatches(type="file", path=str(tmp_path / "out.ndjson"), batch_max_age_s=0.2)
        worker = SinkWorker("out", cast(Any, Refusing()), config, journal, RetrySettings())
        stepped = time.time() - 3600  # the clock set back an hour after the event was journaled
        monkeypatch.setattr(delivery, "time", SimpleNamespace(time=lambda: stepped))
        batch = await asyncio.wait_for(worker._next_batch(), 30)  # waited 3600.2 s before
        assert [record.event_id for record in batch] == ["e1"]
    finally:
        await journal.close()
