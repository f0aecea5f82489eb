"""The ConfigCat emulator over real HTTP, its answers checked against ConfigCat's OpenAPI document."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from forwarder.emulators.configcat import DEFAULT_ORG_ID
from forwarder.event import parse_time
from tests.support.emulators import EmulatorProcess, running
from tests.support.openapi import Start, Validate

pytestmark = pytest.mark.integration

AUTH = ("configcat-user", "configcat-pass")
ORG = DEFAULT_ORG_ID
OTHER_ORG = "5f0c6a1e-2b3d-4c5e-8f9a-0b1c2d3e4f50"
UNKNOWN = "11111111-2222-4333-8444-555555555555"
DAY = 86400


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ago(days: float) -> str:
    return iso(datetime.now(UTC) - timedelta(days=days))


def client(emulator: EmulatorProcess, auth: tuple[str, str] | None = AUTH) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, auth=auth, timeout=10)


def org_path(org: str = ORG, version: str = "v2") -> str:
    return f"/{version}/organizations/{org}/auditlogs"


def walk(http: httpx.Client, path: str, validate: Validate, **params: Any) -> list[dict[str, Any]]:
    """Every page of a v2 listing, each checked against the spec, in the order served."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        response = http.get(path, params={**params, "pageNumber": page})
        assert response.status_code == 200, response.text
        validate(response)
        body = response.json()
        items += body["data"]
        if not body["paging"]["hasNext"]:
            return items
        page += 1


def newest_first(items: list[dict[str, Any]]) -> bool:
    keys = [(parse_time(i["auditLogDateTime"]), i["auditLogId"]) for i in items]
    return keys == sorted(keys, reverse=True)


def of_org(emulator: EmulatorProcess, org: str) -> list[dict[str, Any]]:
    return [e for e in emulator.entries() if e["_org"] == org]


@pytest.fixture(scope="module")
def shared() -> Iterator[EmulatorProcess]:
    """Read-only tests share one populated emulator: 37 entries per org over 20 days."""
    emulator = running(
        "configcat", 37, {"orgs": [ORG, OTHER_ORG], "span_s": 20 * DAY, "config": {"bucket_size": 100000}}
    )
    yield emulator
    emulator.stop()


def test_basic_auth_is_required(shared: EmulatorProcess, validate_configcat: Validate) -> None:
    with client(shared, auth=None) as anonymous:
        response = anonymous.get(org_path())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "X-Rate-Limit-Remaining" in response.headers
    validate_configcat(response, request_valid=False)  # no credentials; 401 itself is an explicit exemption
    with client(shared, auth=("configcat-user", "wrong")) as wrong:
        refused = wrong.get(org_path())
        assert refused.status_code == 401
        validate_configcat(refused)
    with client(shared, auth=("someone-else", "configcat-pass")) as wrong:
        assert wrong.get(org_path()).status_code == 401
    with client(shared) as http:
        assert http.get(org_path()).status_code == 200


def test_ids_are_validated_and_unknown_ones_are_not_found(
    shared: EmulatorProcess, validate_configcat: Validate
) -> None:
    malformed: list[tuple[str, dict[str, str]]] = [
        (org_path("not-a-uuid"), {}),
        ("/v2/products/not-a-uuid/auditlogs", {}),
        (org_path(), {"productId": "nope"}),
        (org_path(), {"configId": "12"}),
        (org_path(), {"environmentId": "x"}),
        (org_path(), {"auditLogType": "flagFlipped"}),
        (org_path(), {"fromUtcDateTime": "yesterday"}),
    ]
    with client(shared) as http:
        for path, params in malformed:
            response = http.get(path, params=params)
            assert response.status_code == 400, (path, params)
            validate_configcat(response, request_valid=False)  # the document refuses each too
        for path in [org_path(UNKNOWN), f"/v2/products/{UNKNOWN}/auditlogs"]:
            response = http.get(path)
            assert response.status_code == 404
            validate_configcat(response)


