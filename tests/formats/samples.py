"""Normalized events per vendor shape, and the CEF/LEEF parsers the tests read lines back with.

Every vendor event comes from its source's real normalizer with that source's real key scheme,
so a normalizer change shows up here as a golden diff instead of drifting past a hand-built
event. The plain vendor names normalize raw entries in the shapes the emulators serve (the
ECS/OCSF tests pin their values); the ``vendor-what`` names take entries from the sources' own
raw fixtures, picked for the paths the formats branch on: failures, actors with ip and email,
targets, repositories, system actors, entries without an id.
``python -m tests.formats.samples`` rewrites the golden files after a deliberate change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from forwarder.evidence.chain import START, link
from forwarder.formats import get_formatter
from forwarder.record import Record, record_of
from forwarder.sources import codacy, codescoring, codestax, configcat
from forwarder.sources.gaps import gap_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = FIXTURES / "formats"
FORMATS = ("json", "csv", "ecs", "ocsf", "cef", "leef")
OBSERVED = datetime(2026, 11, 24, 5, 45, tzinfo=UTC)
CONFIGCAT_ORG = "08d8a2b5-8f0b-4b1c-8c7c-9a6c1b2d3e4f"

CODACY_RAW = {
    "actor": {"email": "alice@example.com", "role": "organizationAdmin"},
    "action": "repositories.settings.update",
    "result": "succeed",
    "timestamp": "2026-11-24T05:44:44.935Z",
    "source": "UI",
    "repositoryName": "web=app|x",
    "description": "Update repository settings",
    "details": {"requestId": "c386bbc4cd613e30"},
    "entityId": "520501",
}
CONFIGCAT_RAW = {
    "auditLogId": 480140894,
    "auditLogDateTime": "2026-11-24T05:44:44.933Z",
    "auditLogTypeEnum": "settingValueChanged",
    "truncated": False,
    "modelVersion": 6,
    "auditLogType": "Setting value changed",
    "userEmail": "carol.ivanova@example.com",
    "userName": "Carol Ivanova",
    "why": "rollout",
    "where": "Product: Main / Config: Mobile / Environment: Production",
    "actionTarget": "pricingExperimentVariant",
    "details": '{"settingKey":"pricingExperimentVariant"}',
}
CODESCORING_RAW = {
    "id": 41138,
    "created_at": "2026-11-24T08:44:44.934000+03:00",
    "actor": "system",
    "message": "[SCA][mobile-app][1/c9e9c616] Analysis started",
    "duration": None,
}
CODESTAX_RAW = {
    "id": 5138,
    "timestamp": "2026-11-24T05:44:44.934000Z",
    "user": {"name": "Bob Ng", "email": "bob@example.com"},
    "action": "auth.login_failed",
    "category": "auth",
    "target": "acme",
    "metadata": {"ip": "198.51.100.121", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
}


def _fixture(path: str) -> list[Any]:
    entries = orjson.loads((FIXTURES / path).read_bytes())
    assert isinstance(entries, list), path
    return entries


def _configcat(raw: Any) -> dict[str, Any]:
    key = f"configcat:{raw['auditLogId']}"  # the scheme ConfigCatSource.pages uses
    return configcat.normalize_entry("configcat", CONFIGCAT_ORG, raw, key, OBSERVED)


def _codescoring(raw: Any) -> dict[str, Any]:
    key = codescoring.CodescoringSource._keys("default", [raw])[0]
    return codescoring.normalize_entry("codescoring", "default", raw, key, OBSERVED)


def _codestax(raw: Any) -> dict[str, Any]:
    return codestax.normalize_entry("codestax", "acme", raw, codestax.entry_key("acme", raw), OBSERVED)


def _from_fixture(normalize: Callable[[Any], dict[str, Any]], path: str, index: int) -> dict[str, Any]:
    return normalize(_fixture(path)[index])


def events() -> dict[str, dict[str, Any]]:
    """Each one linked as the first event of its stream, as the poller journals it."""
    shapes = _shapes()
    for event in shapes.values():
        link(event, START)
    return shapes


def _shapes() -> dict[str, dict[str, Any]]:
    configcat_raw, codescoring_raw, codestax_raw = "configcat/entries.json", "codescoring/raw.json", "codestax/raw.json"
    return {
        "codacy": codacy.normalize_entry("codacy", "gh/acme", CODACY_RAW, "codacy:0001", OBSERVED),
        "configcat": _configcat(CONFIGCAT_RAW),
        "codescoring": _codescoring(CODESCORING_RAW),
        "codestax": _codestax(CODESTAX_RAW),
        # team member removed: a person as the target, details parsed from embedded JSON
        "configcat-member-removed": _from_fixture(_configcat, configcat_raw, 1),
        # a change request applied on schedule: no email, so a system actor; truncated details
        "configcat-system": _from_fixture(_configcat, configcat_raw, 2),
        # a failed SCA run: failure outcome, a project target, a duration
        "codescoring-analysis-failed": _from_fixture(_codescoring, codescoring_raw, 12),
        # a failed clone: failure outcome with a repository
        "codescoring-clone-failed": _from_fixture(_codescoring, codescoring_raw, 15),
        # a failed login: the attempted user becomes the actor
        "codescoring-login-failed": _from_fixture(_codescoring, codescoring_raw, 5),
        # a failed scan: actor with ip and email, repository target, failure outcome
        "codestax-scan-failed": _from_fixture(_codestax, codestax_raw, 9),
        # no id (a content-hash key), no user: an unknown actor
        "codestax-no-id": _from_fixture(_codestax, codestax_raw, 27),
        "codacy-gap": gap_event(
            vendor="codacy",
            source="codacy",
            organization="gh/acme",
            from_ms=1795400000000,
            to_ms=1795494600123,
            observed=OBSERVED,
        ),
    }


def record(event: dict[str, Any], seq: int = 1) -> Record:
    return record_of(event, seq, time_ms=0)


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
