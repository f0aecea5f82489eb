"""Elastic Common Schema (ECS 9.x) documents for audit events.

Only ECS field names and allowed values are emitted (the allowed lists below are copied from
the ECS field reference and the tests hold every output to them); everything ECS has no field
for goes under the vendor's own namespace (``codacy.*``), the convention of Elastic's own
audit-log integrations, so an index template can map it per vendor.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from forwarder.formats._common import Formatter, chain, vendor_name
from forwarder.record import Record

ECS_VERSION = "9.3.0"
EVENT_KINDS = ("alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal")
EVENT_CATEGORIES = (
    "api",
    "authentication",
    "configuration",
    "database",
    "driver",
    "email",
    "file",
    "host",
    "iam",
    "intrusion_detection",
    "library",
    "malware",
    "network",
    "package",
    "process",
    "registry",
    "session",
    "threat",
    "vulnerability",
    "web",
)
EVENT_TYPES = (
    "access",
    "admin",
    "allowed",
    "change",
    "connection",
    "creation",
    "deletion",
    "denied",
    "device",
    "end",
    "error",
    "group",
    "indicator",
    "info",
    "installation",
    "protocol",
    "start",
    "user",
)
EVENT_OUTCOMES = ("success", "failure", "unknown")
EXPECTED_TYPES = {
    "api": ("access", "admin", "allowed", "change", "creation", "deletion", "denied", "end", "info", "start", "user"),
    "authentication": ("start", "end", "info"),
    "iam": ("admin", "change", "creation", "deletion", "group", "info", "user"),
    "configuration": ("access", "change", "creation", "deletion", "info"),
}
"""event.type values ECS expects with each event.category we emit."""
TOP_LEVEL = frozenset(
    {
        "@timestamp",
        "agent",
        "as",
        "client",
        "cloud",
        "code_signature",
        "container",
        "data_stream",
        "destination",
        "device",
        "dll",
        "dns",
        "ecs",
        "elf",
        "email",
        "error",
        "event",
        "faas",
        "file",
        "geo",
        "group",
        "hash",
        "host",
        "http",
        "interface",
        "labels",
        "log",
        "macho",
        "message",
        "network",
        "observer",
        "orchestrator",
        "organization",
        "os",
        "package",
        "pe",
        "process",
        "registry",
        "related",
        "risk",
        "rule",
        "server",
        "service",
        "source",
        "span",
        "tags",
        "threat",
        "tls",
        "trace",
        "transaction",
        "url",
        "user",
        "user_agent",
        "volume",
        "vulnerability",
        "x509",
    }
)
"""ECS field sets a vendor namespace must not collide with."""


def _ip(value: Any) -> str | None:
    """An address for ECS's ``ip``-typed fields, else None: Elasticsearch refuses the whole
    document for "203.0.113.9, 10.0.0.2"; such a value stays under the vendor's namespace."""
    try:
        return str(ipaddress.ip_address(str(value))) if value not in (None, "") else None
    except ValueError:
        return None


CATEGORY = {
    "authentication": "authentication",
    "user_management": "iam",
    "access_management": "iam",
    "entity_management": "configuration",
    "configuration": "configuration",
    "data_access": "api",
    "api": "api",
    "analysis": "api",
    "forwarder": "api",
    "unknown": "api",
}
TYPE_BY_ACTIVITY = {
    "create": "creation",
    "delete": "deletion",
    "update": "change",
    "enable": "change",
    "disable": "change",
    "grant": "change",
    "revoke": "change",
    "add_member": "change",
    "remove_member": "change",
    "read": "access",
    "export": "access",
    "login": "start",
    "logout": "end",
    "execute": "start",
    "other": "info",
}


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_raw: bool = Field(True, description="Put the vendor's entry in event.original (as JSON text).")