def test_pages_cover_the_organization_newest_first(shared: EmulatorProcess, validate_configcat: Validate) -> None:
    with client(shared) as http:
        first = http.get(org_path(), params={"pageSize": 10})
        paging = first.json()["paging"]
        assert paging == {
            "currentPage": 1,
            "totalPages": 4,
            "pageSize": 10,
            "totalCount": 37,
            "hasPrevious": False,
            "hasNext": True,
        }
        items = walk(http, org_path(), validate_configcat, pageSize=10)
        last = http.get(org_path(), params={"pageSize": 10, "pageNumber": 4}).json()["paging"]
        past_end = http.get(org_path(), params={"pageSize": 10, "pageNumber": 5})
    assert (last["hasPrevious"], last["hasNext"]) == (True, False)
    assert past_end.status_code == 200
    assert past_end.json()["data"] == []
    assert past_end.json()["paging"]["hasNext"] is False
    assert len(items) == 37
    assert newest_first(items)
    assert {i["auditLogId"] for i in items} == {e["auditLogId"] for e in of_org(shared, ORG)}
    assert not {i["auditLogId"] for i in items} & {e["auditLogId"] for e in of_org(shared, OTHER_ORG)}


def test_page_parameters_are_bounded(shared: EmulatorProcess) -> None:
    with client(shared) as http:
        invalid: list[dict[str, str | int]] = [
            {"pageSize": 0},
            {"pageSize": 101},
            {"pageSize": "ten"},
            {"pageNumber": 0},
        ]
        for params in invalid:
            assert http.get(org_path(), params=params).status_code == 400, params
        full = http.get(org_path(), params={"pageSize": 100})
    assert full.status_code == 200
    assert len(full.json()["data"]) == 37


def test_product_type_and_time_filters(shared: EmulatorProcess, validate_configcat: Validate) -> None:
    with client(shared) as http:
        products = http.get("/v1/products")
        validate_configcat(products)
        organizations = http.get("/v1/organizations")
        validate_configcat(organizations)
        assert {o["organizationId"] for o in organizations.json()} == {ORG, OTHER_ORG}
        product = next(p for p in products.json() if p["organization"]["organizationId"] == ORG)
        by_filter = walk(http, org_path(), validate_configcat, productId=product["productId"])
        by_route = walk(http, f"/v2/products/{product['productId']}/auditlogs", validate_configcat)
        kind = walk(http, org_path(), validate_configcat, auditLogType="settingValueChanged")
        one = of_org(shared, ORG)[17]
        at = one["auditLogDateTime"]
        exact = walk(http, org_path(), validate_configcat, fromUtcDateTime=at, toUtcDateTime=at)
        after = walk(http, org_path(), validate_configcat, fromUtcDateTime=at)
    in_product = [e for e in of_org(shared, ORG) if e["where"].startswith(f"Product: {product['name']}")]
    assert in_product, "the fixture should put entries in every product"
    assert [i["auditLogId"] for i in by_filter] == [i["auditLogId"] for i in by_route]
    assert {i["auditLogId"] for i in by_filter} == {e["auditLogId"] for e in in_product}
    expected_kind = [e for e in of_org(shared, ORG) if e["auditLogTypeEnum"] == "settingValueChanged"]
    assert expected_kind, "flag value changes dominate the fixture"
    assert {i["auditLogId"] for i in kind} == {e["auditLogId"] for e in expected_kind}
    assert [i["auditLogId"] for i in exact] == [one["auditLogId"]]  # both bounds inclusive
    assert len(after) == 37 - 17


def test_config_and_environment_filters(start: Start, validate_configcat: Validate) -> None:
    emulator = start("configcat")
    config, other_config, env = (str(uuid.uuid4()) for _ in range(3))
    now = datetime.now(UTC)
    posted = [
        {"auditLogId": n, "_configId": cfg, "_environmentId": e, "auditLogDateTime": iso(now - timedelta(minutes=n))}
        for n, cfg, e in [(1, config, env), (2, config, None), (3, other_config, env), (4, None, None)]
    ]
    template = {
        "auditLogTypeEnum": "settingValueChanged",
        "truncated": False,
        "modelVersion": 6,
        "auditLogType": "Feature flag value changed",
        "userEmail": "jane.doe@example.com",
        "userName": "Jane Doe",
        "where": "Product: Main",
        "why": None,
        "actionTarget": "enableDarkMode",
        "details": '{"oldValue":false,"newValue":true}',
    }
    emulator.control("POST", "entries", [{**template, **p} for p in posted])
    with client(emulator) as http:
        by_config = walk(http, org_path(), validate_configcat, configId=config)
        by_env = walk(http, org_path(), validate_configcat, environmentId=env)
        both = walk(http, org_path(), validate_configcat, configId=config, environmentId=env)
    assert [i["auditLogId"] for i in by_config] == [1, 2]
    assert [i["auditLogId"] for i in by_env] == [1, 3]
    assert [i["auditLogId"] for i in both] == [1]
    assert all(not k.startswith("_") for i in by_config for k in i)


