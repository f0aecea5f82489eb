"""The Prometheus side of ``forwarder.metrics``: the process's registry and counters, and the
per-scrape collector of the daemon's state. Imported only by ``forwarder.metrics.enable`` (a
daemon serving ``/metrics``): ``once``, cron and the tools count nothing nobody can read, and
do not load prometheus-client (~1 MB of a drain's RSS).

Most numbers already live in ``Poller.status`` and ``SinkWorker.status``; rather than counting
twice, ``StateCollector`` turns them into metric families at scrape time, from the read-only
``StatusView`` the health server was given (``forwarder.status``), so a reload that replaces a
poller or a worker never leaves a stale series behind, and a second daemon in the process
(``backfill``'s) never changes what a first one's ``/metrics`` shows. Only what those objects do
not keep is counted here: HTTP responses, source retries and rate-limit waits, and the
delivery-latency histogram.

Labels are source, organization and sink names and status classes: never a URL, a header
or an error text, so a secret cannot reach a label.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from forwarder.journal.types import unreachable
from forwarder.status import StatusView

PREFIX = "audit_forwarder"
# The client's ``_created`` series (one more gauge family per counter and histogram, each
# child's creation time) are not what README documents, and only the counters counted here
# would have them: the families built at scrape time never do.
disable_created_metrics()  # type: ignore[no-untyped-call]
REFRESH_TIMEOUT_S = 3.0
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

_ORG = ["source", "organization"]

HTTP_RESPONSES = Counter(
    f"{PREFIX}_source_http_responses",
    "Vendor API responses by status class (2xx, 4xx, ...).",
    [*_ORG, "status_class"],
    registry=REGISTRY,
)
SOURCE_RETRIES = Counter(
    f"{PREFIX}_source_retries",
    "Vendor API requests retried after an error or a throttle.",
    _ORG,
    registry=REGISTRY,
)
RATE_LIMIT_WAITS = Counter(
    f"{PREFIX}_source_rate_limit_waits",
    "Retries the vendor paced with Retry-After (429 or 503).",
    _ORG,
    registry=REGISTRY,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    f"{PREFIX}_source_rate_limit_wait_seconds",
    "Time spent waiting as the vendor's Retry-After asked.",
    _ORG,
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    f"{PREFIX}_sink_delivery_latency_seconds",
    "Per batch: from the journaling of its oldest event to the receiver's confirmation.",
    ["sink"],
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 4 * 3600, 86_400),
)


def http_response(labels: tuple[str, str], status: int) -> None:
    HTTP_RESPONSES.labels(*labels, f"{status // 100}xx").inc()


def source_retry(labels: tuple[str, str], wait_s: float, paced_by_server: bool) -> None:
    SOURCE_RETRIES.labels(*labels).inc()
    if paced_by_server:
        RATE_LIMIT_WAITS.labels(*labels).inc()
        RATE_LIMIT_WAIT_SECONDS.labels(*labels).inc(wait_s)


def delivered(sink: str, latency_s: float) -> None:
    DELIVERY_LATENCY.labels(sink).observe(latency_s)


class StateCollector(Collector):
    """Reads the daemon's pollers, workers and journal when scraped. ``refresh`` gathers
    beforehand, on the event loop, what needs the journal's database (cursor and sink lag
    in seconds), because a collector is called synchronously."""

    def __init__(self, daemon: StatusView) -> None:
        self.daemon = daemon
        self.cursor_lag: dict[tuple[str, str], float] = {}
        self.sink_lag_s: dict[str, float] = {}

    async def refresh(self) -> None:
        daemon = self.daemon
        if not daemon.started:
            return
        now = time.time()
        cursor_lag: dict[tuple[str, str], float] = {}
        for name, poller in list(daemon.pollers.items()):
            for org in list(poller.status):
                cursor = await daemon.journal.get_cursor(name, org)
                watermark = (cursor or {}).get("watermark_ms")
                if isinstance(watermark, int | float):
                    cursor_lag[(name, org)] = max(0.0, now - watermark / 1000)
        sink_lag: dict[str, float] = {}
        for name, worker in list(daemon.workers.items()):
            oldest = None if worker.caught_up else await daemon.journal.journaled_at(worker.offset + 1)
            sink_lag[name] = 0.0 if oldest is None else max(0.0, now - oldest)
        self.cursor_lag, self.sink_lag_s = cursor_lag, sink_lag

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        yield from self._sources(daemon)
        yield from self._sinks(daemon)
        events, size = daemon.journal.size
        yield _gauge("journal_events", "Events held in the journal.", [], [([], events)])
        yield _gauge("journal_bytes", "Bytes of events held in the journal.", [], [([], size)])
        yield _gauge(
            "journal_full",
            "1 while the journal is at its cap and polling is paused.",
            [],
            [([], int(daemon.journal.is_full()))],
        )
        if daemon.replicas is not None:
            yield from self._leases(daemon.replicas.describe())

    @staticmethod
    def _leases(leases: dict[str, Any]) -> Iterator[Metric]:
        """Present only on a replica of a PostgreSQL state (``forwarder.replicas``)."""
        yield _gauge("leases_held", "Work units whose lease this replica holds.", [], [([], len(leases["held"]))])
        yield _gauge(
            "lease_units_unheld",
            "Configured work units no replica has held for over twice lease_ttl_s: nobody polls or delivers them.",
            [],
            [([], len(leases["unheld"]))],
        )
        for key, metric, help_text in (
            ("takeovers", "lease_takeovers", "Expired leases of another replica this one took over."),
            ("fenced_writes", "fenced_writes",
             "Writes refused because this replica no longer held the lease (the work was dropped, not lost)."),
        ):  # fmt: skip
            family = CounterMetricFamily(f"{PREFIX}_{metric}", help_text)
            family.add_metric([], float(leases[key]))
            yield family

    def _sources(self, daemon: StatusView) -> Iterator[Metric]:
        rows = [(name, org, st) for name, p in daemon.pollers.items() for org, st in p.status.items()]
        for attr, help_text in (
            ("events", "Events fetched and journaled."),
            ("pages", "Pages fetched."),
            ("quarantined", "Entries that could not be normalized, kept in the quarantine table."),
            ("failures", "Polls that failed: unreachable, an HTTP error, or a malformed page."),
        ):
            family = CounterMetricFamily(f"{PREFIX}_source_{attr}", help_text, labels=_ORG)
            for name, org, st in rows:
                family.add_metric([name, org], getattr(st, attr))
            yield family
        yield _gauge(
            "source_last_success_timestamp_seconds",
            "Unix time of the organization's last successful poll.",
            _ORG,
            [([n, o], daemon.wall_time(st.last_success)) for n, o, st in rows if st.last_success],
        )
        yield _gauge(
            "source_failing",
            "1 while the organization's polls fail.",
            _ORG,
            [([n, o], int(st.state == "failed")) for n, o, st in rows],
        )
        yield _gauge(
            "source_cursor_lag_seconds",
            "How far the cursor's watermark is behind now.",
            _ORG,
            [([n, o], lag) for (n, o), lag in self.cursor_lag.items() if n in daemon.pollers],
        )

    def _sinks(self, daemon: StatusView) -> Iterator[Metric]:
        workers = list(daemon.workers.items())
        for attr, metric, help_text in (
            ("delivered", "events_delivered", "Events the receiver confirmed."),
            ("retries", "failures", "Failed delivery attempts (each one retried)."),
            ("dead_lettered", "events_dead_lettered", "Events moved to the dead-letter store."),
            ("batches", "batches", "Batches delivered."),
        ):
            family = CounterMetricFamily(f"{PREFIX}_sink_{metric}", help_text, labels=["sink"])
            for name, worker in workers:
                family.add_metric([name], getattr(worker.status, attr))
            yield family
        yield _gauge(
            "sink_lag_events",
            "Journaled events the sink has not confirmed yet.",
            ["sink"],
            [([n], max(0, daemon.journal.head - w.offset)) for n, w in workers],
        )
        yield _gauge(
            "sink_lag_seconds",
            "Age of the oldest event the sink has not confirmed yet.",
            ["sink"],
            [([n], self.sink_lag_s.get(n, 0.0)) for n, _ in workers],
        )
        yield _gauge(
            "sink_failing",
            "1 while the sink's deliveries fail (retrying, or stopped): nothing confirmed since the first failure.",
            ["sink"],
            [([n], int(w.status.failing_since is not None)) for n, w in workers],
        )
        yield _gauge(
            "sink_stopped",
            "1 when the sink stopped on an error retrying cannot fix (e.g. auth).",
            ["sink"],
            [([n], int(w.status.state == "stopped")) for n, w in workers],
        )


def _gauge(name: str, help_text: str, labels: list[str], rows: list[tuple[list[str], Any]]) -> Metric:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=labels)
    for values, value in rows:
        family.add_metric(values, float(value))
    return family


async def render(daemon: StatusView) -> tuple[str, bytes]:
    """The process's counters and ``daemon``'s state, read now (a collector per scrape, so
    nothing outlives the daemon it was made for), and their content type."""
    state = StateCollector(daemon)
    try:  # bounded: a PostgreSQL state out of reach must not hold up the scrape
        await asyncio.wait_for(state.refresh(), timeout=REFRESH_TIMEOUT_S)
    except Exception as exc:  # then this scrape goes without the lags in seconds
        if not (isinstance(exc, TimeoutError) or unreachable(exc)):
            raise
    scrape = CollectorRegistry()
    scrape.register(REGISTRY)
    scrape.register(state)
    return CONTENT_TYPE_LATEST, generate_latest(scrape)
