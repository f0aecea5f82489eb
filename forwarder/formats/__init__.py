"""Output formats: each turns one journaled record into the bytes of one line or message.

Registered by name; a sink picks its formatter with ``get_formatter(config.format)``.
``json`` reuses the bytes serialized at journaling time, so the common case costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from forwarder.formats.csv import HEADER as CSV_HEADER
from forwarder.formats.csv import csv_format
from sinks.base import Record

Formatter = Callable[[Record], bytes]
HEADERS: dict[str, bytes] = {"csv": CSV_HEADER}
"""The first line of a new file, for file-based formats that have one."""


def json_format(record: Record) -> bytes:
    return record.data


FORMATTERS: dict[str, Formatter] = {
    "json": json_format,
    "csv": csv_format,
}


def get_formatter(name: str) -> Formatter:
    try:
        return FORMATTERS[name]
    except KeyError:
        raise ValueError(
            f"unknown format {name!r}; expected one of {', '.join(sorted(FORMATTERS))}"
        ) from None
