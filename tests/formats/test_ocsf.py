"""OCSF output validates against the official schema (every class, every version the format
offers: tests/support/ocsf_schema.py), and the classes carry what the mapping promises."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, get_args

import orjson
import pytest

from forwarder.event import Activity, Category, Outcome, make_event
from forwarder.formats import get_formatter, ocsf
from tests.formats.samples import events, record
from tests.support.ocsf_schema import problems

CLASSES_USED = {3001, 3002, 3004, 3005, 3006, 6003}


def validate(doc: dict[str, Any]) -> None:
    errors = problems(doc)
    assert not errors, errors


def shapes() -> list[dict[str, Any]]:
    out = list(events().values())
    targets = [{}, {"type": "user", "id": "u1", "name": "bob"}, {"type": "team", "name": "devs"}]
    actors = [{}, {"email": "a@example.com", "type": "user"}, {"id": "42", "ip": "192.0.2.1", "type": "service"}]
    for (category, activity, outcome), target, actor in itertools.product(
        itertools.product(get_args(Category), get_args(Activity), get_args(Outcome)), targets, actors
    ):
        out.append(
            make_event(
                id="x",
                time="2026-01-01T00:00:00.000Z",
                observed_time="2026-01-01T00:00:01.000Z",
                vendor="v",
                source="s",
                organization="o",
                action="a.b",
                activity=activity,
                category=category,
                outcome=outcome,
                raw={"k": 1},
                actor=actor,
                target=target,
                repository="r" if outcome == "failure" else None,
            )
        )
    return out


SHAPES = shapes()


def test_the_schemas_catch_a_broken_event() -> None:
    doc = ocsf.ocsf_event(events()["codacy"])
    broken = {k: v for k, v in doc.items() if k != "entity"} | {"type_uid": 1}
    with pytest.raises(AssertionError):
        validate(broken)


@pytest.mark.parametrize("version", ocsf.VERSIONS)
def test_every_shape_validates_against_the_official_schema_in_every_version(version: str) -> None:
    used = set()
    formatter = get_formatter("ocsf", {"version": version})
    for event in SHAPES:
        doc = orjson.loads(formatter(record(event)))
        assert doc["metadata"]["version"] == version
        validate(doc)
        assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
        assert doc["category_uid"] == doc["class_uid"] // 1000
        assert doc["status_id"] == {"success": 1, "failure": 2, "unknown": 0}[event["outcome"]]
        used.add(doc["class_uid"])
    assert used == CLASSES_USED


@pytest.mark.parametrize("version", ocsf.VERSIONS)
def test_the_chain_goes_where_every_version_allows_it(version: str) -> None:
    """``metadata.sequence`` (an integer since 1.1.0) holds the seq, ``unmapped.chain`` the link."""
    for event in events().values():
        doc = orjson.loads(get_formatter("ocsf", {"version": version})(record(event)))
        validate(doc)
        assert doc["metadata"]["sequence"] == event["chain"]["seq"]
        assert doc["unmapped"]["chain"] == event["chain"]


def test_an_unknown_version_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="version"):
        get_formatter("ocsf", {"version": "1.9.0"})


def test_a_login_names_the_service_the_official_schema_requires() -> None:
    """Authentication needs a service or a dst_endpoint (at_least_one): the hand-written subset
    of 1.8.0 missed it, the official schema did not."""
    doc = ocsf.ocsf_event(events()["codestax"])
    assert doc["class_uid"] == 3002 and doc["service"] == {"name": "CodeStax"}
    validate(doc)


def acme_event(**fields: Any) -> dict[str, Any]:
    """One event of a made-up vendor, for a test about one mapping: the rest is fixed."""
    return make_event(
        id="e1",
        time="2026-01-01T00:00:00.000Z",
        observed_time="2026-01-01T00:00:01.000Z",
        vendor="acme",
        source="acme",
        organization="o",
        **fields,
    )


def test_what_an_old_version_has_no_place_for_goes_to_unmapped() -> None:
    """OCSF 1.1 Entity Management has no src_endpoint nor http_request, and an actor only under
    the host profile: the IP and the user agent stay in the event, under unmapped."""
    event = acme_event(
        action="repo.enable",
        activity="enable",
        category="configuration",
        outcome="success",
        raw={},
        actor={"name": "al", "ip": "192.0.2.9", "user_agent": "ua/1", "type": "service"},
        target={"type": "repository", "id": "R1", "name": "web"},
    )
    old, new = ocsf.ocsf_event(event, version="1.1.0"), ocsf.ocsf_event(event, version="1.8.0")
    validate(old)
    validate(new)
    assert old["unmapped"]["src_endpoint"] == {"ip": "192.0.2.9"} and "src_endpoint" not in old
    assert old["unmapped"]["http_request"] == {"user_agent": "ua/1"}
    assert old["metadata"]["profiles"] == ["host"] and old["actor"]["user"]["type_id"] == 99
    assert (old["activity_id"], old["activity_name"]) == (99, "Enable")
    assert new["src_endpoint"] == {"ip": "192.0.2.9"} and new["actor"]["user"]["type_id"] == 4
    assert (new["activity_id"], new["activity_name"]) == (8, "Enable")


@pytest.mark.parametrize(
    ("vendor", "class_uid", "activity_id"),
    [
        ("codacy", 3004, 3),
        ("configcat", 3004, 3),
        ("codescoring", 6003, 99),
        ("codestax", 3002, 1),
        ("codacy-gap", 6003, 99),
    ],
)
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
    event = acme_event(
        action="x.y",
        activity=activity,
        category=category,
        outcome="success",
        raw={},
        target={"type": target_type, "id": "T_1", "name": "thing"},
    )
    assert ocsf.classify(event)[0] == class_uid


@pytest.mark.parametrize(
    ("activity", "action", "name"),
    [("execute", "sca.analysis_started", "Execute"), ("other", "gap.detected", "gap.detected"), ("other", "", "Other")],
)
def test_an_unmapped_activity_is_named_by_the_source(activity: str, action: str, name: str) -> None:
    """OCSF's caption of activity_id 99: "The event activity is not mapped. See the activity_name
    attribute, which contains a data source specific value"; type_name is type_uid's caption."""
    event = acme_event(
        action=action,
        activity=activity,
        category="api",
        outcome="success",
        raw={},
        actor={"name": "al", "type": "user"},
    )
    for version in ocsf.VERSIONS:
        doc = ocsf.ocsf_event(event, version=version)
        validate(doc)
        assert (doc["class_uid"], doc["activity_id"], doc["type_uid"]) == (6003, 99, 600399)
        assert doc["activity_name"] == name and doc["type_name"] == "API Activity: Other"


def test_an_activity_an_old_version_lacks_keeps_its_name_under_type_other() -> None:
    event = acme_event(
        action="repo.disable",
        activity="disable",
        category="configuration",
        outcome="success",
        raw={},
        target={"type": "repository", "id": "R1"},
    )
    old = ocsf.ocsf_event(event, version="1.1.0")
    assert (old["type_uid"], old["activity_name"], old["type_name"]) == (300499, "Disable", "Entity Management: Other")
