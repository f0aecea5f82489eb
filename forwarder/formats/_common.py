"""What the SIEM formats share: how a vendor is named, how severe an event is, who did it.

Kept in one place so CEF, LEEF, ECS and OCSF agree on the same event (a SOC comparing two
feeds must see the same vendor name and the same severity).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from forwarder.event import SCHEMA_VERSION, parse_time
from forwarder.record import Record
from forwarder.sources import display_name

Formatter = Callable[[Record], bytes]

PRODUCT = "Audit Log"
VERSION = SCHEMA_VERSION
FORWARDER = "audit-forwarder"  # the vendor of the forwarder's own events


def vendor_name(vendor: str) -> str:
    """The display name on the vendor's source class (``forwarder.sources``), else the name the
    event carries (an http_json vendor's own)."""
    if vendor == "forwarder":
        return FORWARDER
    return display_name(vendor) or vendor or "unknown"


def device(event: dict[str, Any]) -> list[str]:
    """The device vendor, product and version a CEF or LEEF header starts with."""
    return [vendor_name(str(event.get("vendor", ""))), PRODUCT, VERSION]


def severity(event: dict[str, Any]) -> int:
    """CEF/LEEF scale 0-10: a hole in the trail (forwarder.gap) matters most, then failures."""
    if event.get("category") == "forwarder":
        return 7
    return 5 if event.get("outcome") == "failure" else 3


def text(value: Any) -> str | None:
    """A value as the text a line-oriented format carries; None and "" mean "leave it out"."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


UNSAFE = "".join(map(chr, (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)))
"""What CEF and LEEF cannot escape and a reader cannot take: C0 controls but tab, CR and LF (each
format handles those), DEL, C1, U+2028 and U+2029. A NUL ends the line for a C reader, an escape
sequence drives the terminal that tails the file, and ``str.splitlines()`` (and Java's and
JavaScript's line terminators) ends the record at \\x0b, \\x0c, \\x1c-\\x1e, NEL and U+2028/9,
where a vendor-controlled value could start a forged one. The JSON formats escape or carry them."""


def unsafe(keep: str = "") -> re.Pattern[str]:
    """A pattern of the ``UNSAFE`` characters but ``keep`` (LEEF's delimiter may be one)."""
    return re.compile("[" + re.escape("".join(c for c in UNSAFE if c not in keep)) + "]")


_UNSAFE = unsafe()


def visible(line: str, pattern: re.Pattern[str] = _UNSAFE) -> str:
    """``line`` with U+FFFD for each ``UNSAFE`` character. One character for one, so it runs once
    over a whole formatted line (a search per value cost LEEF a third of its time)."""
    return pattern.sub("\ufffd", line) if pattern.search(line) else line


CUT_MARK = "\u2026"


def cut(value: str, limit: int) -> str:
    """``value`` within ``limit`` characters; a longer one ends in "…" (inside the limit), so a
    reader knows the text went on (the JSON formats carry it whole)."""
    return value if len(value) <= limit else value[: limit - 1] + CUT_MARK


def cut_values(pairs: Iterable[tuple[str, Any]], limit: Callable[[str], int]) -> list[tuple[str, str]]:
    """The pairs whose value has text (``text``), each cut to its key's limit (``cut``): before
    any escaping or sanitizing, so a cut never splits an escape."""
    out = []
    for key, value in pairs:
        value_text = text(value)
        if value_text is not None:
            out.append((key, cut(value_text, limit(key))))
    return out


def actor_label(actor: dict[str, Any]) -> str | None:
    return text(actor.get("name")) or text(actor.get("email")) or text(actor.get("id"))


def chain(event: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """The event's ``(seq, prev, hash)`` in its stream's hash chain (``forwarder.evidence.chain``)."""
    value = event.get("chain")
    if not isinstance(value, dict):
        return None
    return value.get("seq"), value.get("prev"), value.get("hash")


CHAIN_KEYS = ("chainSeq", "chainPrev", "chainHash")
"""CEF extension keys and LEEF attributes of the chain, last on the line."""


def time_ms(event: dict[str, Any]) -> int:
    return round(parse_time(str(event["time"])).timestamp() * 1000)
