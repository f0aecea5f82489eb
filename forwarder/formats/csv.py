"""CSV lines like the vendors' own exports: one flat row per event, fixed columns.

Quoting is RFC 4180's (a field holding a comma, a quote or a line break is quoted, quotes
doubled). Defusing formulas (below) changes a value, which RFC 4180 does not: it is on by
default, for the spreadsheets audit exports end up in, and ``escape_formulas: false`` writes every
value exactly as the event has it.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from forwarder.formats._common import Formatter, chain
from forwarder.record import Record

COLUMNS = [
    "time",
    "id",
    "vendor",
    "source",
    "organization",
    "actor_email",
    "actor_name",
    "actor_ip",
    "action",
    "activity",
    "category",
    "outcome",
    "target_type",
    "target_id",
    "target_name",
    "repository",
    "message",
    "actor_id",  # last: added after the others, where readers by position look least
    "chain_seq",
    "chain_prev",
    "chain_hash",  # forwarder.evidence.chain, appended likewise
]
# A cell a spreadsheet would read as a formula (=HYPERLINK(...), +cmd|...) is written with a
# leading apostrophe, as OWASP advises: audit data is attacker-written text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    escape_formulas: bool = Field(
        True,
        description="Write a cell starting with =, +, -, @, a tab or a CR with a leading ' (OWASP's CSV-injection "
        "advice); false keeps every value exactly as the event has it (RFC 4180 alone).",
    )


def _row(event: dict[str, Any], escape_formulas: bool = True) -> list[str]:
    actor = event.get("actor") or {}
    target = event.get("target") or {}
    values = [
        event.get("time"),
        event.get("id"),
        event.get("vendor"),
        event.get("source"),
        event.get("organization"),
        actor.get("email"),
        actor.get("name"),
        actor.get("ip"),
        event.get("action"),
        event.get("activity"),
        event.get("category"),
        event.get("outcome"),
        target.get("type"),
        target.get("id"),
        target.get("name"),
        event.get("repository"),
        event.get("message"),
        actor.get("id"),
        *(chain(event) or (None, None, None)),
    ]
    cells = ["" if v is None else str(v) for v in values]
    if not escape_formulas:
        return cells
    return [f"'{cell}" if cell.startswith(FORMULA_START) else cell for cell in cells]


def _line(values: list[str]) -> bytes:
    """The writer quotes a field only if it holds a character of its line terminator: with an
    empty terminator a newline in a message went out unquoted and split the row in two."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(values)
    return buf.getvalue().removesuffix("\r\n").encode()


HEADER = _line(COLUMNS)


def csv_format(record: Record) -> bytes:
    return _line(_row(record.event()))


def exact_csv_format(record: Record) -> bytes:
    return _line(_row(record.event(), escape_formulas=False))


def build(options: Options) -> Formatter:
    return csv_format if options.escape_formulas else exact_csv_format
