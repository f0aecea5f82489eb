"""ECS output uses only ECS field names and the allowed values of the categorization fields."""

from __future__ import annotations

import itertools
from typing import Any, get_args

import orjson
import pytest

from forwarder.event import Activity, Category, Outcome, make_event
from forwarder.formats import ecs, get_formatter
from tests.formats.samples import events, record

# Taken from the ECS 9.x field reference (schemas/*.yml), independently of the module's lists.
ECS_FIELDS = {
    "@timestamp",
    "message",
    "ecs.version",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "event.id",
    "event.module",
    "event.dataset",
    "event.provider",
    "event.created",
    "event.original",
    "user.id",
    "user.name",
    "user.email",
    "user.target.id",
    "user.target.name",
    "group.id",
    "group.name",
    "source.ip",
    "user_agent.original",
    "organization.id",
    "organization.name",
    "related.user",
    "related.ip",
    "observer.vendor",
    "observer.product",
    "event.sequence",
    "event.hash",
}
ALLOWED_CATEGORIES = {
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
}


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out |= flatten(item, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = item
    return out


def every_shape() -> list[dict[str, Any]]:
    shapes = list(events().values())
    for category, activity, outcome in itertools.product(get_args(Category), get_args(Activity), get_args(Outcome)):
        shapes.append(
            make_event(
                id="x",
                time="2026-01-01T00:00:00.000Z",
                observed_time="2026-01-01T00:00:00.000Z",
                vendor="user",
                source="s",
                organization="o",
                action="a.b",
                activity=activity,
                category=category,
                outcome=outcome,
                raw={},
                actor={"name": "n", "ip": "192.0.2.1"},
                target={"type": "user", "id": "u1"},
            )
        )
    return shapes


@pytest.mark.parametrize("event", every_shape())
def test_only_ecs_fields_and_allowed_values(event: dict[str, Any]) -> None:
    doc = orjson.loads(get_formatter("ecs")(record(event)))
    ns = ecs.namespace(event["vendor"])
    assert ns not in ecs.TOP_LEVEL  # a vendor named like an ECS field set is moved aside
    for field in flatten({k: v for k, v in doc.items() if k != ns}):
        assert field in ECS_FIELDS, field
    e = doc["event"]
    assert e["kind"] in ecs.EVENT_KINDS
    assert set(e["category"]) <= ALLOWED_CATEGORIES and set(e["category"]) <= set(ecs.EVENT_CATEGORIES)
    for category in e["category"]:
        assert set(e["type"]) <= set(ecs.EXPECTED_TYPES[category]), (category, e["type"])
    assert set(e["type"]) <= set(ecs.EVENT_TYPES)
    assert e["outcome"] in ecs.EVENT_OUTCOMES and e["outcome"] == event["outcome"]


def test_user_targets_and_options() -> None:
    event = events()["codestax"]
    doc = ecs.document(event)
    assert doc["event"]["category"] == ["authentication"] and doc["event"]["type"] == ["start"]
    assert doc["source"]["ip"] == "198.51.100.121" and doc["related"]["ip"] == ["198.51.100.121"]
    assert doc["user_agent"]["original"].startswith("Mozilla/5.0")
    assert "original" not in orjson.loads(get_formatter("ecs", {"include_raw": False})(record(event)))["event"]


def test_an_actor_ip_that_is_no_address_stays_out_of_ecs_ip_fields() -> None:
    """Elasticsearch refuses a whole document whose ``ip``-typed field holds "a, b"."""
    sample = next(iter(events().values()))
    for ip, expected in (("203.0.113.9, 10.0.0.2", None), ("2001:DB8::1", "2001:db8::1")):
        event = {**sample, "vendor": "dns", "actor": {**sample["actor"], "ip": ip}}
        doc = orjson.loads(get_formatter("ecs")(record(event)))
        assert doc.get("source", {}).get("ip") == expected
        assert doc.get("related", {}).get("ip", [None]) == [expected]
        assert doc["vendor_dns"]["actor"].get("ip") == (ip if expected is None else None)  # "dns" is ECS's


def test_related_user_holds_the_target_user_too() -> None:
    """ECS ``related.user``: "All the user names or other user identifiers seen on the event"."""
    doc = ecs.document(events()["codestax"])
    assert doc["user"]["target"] == {"id": "acme", "name": "acme"}
    assert doc["related"]["user"] == ["Bob Ng", "bob@example.com", "acme"]
    sample = {**events()["codestax"], "target": {"type": "repository", "id": "r1", "name": "web"}}
    assert ecs.document(sample)["related"]["user"] == ["Bob Ng", "bob@example.com"]