def test_equal_times_are_ordered_by_id_descending(start: Start) -> None:
    emulator = start("configcat")
    at = ago(1)
    emulator.control("POST", "entries", [{"auditLogId": n, "auditLogDateTime": at} for n in (5, 9, 7)])
    emulator.control("POST", "entries", [{"auditLogId": 1, "auditLogDateTime": ago(0.5)}])
    with client(emulator) as http:
        data = http.get(org_path()).json()["data"]
    assert [i["auditLogId"] for i in data] == [1, 9, 7, 5]


def test_v1_routes_serve_a_bare_array_for_at_most_thirty_days(start: Start, validate_configcat: Validate) -> None:
    emulator = start("configcat", 37, {"span_s": 20 * DAY})
    entries = emulator.entries()
    week_ago = datetime.now(UTC) - timedelta(days=7)
    recent = {e["auditLogId"] for e in entries if parse_time(e["auditLogDateTime"]) >= week_ago}
    with client(emulator) as http:
        default = http.get(org_path(version="v1"))
        now = datetime.now(UTC)
        window = {"fromUtcDateTime": iso(now - timedelta(days=30)), "toUtcDateTime": iso(now)}
        month = http.get(org_path(version="v1"), params=window)
        too_long = http.get(org_path(version="v1"), params={"fromUtcDateTime": ago(31)})
        product_id = http.get("/v1/products").json()[0]["productId"]
        product = http.get(f"/v1/products/{product_id}/auditlogs", params={"fromUtcDateTime": ago(25)})
    for response in (default, month, product):
        assert response.status_code == 200
        assert isinstance(response.json(), list)
        validate_configcat(response)
    assert 0 < len(recent) < len(entries)
    assert {i["auditLogId"] for i in default.json()} == recent
    assert newest_first(month.json())
    assert len(month.json()) == len(entries)
    assert too_long.status_code == 400
    assert 0 < len(product.json()) < len(entries)


def test_retention_follows_the_plan(start: Start, validate_configcat: Validate) -> None:
    emulator = start("configcat", 61, {"span_s": 60 * DAY})
    entries = emulator.entries()

    def newer_than(days: int) -> set[int]:
        cut = datetime.now(UTC) - timedelta(days=days)
        return {e["auditLogId"] for e in entries if parse_time(e["auditLogDateTime"]) >= cut}

    with client(emulator) as http:
        pro = walk(http, org_path(), validate_configcat, fromUtcDateTime=ago(60))
        emulator.control("POST", "config", {"retention_days": 7})
        free = walk(http, org_path(), validate_configcat, fromUtcDateTime=ago(60))
    assert len(entries) == 61
    assert {i["auditLogId"] for i in pro} == newer_than(35)
    assert {i["auditLogId"] for i in free} == newer_than(7)
    assert len(free) < len(pro) < 61


