"""ArcSight CEF: ``CEF:0|Vendor|Product|Version|EventClassID|Name|Severity|k=v k=v``.

Escaping follows the ArcSight rules: in the header ``\\`` and ``|``; in extension values ``\\``,
``=`` and line breaks (as ``\\n``/``\\r``), so a value can never end a line or start a key.
Values are cut to the lengths the key dictionary gives each key (``LIMITS``: 40 for
``externalId``, 63 for ``act`` and ``outcome``, 255 for ``deviceExternalId``, 4000 for ``cs*``,
1023 for the rest; the header's vendor 63, product 63, version 31, event class id 1023, name 512)
before escaping, so a cut never splits an escape; the full event stays available in the JSON
formats. An event id longer than ``externalId`` allows is also sent whole in ``flexString1``
("eventId"), so a cut id cannot make two events look like one. Control characters CEF cannot
escape become U+FFFD (``_common.visible``).

``src`` (sourceAddress) is typed "IPv4 Address" in the CEF key dictionary, so it carries only
an IPv4 address; an IPv6 one goes to ``c6a2`` labelled "Source IPv6 Address" (ArcSight's custom
IPv6 field for the source), and a value that is no address at all (a proxy chain
"203.0.113.9, 10.0.0.2") is left out rather than make a consumer refuse the line.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict

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
    time_ms,
    visible,
)
from forwarder.record import Record

HEADER_MAX = 512  # the Name field
HEADER_LIMITS = (63, 63, 31, 1023, 512)
"""Device Vendor, Device Product, Device Version, Device Event Class ID, Name."""
VALUE_MAX = 1023
CUSTOM_MAX = 4000
EXTERNAL_ID_MAX = 40
LIMITS = {"externalId": EXTERNAL_ID_MAX, "act": 63, "outcome": 63, "deviceExternalId": 255}
"""Keys whose dictionary length is not 1023 (``cs1``..``cs6``: ``CUSTOM_MAX``)."""
LABELS = {
    "cs1": "org",
    "cs2": "actorEmail",
    "cs3": "targetType",
    "cs4": "targetId",
    "cs5": "repository",
    "cs6": "targetName",
}


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def escape_header(value: str, limit: int = HEADER_MAX) -> str:
    value = cut(value, limit).replace("\r", " ").replace("\n", " ")
    return value.replace("\\", "\\\\").replace("|", "\\|")


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


def source_address(value: Any) -> list[tuple[str, Any]]:
    """The actor's address in the key its type asks for: ``src`` (IPv4), ``c6a2`` (IPv6), or none."""
    try:
        address = ipaddress.ip_address(str(value)) if value not in (None, "") else None
    except ValueError:
        return []
    if address is None:
        return []
    if address.version == 4:
        return [("src", str(address))]
    return [("c6a2Label", "Source IPv6 Address"), ("c6a2", str(address))]


def limit(key: str) -> int:
    if key in LIMITS:
        return LIMITS[key]
    return CUSTOM_MAX if key[:2] == "cs" and key[2:].isdigit() else VALUE_MAX


def first_of_id(value: Any) -> str | None:
    """The id's first ``EXTERNAL_ID_MAX`` characters, without the cut mark of other values: the
    whole id follows in ``flexString1``, and a prefix is what a search by id can match."""
    value_text = text(value)
    return None if value_text is None else value_text[:EXTERNAL_ID_MAX]


def full_id(value: Any) -> list[tuple[str, Any]]:
    """The event id in ``flexString1`` when ``externalId`` cannot hold all of it."""
    value_text = text(value)
    if value_text is None or len(value_text) <= EXTERNAL_ID_MAX:
        return []
    return [("flexString1Label", "eventId"), ("flexString1", value_text)]


def extensions(event: dict[str, Any]) -> list[tuple[str, str]]:
    actor = event.get("actor") or {}
    target = event.get("target") or {}
    pairs: list[tuple[str, Any]] = [
        ("rt", time_ms(event)),
        ("externalId", first_of_id(event.get("id"))),
        *full_id(event.get("id")),
        ("suser", actor_label(actor)),
        ("suid", actor.get("id")),
        ("spriv", actor.get("type")),
        *source_address(actor.get("ip")),
        ("requestClientApplication", actor.get("user_agent")),
        ("act", event.get("activity")),
        ("outcome", event.get("outcome")),
        ("cat", event.get("category")),
        ("deviceExternalId", event.get("source")),
    ]
    if target.get("type") == "user":
        pairs += [("duser", target.get("name")), ("duid", target.get("id"))]
    custom = [
        event.get("organization"),
        actor.get("email"),
        target.get("type"),
        target.get("id"),
        event.get("repository"),
        target.get("name"),
    ]
    for i, value in enumerate(custom, 1):
        if text(value) is not None:
            pairs += [(f"cs{i}Label", LABELS[f"cs{i}"]), (f"cs{i}", value)]
    pairs.append(("msg", event.get("message")))
    links = chain(event)
    if links is not None:
        pairs += zip(CHAIN_KEYS, links, strict=True)
    return cut_values(pairs, limit)


def cef_format(record: Record) -> bytes:
    event = record.event()
    action = text(event.get("action")) or "unknown"
    who = actor_label(event.get("actor") or {})
    header = [*device(event), action, f"{action} by {who}" if who else action]
    head = "|".join(escape_header(part, size) for part, size in zip(header, HEADER_LIMITS, strict=True))
    ext = " ".join(f"{key}={escape_value(value)}" for key, value in extensions(event))
    return visible(f"CEF:0|{head}|{severity(event)}|{ext}").encode()


def build(options: Options) -> Formatter:
    return cef_format
