"""One normalized event per vendor shape, and the CEF/LEEF parsers the tests read lines back with.

Codacy's event comes from the real normalizer; the other vendors' sources are being written,
so their events are built by hand from the raw shapes their emulators serve.
``python -m tests.formats.samples`` rewrites the golden files after a deliberate change.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from forwarder.event import make_event
from forwarder.formats import get_formatter
from forwarder.sources.codacy import normalize_entry
from forwarder.sources.gaps import gap_event
from sinks.base import Record

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "formats"
FORMATS = ("json", "csv", "ecs", "ocsf", "cef", "leef")
OBSERVED = "2026-11-24T05:45:00.000Z"

CODACY_RAW = {
    "actor": {"email": "alice@example.com", "role": "organizationAdmin"}, "action": "repositories.settings.update",
    "result": "succeed", "timestamp": "2026-11-24T05:44:44.935Z", "source": "UI", "repositoryName": "web=app|x",
    "description": "Update repository settings", "details": {"requestId": "c386bbc4cd613e30"}, "entityId": "520501",
}  # fmt: skip
CONFIGCAT_RAW = {
    "auditLogId": 480140894, "auditLogDateTime": "2026-11-24T05:44:44.933Z", "auditLogTypeEnum": "settingValueChanged",
    "truncated": False, "modelVersion": 6, "auditLogType": "Setting value changed",
    "userEmail": "carol.ivanova@example.com", "userName": "Carol Ivanova", "why": "rollout",
    "where": "Product: Main / Config: Mobile / Environment: Production",
    "actionTarget": "pricingExperimentVariant", "details": '{"settingKey":"pricingExperimentVariant"}',
}  # fmt: skip
CODESCORING_RAW = {
    "id": 41138, "created_at": "2026-11-24T08:44:44.934000+03:00", "actor": "system",
    "message": "[SCA][mobile-app][1/c9e9c616] Analysis started", "duration": None,
}  # fmt: skip
CODESTAX_RAW = {
    "id": 5138, "timestamp": "2026-11-24T05:44:44.934000Z", "user": {"name": "Bob Ng", "email": "bob@example.com"},
    "action": "auth.login_failed", "category": "auth", "target": "acme",
    "metadata": {"ip": "198.51.100.121", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
}  # fmt: skip


def events() -> dict[str, dict[str, Any]]:
    observed = datetime(2026, 11, 24, 5, 45, tzinfo=UTC)
    return {
        "codacy": normalize_entry("codacy", "gh/acme", CODACY_RAW, "codacy:0001", observed),
        "configcat": make_event(
            id="configcat:480140894", time="2026-11-24T05:44:44.933Z", observed_time=OBSERVED, vendor="configcat",
            source="configcat", organization="08d8a2b5-8f0b-4b1c-8c7c-9a6c1b2d3e4f", action="settingValueChanged",
            activity="update", category="configuration", outcome="success", raw=CONFIGCAT_RAW,
            actor={"email": "carol.ivanova@example.com", "name": "Carol Ivanova", "type": "user"},
            target={"type": "setting", "name": "pricingExperimentVariant"},
            message="Setting value changed", details={"where": CONFIGCAT_RAW["where"], "why": "rollout"},
        ),
        "codescoring": make_event(
            id="codescoring:41138", time="2026-11-24T05:44:44.934Z", observed_time=OBSERVED, vendor="codescoring",
            source="codescoring", organization="default", action="SCA.analysis_started", activity="execute",
            category="analysis", outcome="unknown", raw=CODESCORING_RAW, actor={"name": "system", "type": "system"},
            target={"type": "project", "name": "mobile-app"}, message=str(CODESCORING_RAW["message"]),
        ),
        "codestax": make_event(
            id="codestax:5138", time="2026-11-24T05:44:44.934Z", observed_time=OBSERVED, vendor="codestax",
            source="codestax", organization="acme", action="auth.login_failed", activity="login",
            category="authentication", outcome="failure", raw=CODESTAX_RAW,
            actor={"email": "bob@example.com", "name": "Bob Ng", "ip": "198.51.100.121", "type": "user",
                   "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
            target={"type": "organization", "name": "acme"},
        ),
        "codacy-gap": gap_event(
            vendor="codacy", source="codacy", organization="gh/acme", from_ms=1795400000000, to_ms=1795494600123,
            observed=observed,
        ),
    }


def record(event: dict[str, Any], seq: int = 1) -> Record:
    return Record(seq, event["id"], event["source"], event["organization"], 0, orjson.dumps(event), event["vendor"])


def golden_path(vendor: str, fmt: str) -> Path:
    return GOLDEN / f"{vendor}.{fmt}"


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Header fields and extensions, by the ArcSight escaping rules (the inverse of the formatter)."""
    assert line.startswith("CEF:")
    header: list[str] = []
    i, current = 4, ""
    while len(header) < 7:
        char = line[i]
        if char == "\\" and line[i + 1] in "\\|":
            current, i = current + line[i + 1], i + 2
            continue
        if char == "|":
            header.append(current)
            current = ""
        else:
            current += char
        i += 1
    rest = line[i:]
    # Split on unescaped '=': each segment but the first holds "value-of-previous key-of-next".
    segments, current, j = [], "", 0
    while j < len(rest):
        if rest[j] == "\\":
            current, j = current + rest[j : j + 2], j + 2
        elif rest[j] == "=":
            segments.append(current)
            current, j = "", j + 1
        else:
            current, j = current + rest[j], j + 1
    segments.append(current)
    ext: dict[str, str] = {}
    key = segments[0]
    for k, segment in enumerate(segments[1:], 1):
        value, _, next_key = segment.rpartition(" ") if k < len(segments) - 1 else (segment, "", "")
        assert re.fullmatch(r"[A-Za-z0-9]+", key), key
        assert key not in ext, f"duplicate key {key}"
        ext[key] = _unescape_cef(value)
        key = next_key
    return header, ext


def _unescape_cef(value: str) -> str:
    out, i = "", 0
    while i < len(value):
        if value[i] == "\\":
            nxt = value[i + 1]
            out += {"n": "\n", "r": "\r"}.get(nxt, nxt)
            assert nxt in "\\=nr", f"bad escape \\{nxt}"
            i += 2
        else:
            out, i = out + value[i], i + 1
    return out


def parse_leef(line: str) -> tuple[list[str], dict[str, str]]:
    """LEEF 2.0: five header fields, the delimiter field, then key=value pairs split on it."""
    parts = line.split("|", 6)
    assert parts[0] == "LEEF:2.0", parts[0]
    delim_field = parts[5]
    if len(delim_field) > 1:
        delimiter = chr(int(delim_field.lower().removeprefix("0").removeprefix("x"), 16))
    else:
        delimiter = delim_field
    attrs: dict[str, str] = {}
    for pair in parts[6].split(delimiter):
        key, sep, value = pair.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z0-9]+", key), pair
        assert key not in attrs, f"duplicate key {key}"
        attrs[key] = value
    return parts[1:5], attrs


def regenerate() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for vendor, event in events().items():
        for fmt in FORMATS:
            golden_path(vendor, fmt).write_bytes(get_formatter(fmt)(record(event)) + b"\n")


if __name__ == "__main__":
    regenerate()
