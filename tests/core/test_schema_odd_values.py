"""Every event validates against the published schema, whatever type the vendor put where a
string is usual (docs/schema.md: the string fields are strings or null).

Vendors drift: a ``repositoryName`` of ``42``, an e-mail of ``5``, a user agent that is an
object. Each source's own normalizer gets a realistic entry with one field at a time replaced by
an odd but valid JSON value; the entry must come out either quarantined with a reason or as an
event the schema of ``audit-forwarder schema`` accepts. (A number in ``repository`` passed
through Codacy unchanged: events that a consumer validating against our schema refused.)
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from forwarder.event import json_schema
from forwarder.sources import SOURCES

OBSERVED = datetime(2026, 12, 1, tzinfo=UTC)
ODD = [0, 7, -1.5, 1e300, True, False, {"a": 1}, [1, "x"], [], {}, 12345678901234567890, "", '🙂\u200b\\"|=']
ENTRIES: dict[str, dict[str, Any]] = {
    "codacy": {
        "actor": {"email": "alice@example.com", "role": "organizationMember"},
        "action": "repositories.update",
        "result": "succeed",
        "timestamp": "2026-11-21T05:53:09.639Z",
        "source": "UI",
        "repositoryName": "web",
        "description": "Update repository",
        "details": {"requestId": "c386bbc4cd613e30"},
        "entityId": "520501",
    },
    "configcat": {
        "auditLogId": 480140894,
        "auditLogDateTime": "2026-11-21T05:53:09.639Z",
        "auditLogTypeEnum": "settingValueChanged",
        "truncated": False,
        "modelVersion": 6,
        "auditLogType": "Setting value changed",
        "userEmail": "carol@example.com",
        "userName": "Carol",
        "where": "Product: Main",
        "why": "because",
        "actionTarget": "flag",
        "details": '{"a": 1}',
    },
    "codescoring": {
        "id": 41138,
        "created_at": "2026-11-21T08:53:09.639+03:00",
        "actor": "alice",
        "message": "Object <Project: web> created",
        "duration": 1.5,
    },
    "codestax": {
        "id": 5139,
        "timestamp": "2026-11-21T05:53:09.639Z",
        "user": {"name": "John Smith", "email": "john@example.com"},
        "action": "repository.connected",
        "category": "repositories",
        "target": "acme/web",
        "metadata": {"ip": "198.51.100.7", "user_agent": "curl/8", "repository": "acme/web", "old": None},
    },
}


def _leaves(value: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, inner in value.items():
        yield (*prefix, key)
        if isinstance(inner, dict):
            yield from _leaves(inner, (*prefix, key))


def _with(entry: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(entry)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def schema() -> Draft202012Validator:
    Draft202012Validator.check_schema(json_schema())
    return Draft202012Validator(json_schema())


def test_every_vendor_normalizer_is_covered() -> None:
    normalizers = {
        name
        for name, (_, cls) in SOURCES.items()
        if hasattr(importlib.import_module(cls.__module__), "normalize_entry")
    }
    assert normalizers <= set(ENTRIES), f"add an entry of {sorted(normalizers - set(ENTRIES))} here"


@pytest.mark.parametrize("vendor", sorted(ENTRIES))
def test_odd_value_types_still_give_events_the_schema_accepts(vendor: str, schema: Draft202012Validator) -> None:
    normalize = importlib.import_module(SOURCES[vendor][1].__module__).normalize_entry
    problems: list[str] = []
    checked = 0
    for path in _leaves(ENTRIES[vendor]):
        for odd in ODD:
            entry = _with(ENTRIES[vendor], path, odd)
            try:
                event = normalize(vendor, "org", entry, f"{vendor}:key", OBSERVED)
            except ValueError:
                continue  # quarantined with a reason: allowed (test_hostile_input checks the reason)
            checked += 1
            as_written = orjson.loads(orjson.dumps(event))  # what the journal and the sinks hold
            for error in schema.iter_errors(as_written):
                where = "/".join(map(str, error.path))
                problems.append(f"{'.'.join(path)}={odd!r}: {where}: {error.message[:80]}")
            assert as_written["raw"] == orjson.loads(orjson.dumps(entry)), "raw must be the entry unchanged"
    assert checked > len(ODD) * 3
    assert not problems, "\n".join(problems[:20])


def test_a_container_in_a_string_field_is_json_text_not_python_repr() -> None:
    normalize = importlib.import_module(SOURCES["codestax"][1].__module__).normalize_entry
    event = normalize("codestax", "org", _with(ENTRIES["codestax"], ("target",), {"a": True}), "k", OBSERVED)
    assert "{'a': True}" not in orjson.dumps({k: v for k, v in event.items() if k != "raw"}).decode()
    named = normalize("codestax", "org", _with(ENTRIES["codestax"], ("target",), {"name": "api"}), "k", OBSERVED)
    assert named["target"]["name"] == "api"  # an object target is read by its name (inferred shape)
    event = normalize(
        "codestax", "org", _with(ENTRIES["codestax"], ("metadata", "user_agent"), {"a": True}), "k", OBSERVED
    )
    assert event["actor"]["user_agent"] == '{"a":true}'
