"""IBM QRadar LEEF 2.0: ``LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|k=v<delim>k=v``.

LEEF defines no escaping, so values are sanitized instead: the delimiter, CR, LF, tab and ``|``
become spaces, in the header and in attribute values alike (IBM's LEEF guidelines: keep tab and
pipe out of keys and values; a ``|`` in a value made a line split on ``|`` show extra fields);
other control characters become U+FFFD (``_common.visible``).
EventID is the vendor's raw action and ``cat`` the normalized category, never translated, because
QRadar maps events to QIDs on those two.

``src`` is one of LEEF's predefined, normalized attributes, an IP address (IPv4 or IPv6): QRadar
fills the event's source IP from it, so only a value that is an address goes there; anything else
(a proxy chain "203.0.113.9, 10.0.0.2", "unknown") is left out, as CEF does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forwarder.formats._common import (
    CHAIN_KEYS,
    Formatter,
    actor_label,
    chain,
    cut,
    cut_values,
    device,
    severity,
    text,
    unsafe,
    visible,
)
from forwarder.record import Record

VALUE_MAX = 1023
MESSAGE_MAX = 4000
DEV_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"
FORBIDDEN_DELIMITERS = set("=|\r\n ")  # a space: values keep theirs, so it would split them


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delimiter: str = Field(
        "\t", description="One character, or its hex code as 'x5E' / '0x5E'; default tab (sent as 'x09')."
    )

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        lowered = value.lower()
        if len(value) > 1 and lowered.startswith(("x", "0x")):
            try:
                value = chr(int(lowered.removeprefix("0").removeprefix("x"), 16))
            except ValueError:
                raise ValueError(f"delimiter {value!r} is not a hex code such as x09") from None
        if len(value) != 1 or not value.isascii() or value.isalnum() or value in FORBIDDEN_DELIMITERS:
            raise ValueError("delimiter must be one ASCII character: no letter, digit, space, '=', '|' or line break")
        return value


def delimiter_field(delimiter: str) -> str:
    """How the header announces the delimiter: printable characters as themselves, others in hex."""
    return delimiter if delimiter.isprintable() and delimiter != " " else f"x{ord(delimiter):02X}"


def sanitize(value: str, bad: str) -> str:
    for char in bad:
        value = value.replace(char, " ")
    return value


def address(value: Any) -> str | None:
    try:
        return str(ipaddress.ip_address(str(value))) if value not in (None, "") else None
    except ValueError:
        return None


def attributes(event: dict[str, Any]) -> list[tuple[str, Any]]:
    actor = event.get("actor") or {}
    target = event.get("target") or {}
    return [
        ("devTimeFormat", DEV_TIME_FORMAT),
        ("devTime", event.get("time")),
        ("cat", event.get("category")),
        ("sev", severity(event)),
        ("usrName", actor_label(actor)),
        ("src", address(actor.get("ip"))),
        ("role", actor.get("type")),
        ("usrId", actor.get("id")),
        ("usrEmail", actor.get("email")),
        ("userAgent", actor.get("user_agent")),
        ("externalId", event.get("id")),
        ("action", event.get("activity")),
        ("outcome", event.get("outcome")),
        ("org", event.get("organization")),
        ("sourceName", event.get("source")),
        ("targetType", target.get("type")),
        ("targetId", target.get("id")),
        ("targetName", target.get("name")),
        ("repository", event.get("repository")),
        ("msg", event.get("message")),
        *zip(CHAIN_KEYS, chain(event) or (), strict=False),
    ]


def build(options: Options) -> Formatter:
    delimiter = options.delimiter
    bad_value = delimiter + "|\t\r\n"
    prefix_tail = f"{delimiter_field(delimiter)}|"
    unsafe_in_values = unsafe(keep=delimiter)  # values hold no delimiter by now: sanitized to spaces

    def leef_format(record: Record) -> bytes:
        event = record.event()
        header = [*device(event), text(event.get("action")) or "unknown"]
        head = visible("|".join(sanitize(cut(part, VALUE_MAX), "|\t\r\n") for part in header))
        values = cut_values(attributes(event), lambda key: MESSAGE_MAX if key == "msg" else VALUE_MAX)
        pairs = delimiter.join(f"{key}={sanitize(value, bad_value)}" for key, value in values)
        return f"LEEF:2.0|{head}|{prefix_tail}{visible(pairs, unsafe_in_values)}".encode()

    return leef_format
