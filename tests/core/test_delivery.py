"""The shared delivery layer around a sink (``forwarder.delivery.SinkWorker``), with sinks that
misbehave on purpose: a unit test of its bookkeeping, no receiver needed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from forwarder.chunks import JournalEntry
from forwarder.delivery import SinkWorker
from forwarder.journal import SqliteJournal
from forwarder.record import Record
from forwarder.retry import RetrySettings
from sinks.base import FatalSinkError, RetryableError
from sinks.file_config import FileSinkConfig


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
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    yield journal
    await journal.close()


def worker(sink: object, journal: SqliteJournal, tmp_path: Path, **retry: Any) -> SinkWorker:
    config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
    return SinkWorker("s", cast(Any, sink), config, journal, RetrySettings(initial_backoff_s=0.01, **retry))


RECORD = Record(1, "e1", "src", "org", 0, b"{}", "codacy")


async def test_a_cancelled_send_ends_the_delivery_instead_of_being_retried(
    journal: SqliteJournal, tmp_path: Path
) -> None:
    """tenacity's attempt swallows a cancellation like any error: retried, a stopping daemon kept
    sending past shutdown_timeout_s, for ever with the default unbounded retries."""
    delivery = asyncio.create_task(worker(Hanging(), journal, tmp_path)._deliver([RECORD], 1))
    await asyncio.sleep(0.1)
    delivery.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(delivery, 2)
    assert await journal.offset("s") == 0  # nothing confirmed, nothing committed


async def test_a_batch_wholly_dead_lettered_is_not_a_delivered_batch(journal: SqliteJournal, tmp_path: Path) -> None:
    await journal.register_sinks(["s"])
    failing = worker(Failing(), journal, tmp_path, max_attempts=2)
    await failing._deliver([RECORD], 1)
    assert (failing.status.batches, failing.status.delivered, failing.status.dead_lettered) == (0, 0, 1)
    assert await journal.offset("s") == 1  # past it: it waits in the dead-letter store


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, batch: Any) -> None:
        self.batches.append([r.seq for r in batch])


async def test_a_batch_whose_commit_failed_is_sent_again_with_the_same_members(
    journal: SqliteJournal, tmp_path: Path
) -> None:
    """The commit fails after the receiver confirmed (disk full) while polling goes on: the retry
    sends the same events, not a bigger batch an idempotent receiver would store again."""
    from forwarder.chunks import Chunks, JournalEntry

    async def append(numbers: list[int]) -> None:
        entries = [JournalEntry(f"e{n}", "codacy", 0, b"{}") for n in numbers]
        await journal.append("src", "org", Chunks.of(entries), {"w": 1})

    await journal.register_sinks(["s"])
    await append([1, 2, 3])
    sink = Recorder()
    config = FileSinkConfig(type="file", path=str(tmp_path / "unused"), batch_max_age_s=0.0)
    retry = RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.01)
    delivering = SinkWorker("s", cast(Any, sink), config, journal, retry)
    real_commit, failures = journal.commit, [OSError(28, "database or disk is full")]

    async def commit(*args: Any) -> None:
        if failures:
            await append([4, 5])
            raise failures.pop()
        await real_commit(*args)

    journal.commit = commit  # type: ignore[method-assign]
    task = asyncio.create_task(delivering.run())
    async with asyncio.timeout(10):
        while delivering.offset < 5:
            await asyncio.sleep(0.02)
    delivering.stop()
    await task
    assert sink.batches == [[1, 2, 3], [1, 2, 3], [4, 5]]
    assert await journal.inflight("s") is None


def entry(i: int) -> JournalEntry:
    return JournalEntry(f"e{i}", "codacy", i, b"{}")


class Recording(Hanging):
    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, batch: Any) -> None:
        self.sent.extend(record.seq for record in batch)


async def test_a_worker_regaining_its_lease_resumes_from_the_journaled_offset(
    journal: SqliteJournal, tmp_path: Path
) -> None:
    """While another replica held the sink's lease it delivered and moved the offset: the worker
    that regains the lease must start from there, not from where it stood when it lost it."""
    await journal.register_sinks(["s"])
    await journal.append("src", "org", [entry(1)], {"w": 1})
    owned = True
    sink = Recording()
    w = SinkWorker("s", cast(Any, sink), FileSinkConfig(type="file", path=str(tmp_path / "o"), batch_max_age_s=0),
                   journal, RetrySettings(), owns=lambda: owned)  # fmt: skip
    task = asyncio.create_task(w.run())
    for _ in range(200):
        if sink.sent == [1]:
            break
        await asyncio.sleep(0.01)
    owned = False  # the lease moves to another replica, which delivers seqs 2 and 3
    w.notify()
    await asyncio.sleep(0.05)
    await journal.append("src", "org", [entry(2), entry(3)], {"w": 2})
    await journal.commit("s", 3)
    await asyncio.sleep(0.1)
    assert w.status.state == "standby" and sink.sent == [1]
    owned = True
    await journal.append("src", "org", [entry(4)], {"w": 3})
    w.notify()
    for _ in range(300):
        if 4 in sink.sent:
            break
        await asyncio.sleep(0.01)
    w.stop()
    await asyncio.wait_for(task, 5)
    assert sink.sent == [1, 4]


def sized(i: int) -> JournalEntry:
    return JournalEntry(f"e{i}", "codacy", i, b'{"pad": "' + b"x" * 90 + b'"}')  # 100 bytes


async def sent_first(sink: Recorder, config: FileSinkConfig, journal: SqliteJournal, later: int = 0) -> list[int]:
    """The first batch a worker sends; ``later`` events are journaled once it is waiting to fill."""
    w = SinkWorker("s", cast(Any, sink), config, journal, RetrySettings())
    task = asyncio.create_task(w.run())
    try:
        if later:
            await asyncio.sleep(0.2)  # the worker read its one event and waits for more
            await journal.append("src", "org", [sized(i) for i in range(2, 2 + later)], {"w": 2})
            w.notify()
        async with asyncio.timeout(20):  # far below batch_max_age_s: only a full batch goes out
            while not sink.batches:
                await asyncio.sleep(0.02)
    finally:
        w.stop()
        await asyncio.wait_for(task, 5)
    return sink.batches[0]


async def test_a_batch_full_by_bytes_goes_out_without_waiting_its_age(journal: SqliteJournal, tmp_path: Path) -> None:
    """docs/sinks.md: a batch goes out once it reaches batch_max_events or batch_max_bytes; a
    batch cut by bytes below the event count waited batch_max_age_s all the same, so a sink
    of large events delivered one batch per age (1 MiB a second by default)."""
    await journal.register_sinks(["s"])
    await journal.append("src", "org", [sized(i) for i in range(1, 7)], {"w": 1})
    config = FileSinkConfig(type="file", path=str(tmp_path / "o"), batch_max_bytes=250, batch_max_age_s=3600)
    assert await sent_first(Recorder(), config, journal) == [1, 2]


async def test_a_waiting_batch_goes_out_once_the_events_journaled_meanwhile_fill_its_bytes(
    journal: SqliteJournal, tmp_path: Path
) -> None:
    await journal.register_sinks(["s"])
    await journal.append("src", "org", [sized(1)], {"w": 1})
    config = FileSinkConfig(type="file", path=str(tmp_path / "o"), batch_max_bytes=250, batch_max_age_s=3600)
    assert await sent_first(Recorder(), config, journal, later=5) == [1, 2]


async def test_a_lease_lapsing_during_the_pause_ends_the_retrying_before_the_next_attempt(
    journal: SqliteJournal, tmp_path: Path
) -> None:
    """The lease was looked at only after an attempt failed: one lapsing during a back-off (or a
    Retry-After) longer than the lease let the replica send once more beside the new holder."""
    from forwarder.journal.types import FencedError

    await journal.register_sinks(["s"])
    owned = True

    class FailingOnce(Failing):
        async def send(self, batch: Any) -> None:
            self.calls += 1
            asyncio.get_running_loop().call_soon(lapse)  # once the worker pauses before attempt 2
            raise RetryableError("503 from the receiver", 2.5)  # Retry-After: 2.5 s

    def lapse() -> None:
        nonlocal owned
        owned = False

    sink = FailingOnce()
    config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
    w = SinkWorker("s", cast(Any, sink), config, journal, RetrySettings(initial_backoff_s=0.01), owns=lambda: owned)
    with pytest.raises(FencedError):
        await w._deliver([RECORD], 1)
    assert sink.calls == 1
    assert await journal.offset("s") == 0  # nothing committed: the next holder sends it


async def test_a_sink_bounded_by_max_attempts_is_dead_lettered_not_handed_over(
    journal: SqliteJournal, tmp_path: Path
) -> None:
    """Handed over after ``sink_handover_s`` of failing, the batch went to the next replica,
    which counted its attempts afresh: failing everywhere, it moved between replicas and never
    reached the dead-letter store, the documented way out of a journal held full by one sink."""

    class Lease:
        def __init__(self) -> None:
            self.handed: list[float | None] = []

        def __call__(self) -> bool:
            return True

        def hand_over(self, failing_s: float | None) -> None:
            self.handed.append(failing_s)

    await journal.register_sinks(["s"])
    lease = Lease()
    config = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"))
    retry = RetrySettings(initial_backoff_s=0.01, max_attempts=3)
    w = SinkWorker("s", cast(Any, Failing()), config, journal, retry, owns=lease)
    await w._deliver([RECORD], 1)
    assert lease.handed == [] and w.status.dead_lettered == 1
