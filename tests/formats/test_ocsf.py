"""OCSF output validates against hand-written JSON Schemas of the 1.8.0 classes it uses
(tests/fixtures/formats/ocsf/, a subset of the official schema: required attributes, enum ids, types)."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import Any, get_args

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource

from forwarder.event import Activity, Category, Outcome, make_event
from forwarder.formats import get_formatter, ocsf
from tests.formats.samples import GOLDEN, events, record

SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (GOLDEN / "ocsf").glob("*.json")}
REGISTRY = Registry().with_resources(
    (f"https://audit-forwarder.invalid/ocsf/1.8.0/{name}.json", Resource.from_contents(s))
    for name, s in SCHEMAS.items()
)


def validate(doc: dict[str, Any]) -> None:
    schema = SCHEMAS[str(doc["class_uid"])]
    errors = list(Draft202012Validator(schema, registry=REGISTRY).iter_errors(doc))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def shapes() -> list[dict[str, Any]]:
    out = list(events().values())
    targets = [{}, {"type": "user", "id": "u1", "name": "bob"}, {"type": "team", "name": "devs"}]
    actors = [{}, {"email": "a@example.com", "type": "user"}, {"id": "42", "ip": "192.0.2.1", "type": "service"}]
    for (category, activity, outcome), target, actor in itertools.product(
        itertools.product(get_args(Category), get_args(Activity), get_args(Outcome)), targets, actors
    ):
        out.append(make_event(
            id="x", time="2026-01-01T00:00:00.000Z", observed_time="2026-01-01T00:00:01.000Z", vendor="v",
            source="s", organization="o", action="a.b", activity=activity, category=category, outcome=outcome,
            raw={"k": 1}, actor=actor, target=target, repository="r" if outcome == "failure" else None,
        ))  # fmt: skip
    return out


SHAPES = shapes()


def test_the_schemas_catch_a_broken_event() -> None:
    doc = ocsf.ocsf_event(events()["codacy"])
    broken = {k: v for k, v in doc.items() if k != "entity"} | {"type_uid": 1}
    with pytest.raises(AssertionError):
        validate(broken)


def test_every_shape_validates_and_every_class_is_used() -> None:
    used = set()
    for event in SHAPES:
        doc = orjson.loads(get_formatter("ocsf")(record(event)))
        validate(doc)
        assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
        assert doc["category_uid"] == doc["class_uid"] // 1000
        assert doc["status_id"] == {"success": 1, "failure": 2, "unknown": 0}[event["outcome"]]
        used.add(doc["class_uid"])
    assert used == {int(name) for name in SCHEMAS if name.isdigit()}


@pytest.mark.parametrize(
    ("vendor", "class_uid", "activity_id"),
    [("codacy", 3004, 3), ("configcat", 3004, 3), ("codescoring", 6003, 99), ("codestax", 3002, 1),
     ("codacy-gap", 6003, 99)],
)  # fmt: skip
def test_vendor_classes(vendor: str, class_uid: int, activity_id: int) -> None:
    doc = ocsf.ocsf_event(events()[vendor])
    assert (doc["class_uid"], doc["activity_id"]) == (class_uid, activity_id)
    expected_ms = round(datetime.fromisoformat(events()[vendor]["time"].replace("Z", "+00:00")).timestamp() * 1000)
    assert doc["time"] == expected_ms and expected_ms > 1_795_000_000_000
    assert doc["metadata"]["version"] == "1.8.0" and doc["metadata"]["tenant_uid"] == events()[vendor]["organization"]


def test_failed_login_keeps_the_ip_and_the_status() -> None:
    doc = ocsf.ocsf_event(events()["codestax"])
    assert doc["src_endpoint"] == {"ip": "198.51.100.121"}
    assert (doc["status_id"], doc["status"]) == (2, "Failure")
    assert doc["user"]["name"] == "Bob Ng" and doc["http_request"]["user_agent"].startswith("Mozilla")


@pytest.mark.parametrize(
    ("category", "activity", "target_type", "class_uid"),
    [
        ("access_management", "grant", "repository", 3004),  # was 3005, the repository as the user
        ("user_management", "create", "api_key", 6003),  # was 3001
        ("access_management", "grant", "people", 3005),
        ("user_management", "create", "team_member", 3001),
        ("user_management", "create", None, 3001),
    ],
)
def test_only_a_target_that_names_a_user_makes_an_account_class(
    category: str, activity: str, target_type: str | None, class_uid: int
) -> None:
    event = make_event(
        id="e1", time="2026-01-01T00:00:00.000Z", observed_time="2026-01-01T00:00:01.000Z", vendor="acme",
        source="acme", organization="o", action="x.y", activity=activity, category=category, outcome="success",
        raw={}, target={"type": target_type, "id": "T_1", "name": "thing"},
    )  # fmt: skip
    assert ocsf.classify(event)[0] == class_uid
