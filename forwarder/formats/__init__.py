"""Output formats: each turns one journaled record into the bytes of one line or message.

Registered by name; a sink builds its formatter once with
``get_formatter(config.format, config.format_options)``. ``json`` reuses the bytes serialized
at journaling time, so the common case costs nothing. Options are validated by each format's
own model, so a typo in ``format_options`` fails at configuration load, not at the first event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from forwarder.formats import cef, ecs, leef, ocsf
from forwarder.formats import csv as csv_lines
from forwarder.formats._common import Formatter
from forwarder.formats.csv import HEADER as CSV_HEADER
from forwarder.record import Record

__all__ = ["FORMATS", "FORMATTERS", "HEADERS", "JSON_FORMATS", "LINE_ENDS", "Formatter", "get_formatter"]

HEADERS: dict[str, bytes] = {"csv": CSV_HEADER}
"""The first line of a new file, for file-based formats that have one."""
LINE_ENDS: dict[str, bytes] = {"csv": b"\r\n"}
"""How a file ends each line, where the format says (RFC 4180 2.1: a CSV record ends in CRLF); LF otherwise."""
JSON_FORMATS = frozenset({"json", "ecs", "ocsf"})
"""Formats whose output is one JSON object: a sink that nests events (HEC) embeds it as JSON."""


def json_format(record: Record) -> bytes:
    return record.data


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _fixed(formatter: Formatter) -> Callable[[Any], Formatter]:
    return lambda _options: formatter


FORMATTERS: dict[str, Formatter] = {"json": json_format}
"""Formats without options."""
FORMATS: dict[str, tuple[type[BaseModel], Callable[[Any], Formatter]]] = {
    **{name: (NoOptions, _fixed(formatter)) for name, formatter in FORMATTERS.items()},
    "csv": (csv_lines.Options, csv_lines.build),
    "cef": (cef.Options, cef.build),
    "ecs": (ecs.Options, ecs.build),
    "leef": (leef.Options, leef.build),
    "ocsf": (ocsf.Options, ocsf.build),
}


def get_formatter(name: str, options: Mapping[str, Any] | None = None) -> Formatter:
    try:
        model, build = (NoOptions, _fixed(FORMATTERS[name])) if name in FORMATTERS else FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; expected one of {', '.join(sorted(FORMATS))}") from None
    try:
        parsed = model.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"format_options for {name!r}: {problems}") from None
    return build(parsed)
