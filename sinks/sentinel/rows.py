"""The table rows a batch becomes and the requests they are cut into.

A row is built from the event (the columns in ``sinks/sentinel/sink.py``'s docstring), so that a
hostile event's numbers or objects in a string column still make a row Azure takes. Requests
are cut on the *uncompressed* JSON array's size: Azure's 1 MB limit holds "for both compressed
and uncompressed data".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from forwarder.event import format_ms
from forwarder.formats import Formatter
from forwarder.record import Record


@dataclass(slots=True)
class Row:
    record: Record
    data: bytes


def array(rows: list[Row]) -> bytes:
    """The request body: the rows' JSON array."""
    return b"[" + b",".join(row.data for row in rows) + b"]"


def row_of(record: Record, format_name: str, formatter: Formatter) -> bytes:
    """One row of the table; with ``format: ecs`` or ``ocsf`` the formatted object is ``Event``."""
    time_generated = format_ms(record.time_ms)
    if format_name != "json":
        event = orjson.loads(formatter(record))
        return orjson.dumps({"TimeGenerated": time_generated, "EventId": record.event_id, "Event": event})
    event = record.event()
    actor = mapping(event.get("actor"))
    target = mapping(event.get("target"))
    row = {
        "TimeGenerated": time_generated,
        "EventId": record.event_id,
        "ObservedTime": _text(event.get("observed_time")),
        "Vendor": record.vendor or _text(event.get("vendor")),
        "Source": record.source,
        "Organization": record.organization,
        "Action": _text(event.get("action")),
        "Activity": _text(event.get("activity")),
        "Category": _text(event.get("category")),
        "Outcome": _text(event.get("outcome")),
        "ActorId": _text(actor.get("id")),
        "ActorName": _text(actor.get("name")),
        "ActorEmail": _text(actor.get("email")),
        "ActorIp": _text(actor.get("ip")),
        "ActorUserAgent": _text(actor.get("user_agent")),
        "ActorType": _text(actor.get("type")),
        "TargetType": _text(target.get("type")),
        "TargetId": _text(target.get("id")),
        "TargetName": _text(target.get("name")),
        "Repository": _text(event.get("repository")),
        "Message": _text(event.get("message")),
        "SchemaVersion": _text(event.get("schema_version")),
        "Details": event.get("details"),
        "Raw": event.get("raw"),
    }
    return orjson.dumps(row)


def chunks(rows: list[Row], max_bytes: int) -> list[list[Row]]:
    """Consecutive runs of rows whose JSON array (``[`` rows joined by ``,`` ``]``) fits."""
    found: list[list[Row]] = []
    current: list[Row] = []
    size = 2
    for row in rows:
        extra = len(row.data) + (1 if current else 0)
        if current and size + extra > max_bytes:
            found.append(current)
            current, size, extra = [], 2, len(row.data)
        current.append(row)
        size += extra
    if current:
        found.append(current)
    return found


def _text(value: Any) -> str | None:
    """A string column's value: hostile events may hold numbers, booleans or objects there."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