def test_token_bucket_reports_and_enforces_the_limit(start: Start, validate_configcat: Validate) -> None:
    emulator = start("configcat", 3, {"config": {"bucket_size": 3, "refill_per_s": 4}})
    with client(emulator) as http:
        answers = [http.get(org_path()) for _ in range(4)]
        time.sleep(0.4)
        after_refill = http.get(org_path())
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["X-Rate-Limit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    limited = answers[3]
    validate_configcat(limited)
    assert int(limited.headers["Retry-After"]) >= 1
    reset = parse_time(limited.headers["X-Rate-Limit-Reset"])
    assert datetime.now(UTC) - timedelta(seconds=1) < reset < datetime.now(UTC) + timedelta(seconds=5)
    assert after_refill.status_code == 200


def test_reset_header_formats(start: Start) -> None:
    emulator = start("configcat", 1, {"config": {"reset_format": "epoch"}})
    with client(emulator) as http:
        epoch = http.get(org_path()).headers["X-Rate-Limit-Reset"]
        emulator.control("POST", "config", {"reset_format": "http-date"})
        http_date = http.get(org_path()).headers["X-Rate-Limit-Reset"]
    assert abs(int(epoch) - time.time()) < 10
    assert abs(parsedate_to_datetime(http_date).timestamp() - time.time()) < 10


def test_has_next_can_lie_on_the_last_page(start: Start, validate_configcat: Validate) -> None:
    emulator = start("configcat", 5, {"config": {"has_next_lies": True}})
    with client(emulator) as http:
        last = http.get(org_path(), params={"pageSize": 5})
        past = http.get(org_path(), params={"pageSize": 5, "pageNumber": 2})
    validate_configcat(last)
    assert len(last.json()["data"]) == 5
    assert last.json()["paging"]["hasNext"] is True
    assert past.json()["data"] == []
    assert past.json()["paging"]["hasNext"] is True


def test_legacy_item_shape(start: Start) -> None:
    emulator = start("configcat", 30, {"config": {"legacy_shape": True}})
    with client(emulator) as http:
        data = http.get(org_path()).json()["data"]
        emulator.control("POST", "config", {"legacy_shape": False})
        current = http.get(org_path()).json()["data"]
    assert len(data) == 30
    assert all("modelVersion" not in i and "changeSetId" in i for i in data)
    assert any(i["changeSetId"] is not None for i in data)
    assert all(i["changeSetId"] is None or uuid.UUID(i["changeSetId"]) for i in data)
    assert all(i["modelVersion"] == 6 and "changeSetId" not in i for i in current)


def test_injected_faults_are_served_once(start: Start) -> None:
    emulator = start("configcat", 2)
    emulator.control(
        "POST",
        "faults",
        [
            {"status": 429, "retry_after": "2"},
            {"status": 503, "body": "<html>down</html>", "content_type": "text/html"},
        ],
    )
    with client(emulator) as http:
        answers = [http.get(org_path()) for _ in range(3)]
    assert [r.status_code for r in answers] == [429, 503, 200]
    assert answers[0].headers["Retry-After"] == "2"
    assert answers[1].text == "<html>down</html>"
    assert all("X-Rate-Limit-Remaining" in r.headers for r in answers)


def test_generation_is_deterministic_and_realistic(start: Start) -> None:
    options = {"orgs": [ORG], "end_ms": 1_780_000_000_000, "span_s": 3 * DAY}
    first, second = start("configcat", 150, options), start("configcat", 150, options)
    entries = first.entries()
    assert entries == second.entries()
    assert len(entries) == 150
    assert len({e["auditLogId"] for e in entries}) == 150
    kinds = {e["auditLogTypeEnum"] for e in entries}
    assert "settingValueChanged" in kinds and len(kinds) > 20
    for entry in entries:
        assert (entry["userEmail"] is None) == (entry["userName"] == "System")
        assert entry["where"].startswith(("Organization: ", "Product: "))
        assert entry["actionTarget"]
    changes = [json.loads(e["details"]) for e in entries if e["auditLogTypeEnum"] == "settingValueChanged"]
    assert all(set(c) == {"oldValue", "newValue"} and c["oldValue"] != c["newValue"] for c in changes)
    spacing = parse_time(entries[1]["auditLogDateTime"]) - parse_time(entries[0]["auditLogDateTime"])
    assert math.isclose(spacing.total_seconds(), 3 * DAY / 150, abs_tol=0.01)


def test_the_suites_check_refuses_a_request_the_document_refuses(
    shared: EmulatorProcess, validate_configcat: Validate
) -> None:
    """The emulator is lenient where ConfigCat may not be: a date-time that is not RFC 3339 is
    served, but a source sending it would be wrong, and the check must say so."""
    with client(shared) as http:
        response = http.get(org_path(), params={"fromUtcDateTime": "2026-11-01 10:00"})
    assert response.status_code == 200
    with pytest.raises(AssertionError, match="not a valid request"):
        validate_configcat(response)
    validate_configcat(response, request_valid=False)
