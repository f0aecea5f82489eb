"""The journaled event as the rest of the forwarder handles it after journaling.

Core, not plugin: the journal builds records, the poller and the journal's migration derive
their summary, the formats render them and the sinks send them. Living here, beside
``forwarder.event``, none of those has to import a sink to name a record.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from forwarder.event import parse_ms


class Record(NamedTuple):
    """One journaled event as a sink sees it.

    ``data`` is the event serialized once at journaling time (orjson bytes); ``event`` parses it
    lazily, so a sink that forwards the JSON unchanged never pays for a parse. The event's
    ``action``, ``category`` and ``outcome`` ride along (the journal keeps them beside the
    JSON) because syslog headers and HEC fields need them for every event, and parsing each
    event for three strings cost more than the rest of the sink. A named tuple, not a
    dataclass: the journal builds one per event, and a frozen dataclass's ``__init__`` cost
    three times as much.
    """

    seq: int
    event_id: str
    source: str
    organization: str
    time_ms: int
    data: bytes
    vendor: str = ""
    action: Any = None
    category: Any = None
    outcome: Any = None

    def event(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.data)
        return value


def summary(event: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What rides beside an event's JSON (``Record``'s last three fields): one place decides it
    for the poller, the journal's migration and dead letters, and ``record_of``."""
    return event.get("action"), event.get("category"), event.get("outcome")


def record_of(event: dict[str, Any], seq: int = 0, time_ms: int | None = None) -> Record:
    """The record the journal would hand a sink for this event (for tools and tests)."""
    if time_ms is None:
        time_ms = parse_ms(str(event["time"]))
    return Record(
        seq,
        event["id"],
        event["source"],
        event["organization"],
        time_ms,
        orjson.dumps(event),
        event["vendor"],
        *summary(event),
    )
