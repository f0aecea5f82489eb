"""``forwarder.gap`` events: a hole in the audit trail is itself an auditable fact.

When a cursor is older than the vendor keeps its logs (the forwarder was stopped for longer
than the retention), the entries in between are gone for good. A log line is easy to miss, so
the source also journals one event saying which interval was lost; a SIEM can alert on it.
It is journaled in the same transaction as the first page's cursor, which moves past the
hole, so each hole is recorded once; its id is derived from the source, organization and
interval, so it is as stable as any other event's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from forwarder.event import content_id, format_ms, format_time, make_event

log = structlog.get_logger("forwarder.sources.gaps")


def gap_event(
    *, vendor: str, source: str, organization: str, from_ms: int, to_ms: int, observed: datetime | None = None
) -> dict[str, Any]:
    interval = {"from": format_ms(from_ms), "to": format_ms(to_ms)}
    now = format_time(observed or datetime.now(UTC))
    return make_event(
        id=content_id("forwarder.gap", f"{source}\x00{organization}", interval),
        time=now,
        observed_time=now,
        vendor=vendor,
        source=source,
        organization=organization,
        actor={"name": "audit-forwarder", "type": "system"},
        action="forwarder.gap",
        activity="other",
        category="forwarder",
        outcome="unknown",
        message=f"audit entries from {interval['from']} to {interval['to']} were lost (past the vendor's retention)",
        details=dict(interval),
        raw=dict(interval),
    )


def retention_gap(
    *, vendor: str, source: str, organization: str, cursor_ms: int | None, oldest_ms: int
) -> list[dict[str, Any]]:
    """The gap events to journal with the first page of this poll: none on a first run
    (``cursor_ms`` None: nothing was ever promised before the lookback), none while the
    cursor is within retention, else one covering cursor..oldest available."""
    if cursor_ms is None or cursor_ms >= oldest_ms:
        return []
    log.warning(
        "cursor older than the vendor's retention; entries in between are lost, a forwarder.gap event records it",
        source=source,
        organization=organization,
        lost_from=format_ms(cursor_ms),
        lost_to=format_ms(oldest_ms),
    )
    return [gap_event(vendor=vendor, source=source, organization=organization, from_ms=cursor_ms, to_ms=oldest_ms)]