def event_types(category: str, event: dict[str, Any]) -> list[str]:
    main = TYPE_BY_ACTIVITY.get(str(event.get("activity")), "info")
    if main not in EXPECTED_TYPES[category]:
        main = "info"
    if category != "iam":
        return [main]
    kind = "group" if event.get("activity") in ("add_member", "remove_member") else "user"
    if event.get("category") == "access_management" and kind == "user":
        kind = "admin"
    return [kind, main]


def namespace(vendor: str) -> str:
    name = vendor or "vendor"
    return f"vendor_{name}" if name in TOP_LEVEL else name


def _compact(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None and v != {} and v != []}


def _distinct(*values: Any) -> list[str]:
    out: list[str] = []
    for value in values:
        if value not in (None, "") and str(value) not in out:
            out.append(str(value))
    return out


def _target_user(target: dict[str, Any]) -> tuple[Any, Any]:
    """The target's name and id when it is the user ``user.target`` names."""
    return (target.get("name"), target.get("id")) if target.get("type") == "user" else (None, None)


def chain_fields(event: dict[str, Any]) -> dict[str, Any]:
    """ECS's own ``event.sequence`` and ``event.hash`` ("to demonstrate log integrity") carry the
    seq and hash; the whole link (with ``prev``) is under the vendor's namespace as ``chain``."""
    links = chain(event)
    return {} if links is None else {"sequence": links[0], "hash": links[2]}


def document(event: dict[str, Any], include_raw: bool = True) -> dict[str, Any]:
    vendor = str(event.get("vendor") or "")
    actor = event.get("actor") or {}
    target = event.get("target") or {}
    category = CATEGORY.get(str(event.get("category")), "api")
    outcome = event.get("outcome") if event.get("outcome") in EVENT_OUTCOMES else "unknown"
    ip = _ip(actor.get("ip"))
    doc: dict[str, Any] = {
        "@timestamp": event.get("time"),
        "ecs": {"version": ECS_VERSION},
        "message": event.get("message"),
        "event": _compact(
            {
                "kind": "event",
                "category": [category],
                "type": event_types(category, event),
                "action": event.get("action"),
                "outcome": outcome,
                "id": event.get("id"),
                "module": vendor,
                "dataset": f"{vendor}.audit",
                "provider": event.get("source"),
                "created": event.get("observed_time"),
                "original": orjson.dumps(event.get("raw")).decode() if include_raw else None,
                **chain_fields(event),
            }
        ),
        "user": _compact({"id": actor.get("id"), "name": actor.get("name"), "email": actor.get("email")}),
        "source": _compact({"ip": ip}),
        "user_agent": _compact({"original": actor.get("user_agent")}),
        "organization": _compact({"id": event.get("organization"), "name": event.get("organization")}),
        "observer": {"vendor": vendor_name(vendor), "product": vendor_name(vendor)},
        "related": _compact(
            {
                # ECS: "all the user names or other user identifiers seen on the event", the target's too
                "user": _distinct(actor.get("name"), actor.get("email"), actor.get("id"), *_target_user(target)),
                "ip": _distinct(ip),
            }
        ),
    }
    if target.get("type") == "user":
        doc["user"]["target"] = _compact({"id": target.get("id"), "name": target.get("name")})
    elif target.get("type") in ("team", "group"):
        doc["group"] = _compact({"id": target.get("id"), "name": target.get("name")})
    doc[namespace(vendor)] = _compact(
        {
            "activity": event.get("activity"),
            "category": event.get("category"),
            "actor": _compact({"type": actor.get("type"), "ip": actor.get("ip") if ip is None else None}),
            "target": _compact(target),
            "repository": event.get("repository"),
            "details": event.get("details") or None,
            "schema_version": event.get("schema_version"),
            "chain": event.get("chain"),
        }
    )
    return _compact(doc)


def build(options: Options) -> Formatter:
    include_raw = options.include_raw

    def ecs_format(record: Record) -> bytes:
        return orjson.dumps(document(record.event(), include_raw))

    return ecs_format
