"""The delivery layer shared by every sink: read the journal from the sink's offset, batch,
send with retries, dead-letter permanent rejections, then commit the offset.

One ``SinkWorker`` per sink, each an independent task: a slow or dead sink only grows its
own lag and never holds up another sink or the polling. Retries are unbounded by default
(compliance data must not be dropped because a receiver was down for a weekend); a finite
``max_attempts`` moves a batch that still fails to the dead-letter store instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_never,
)
from tenacity.stop import stop_base

from forwarder import metrics
from forwarder.evidence.digest_writer import DigestWriter
from forwarder.journal import DeliveryJournal, FencedError
from forwarder.record import Record
from forwarder.redaction import scrub_reasons
from forwarder.retry import BackoffWait, RetrySettings
from forwarder.routing import Router
from forwarder.status import SinkState
from sinks.base import FatalSinkError, RetryableError, Sink, SinkConfig

log = structlog.get_logger("forwarder.delivery")


@runtime_checkable
class SinkLease(Protocol):
    """A replica's lease on a sink (``forwarder.replicas.SinkLease``): held or not, and handed
    over when this replica cannot deliver the sink (failing for ``failing_s``, None: stopped)."""

    def __call__(self) -> bool: ...

    def hand_over(self, failing_s: float | None) -> None: ...


class _StopRequested(stop_base):
    """Ends the retrying once the worker is told to stop."""

    def __init__(self, worker: SinkWorker) -> None:
        self.worker = worker

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.worker._stopping


class _LeaseLapsed(stop_base):
    """Ends the retrying once this replica no longer holds the sink's lease (lost to another
    replica, or lapsed while the database was out of reach): the batch is the next holder's,
    from the offset the database has. Retrying it on, a replica paused or cut off past its
    lease sent a batch it could no longer record beside the holder's, for as long as the
    receiver refused (for ever with the default retry)."""

    def __init__(self, worker: SinkWorker) -> None:
        self.worker = worker

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.worker.lease_lapsed()


class _LeaseGone(Exception):
    """The lease lapsed while the worker paused between two attempts: the next is not sent."""


class _Interrupted(Exception):
    """The worker was told to stop between two attempts: the batch is neither confirmed nor
    given up on; it stays journaled after the offset and is sent first at the next start."""


class SinkWorker:
    def __init__(
        self, name: str, sink: Sink, config: SinkConfig, journal: DeliveryJournal, retry: RetrySettings,
        owns: Callable[[], bool] | None = None,
    ) -> None:  # fmt: skip
        """``owns()``: whether this replica holds the sink's lease (``forwarder.replicas``);
        None delivers always (one process owns the state)."""
        self.name = name
        self.owns = owns
        writer = getattr(sink, "digests", None)
        if isinstance(writer, DigestWriter):  # its digests, too, are written only while the lease is held
            writer.owns = owns
        self._standby = False  # not holding the lease: the offset may be moved by another replica
        self.sink = sink
        self.config = config
        self.journal = journal
        self.retry = retry
        self.router = Router.build(config.filter, config.redact, config.redact_key)
        self.status = SinkState()
        self.wakeup = asyncio.Event()
        self.offset = 0
        self._stopping = False
        self._stop_requested = asyncio.Event()  # ends a pause between attempts (``wakeup`` is cleared elsewhere)
        self.flush_upto = 0
        self.replay_upto: int | None = None  # a batch sent but never committed before a restart
        self._started = False

    def notify(self) -> None:
        self.wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()
        self.wakeup.set()

    def flush(self, force: bool = False) -> None:
        """A poll just ended: no more events are coming before the next one, so what is journaled
        now goes out at once instead of waiting ``batch_max_age_s`` for the batch to fill, unless
        the sink wants its batches full (``flush_on_poll_end``) and this is not the end of a
        ``once`` run (``force``)."""
        if not (force or self.config.flush_on_poll_end):
            return
        self.flush_upto = self.journal.head
        self.wakeup.set()

    @property
    def caught_up(self) -> bool:
        return self.offset >= self.journal.head

    async def run(self) -> None:
        self.offset = await self.journal.offset(self.name)
        self.replay_upto = await self.journal.inflight(self.name)
        self.status.state = "running"
        await self._start_digests()
        try:
            while not self._stopping:
                try:  # reads too: a PostgreSQL state may be out of reach for a while
                    if not await self._holding():
                        continue
                    batch = await self._next_batch()
                    if not batch:
                        continue
                    await self._route_and_deliver(batch)
                except FatalSinkError:
                    raise
                except _Interrupted:
                    log.info("sink stopped between delivery attempts; its batch stays journaled", sink=self.name)
                except FencedError:  # another replica delivers this sink now (logged and counted by the fence)
                    self._stand_by()
                except Exception as exc:  # e.g. the journal cannot commit (disk full): retry the batch later
                    self.status.failed(f"{type(exc).__name__}: {exc}")
                    log.error(
                        "sink worker error; the batch will be sent again", sink=self.name, error=self.status.error
                    )
                    with contextlib.suppress(Exception):
                        self.offset = await self.journal.offset(self.name)
                        self.replay_upto = await self.journal.inflight(self.name)  # the same batch again
                    await asyncio.sleep(0 if self._stopping else min(5.0, self.retry.max_backoff_s))
        except FatalSinkError as exc:
            self.status.failed(str(exc), "stopped")
            log.error("sink stopped; fix the problem and restart or reload", sink=self.name, error=str(exc))
            if isinstance(self.owns, SinkLease):  # another replica may deliver it
                self.owns.hand_over(None)
        finally:
            if self.status.state != "stopped":
                self.status.state = "idle"

    async def _holding(self) -> bool:
        """Waits (a second, or until woken) while another replica holds this sink's lease.
        Regained, the offset and the in-flight note are read again: the other replica moved them."""
        if self.owns is None:
            return True
        if not self.owns():
            if not self._standby:
                log.info("sink delivered by another replica; standing by", sink=self.name)
            self._stand_by()
            self.status.state = "standby"
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=1.0)
            await self._follow()
            return False
        if self._standby:
            self.offset = await self.journal.offset(self.name)
            self.replay_upto = await self.journal.inflight(self.name)
            self._standby = False
            self.status.state = "running"
            log.info("sink's lease held; delivering from its journaled offset", sink=self.name, offset=self.offset)
        return True

    def _stand_by(self) -> None:
        """Its failures here are not the sink's any more (the holder's health tells), and, should
        the lease come back, they start counting afresh (``sink_handover_s``)."""
        self._standby = True
        self.status.error, self.status.failing_since = None, None

    async def _follow(self) -> None:
        """While another replica delivers the sink: its place as the shared state has it, so that
        the lag this replica shows (``/metrics``, ``/readyz``) is the sink's. Its own last place
        went stale at the takeover, and every replica but the holder reported the sink further
        behind with every event collected (an alert on ``sink_lag_events`` fired on all of them).
        Informative only: a database out of reach (or slow) leaves the last place known."""
        with contextlib.suppress(Exception):
            self.offset = await asyncio.wait_for(self.journal.offset(self.name), timeout=1.0)

    def lease_lapsed(self) -> bool:
        """Between two attempts: the lease lost, or handed over (failing here too long). Not
        handed over while ``retry.max_attempts`` bounds the retrying: each holder counted the
        attempts afresh, so a batch failing everywhere moved between replicas and never reached
        the dead-letter store (the documented way out of a journal held full by one sink)."""
        failing = self.status.failing_since is not None and self.retry.max_attempts is None
        if isinstance(self.owns, SinkLease) and failing:
            self.owns.hand_over(self.status.failing_for())
        return self._lease_gone()

    async def _route_and_deliver(self, batch: list[Record]) -> None:
        routed = self.router.apply(batch)
        self.status.filtered += len(batch) - len(routed)
        if routed:
            await self._deliver(routed, batch[-1].seq)
        else:  # all filtered out: nothing to send, but the offset moves past them
            self.offset = batch[-1].seq
            await self.journal.commit(self.name, self.offset)

    async def _next_batch(self) -> list[Record]:
        cfg = self.config
        self.wakeup.clear()
        head = self.journal.head  # journaled before the read began: a read that stops short of it is full by bytes
        batch = await self.journal.read(self.offset, cfg.batch_max_events, cfg.batch_max_bytes)
        if self.replay_upto is not None:  # the same members as before the restart, at once
            replay = [record for record in batch if record.seq <= self.replay_upto]
            if replay:
                return replay
            self.replay_upto = None
        if not batch:
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout=1.0)
            except TimeoutError:
                pass
            return []
        full = len(batch) >= cfg.batch_max_events or batch[-1].seq < head
        if not full and not (self._stopping or self.flush_upto > self.offset):
            # A small batch waits up to batch_max_age_s (from when its first event was journaled) to fill up.
            first = await self.journal.journaled_at(batch[0].seq)
            # at most batch_max_age_s: the wall clock stepped back an hour made it an hour more
            remaining = min(cfg.batch_max_age_s, cfg.batch_max_age_s - (time.time() - first)) if first else 0
            if remaining > 0:
                try:
                    await asyncio.wait_for(self._wait_for_more(batch), timeout=remaining)
                except TimeoutError:
                    pass
                batch = await self.journal.read(self.offset, cfg.batch_max_events, cfg.batch_max_bytes)
        return batch

    async def _wait_for_more(self, batch: list[Record]) -> None:
        """Until the batch would be full by count or by bytes. The bytes of the events journaled
        meanwhile are estimated from the batch's own (no read per append); an estimate too low
        only makes this batch wait its age, and the next read, cut by bytes, goes out at once."""
        per_event = max(1, sum(len(record.data) for record in batch) // len(batch))
        while not (self._stopping or self.flush_upto > self.offset):
            self.wakeup.clear()
            await self.wakeup.wait()
            waiting = self.journal.head - self.offset
            if waiting >= self.config.batch_max_events or waiting * per_event > self.config.batch_max_bytes:
                return

    async def _start_digests(self) -> None:
        """A sink that signs digests is started at once, not at its first batch: a digest is due
        every interval even when nothing was written (docs/evidence.md), so that an idle stretch
        is vouched for too. If it cannot start yet, the first batch starts it, as any sink."""
        if not isinstance(getattr(self.sink, "digests", None), DigestWriter):
            return
        try:
            await self._ensure_started()
        except Exception as exc:  # e.g. an S3 client that cannot be built yet: retried with the first batch
            log.warning("sink not started yet; its digests start with its first batch", sink=self.name, error=str(exc))

    async def _ensure_started(self) -> None:
        if not self._started:
            await self.sink.start()
            self._started = True

    async def _deliver(self, batch: Sequence[Record], last_seq: int) -> None:
        limit = stop_never if self.retry.max_attempts is None else stop_after_attempt(self.retry.max_attempts)
        attempts = AsyncRetrying(
            # a stop (SIGTERM, a reload removing the sink) ends the retrying at once: waiting out
            # a back-off of up to max_backoff_s (or a receiver's Retry-After) for a receiver that
            # is down only held the shutdown or the reload for shutdown_timeout_s, then cancelled
            stop=limit | _StopRequested(self) | _LeaseLapsed(self),
            wait=BackoffWait(self.retry.initial_backoff_s, self.retry.max_backoff_s),
            sleep=self._pause,
            # tenacity's attempt swallows every exception, a cancellation included: retried, it
            # kept a stopping daemon sending for ever past shutdown_timeout_s
            retry=retry_if_not_exception_type((FatalSinkError, asyncio.CancelledError, _LeaseGone)),
            before_sleep=self._before_retry,
            reraise=True,
        )
        dead: list[tuple[Record, str]] = []
        gave_up = False
        oldest_journaled_at = await self.journal.journaled_at(batch[0].seq)
        await self.journal.begin(self.name, last_seq)
        try:
            async for attempt in attempts:
                with attempt:
                    if self._lease_gone():  # lapsed during the pause before this attempt
                        raise _LeaseGone
                    await self._ensure_started()
                    report = await self.sink.send(batch)
                    dead = list(report.rejected) if report else []
        except FatalSinkError:
            raise
        except Exception as exc:
            if self._stopping:  # not given up on: stopped; never dead-letter what a restart would deliver
                raise _Interrupted from exc
            if self.lease_lapsed():  # not given up on either: the next holder sends it
                lapsed = "sink's lease lapsed while its batch was retried; the batch is left to the lease's next holder"
                log.warning(lapsed, sink=self.name, events=len(batch))
                raise FencedError(f"the lease on sink {self.name} lapsed") from exc
            reason = f"gave up after {self.retry.max_attempts} attempts: {exc}"
            log.error(
                "batch not confirmed after every attempt (not rejected: unreachable or failing); moved to the "
                "dead-letter store",
                sink=self.name,
                events=len(batch),
                reason=reason,
            )
            dead = [(record, reason) for record in batch]
            gave_up = True
        self.offset = last_seq  # past the events this sink's filter left out, too
        dead = scrub_reasons(dead)
        await self.journal.commit(self.name, self.offset, dead)
        now = time.time()
        if gave_up:  # never confirmed: not retrying this batch any more, but failing still (error, failing_since)
            self.status.state = "running"
        else:
            self.status.confirmed(now)
        self.status.delivered += len(batch) - len(dead)
        self.status.dead_lettered += len(dead)
        if len(dead) < len(batch):  # a batch wholly dead-lettered was not delivered
            self.status.batches += 1
            metrics.delivered(self.name, oldest_journaled_at, now)
        if dead and not gave_up:  # a batch given up on was logged above, with why: never "rejected" then
            log.warning(  # why, and where to look: a count alone sent the operator searching
                "events rejected by the receiver, kept in the dead-letter store (audit-forwarder dlq list)",
                sink=self.name,
                count=len(dead),
                reasons=sorted({reason for _, reason in dead})[:5],
                event_ids=[record.event_id for record, _ in dead[:5]],
            )

    async def _pause(self, seconds: float) -> None:
        """Between two attempts; ends early when the worker is told to stop or the lease is gone
        (looked at every second: a back-off or a Retry-After may outlast the lease), and the
        next attempt is then not sent (``_LeaseGone``)."""
        end = asyncio.get_running_loop().time() + seconds
        while (left := end - asyncio.get_running_loop().time()) > 0 and not self._lease_gone():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), timeout=min(left, 1.0))
            if self._stopping:
                return

    def _lease_gone(self) -> bool:
        return self.owns is not None and not self.owns()

    def _before_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        # a sink's own errors are sentences; anything else is a bug or a library's, named by its type
        known = isinstance(exc, RetryableError | FatalSinkError)
        self.status.failed(str(exc) if known and str(exc) else f"{type(exc).__name__}: {exc}")
        self.status.retries += 1
        log.warning(
            "sink delivery failed, retrying",
            sink=self.name,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
            error=self.status.error,
            # how long and how far behind, for whoever reads only the log
            failing_s=round(self.status.failing_for() or 0.0, 1),
            lag_events=max(0, self.journal.head - self.offset),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.status.state,
            "error": self.status.error,
            "offset": self.offset,
            "lag_events": max(0, self.journal.head - self.offset),
            "delivered": self.status.delivered,
            "dead_lettered": self.status.dead_lettered,
            "filtered": self.status.filtered,
            "last_delivery": self.status.last_delivery,
            "failing_since": self.status.wall_failing_since(),
        }
