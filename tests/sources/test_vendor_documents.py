"""What the vendors' own documents show, read as a black-box tester would read them
(``/work/shared/seeds``, the OpenAPI documents): shapes our emulators do not serve but a
document does must be collected, not refused or quarantined."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from forwarder.event import make_event
from forwarder.formats import get_formatter
from forwarder.sources.codacy import normalize_entry as codacy_entry
from forwarder.sources.codescoring.mapping import normalize_entry as codescoring_entry
from forwarder.sources.codestax import normalize_entry as codestax_entry
from forwarder.sources.configcat import ConfigCatConfig, ConfigCatSource
from forwarder.sources.window import time_at
from tests.formats.samples import record

ORG = "08d86d63-2721-4da6-8c06-584521d516bc"
OBSERVED = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)


def test_codacy_actor_given_as_text_is_the_actor() -> None:
    """Codacy's export example (seed 002) puts ``.actor`` through ``@csv``, which only takes
    text: such an entry was quarantined (``'str' object has no attribute 'get'``)."""
    raw = {
        "actor": "jane@example.com",
        "action": "user.login",
        "result": "succeed",
        "timestamp": "2026-11-24T04:30:00.123Z",
        "source": "UI",
        "repositoryName": "",
        "requestDetails": {"ip": "203.0.113.7"},
    }
    event = codacy_entry("codacy", "gh/acme", raw, "codacy:1", OBSERVED)
    assert event["actor"]["email"] == event["actor"]["id"] == "jane@example.com"
    assert event["actor"]["type"] == "user"
    assert event["details"]["request"] == {"ip": "203.0.113.7"}  # the example's field name


def test_codacy_entry_without_actor_has_an_unknown_actor() -> None:
    raw = {"actor": None, "action": "user.login", "result": "succeed", "timestamp": "2026-11-24T04:30:00Z"}
    event = codacy_entry("codacy", "gh/acme", raw, "codacy:1", OBSERVED)
    assert event["actor"]["email"] is None and event["actor"]["type"] == "unknown"


def test_codestax_user_given_as_text_is_the_actor() -> None:
    """The document says each entry names its "User"; given as text (an email, or a name) it
    was dropped and the actor left unknown."""
    base = {"timestamp": "2026-11-24T04:30:00Z", "action": "scan.triggered", "target": "web"}
    by_email = codestax_entry("cx", "acme", {**base, "user": "jane@example.com"}, "codestax:acme:1", OBSERVED)
    assert by_email["actor"]["email"] == "jane@example.com" and by_email["actor"]["type"] == "user"
    by_name = codestax_entry("cx", "acme", {**base, "user": "Jane Doe"}, "codestax:acme:2", OBSERVED)
    assert by_name["actor"]["name"] == "Jane Doe" and by_name["actor"]["email"] is None


def configcat_item(n: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "auditLogId": n,
        "auditLogDateTime": now,
        "auditLogTypeEnum": "productCreated",
        "truncated": False,
        "auditLogType": "Product created",
        "userEmail": "jane@example.com",
        "userName": "Jane Doe",
        "where": "",
        "why": None,
        "actionTarget": "Main",
        "details": "",
    }


async def collect_configcat(handler: Any, **settings: Any) -> list[Any]:
    config = ConfigCatConfig(
        type="configcat",
        base_url="http://cc.test",
        username="user",
        password="secret",
        organizations=[ORG],
        initial_lookback_days=1,
        lag_s=0,
        max_attempts=1,
        **settings,
    )
    src = ConfigCatSource("cc", config)
    await src.client.aclose()
    src.client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://cc.test")
    src.fetcher.client = src.client
    entries: list[Any] = []
    try:
        async for page in src.pages(ORG, None):
            entries += [raw for raw, _ in page.entries]
    finally:
        await src.close()
    return entries


async def test_configcat_organization_served_only_on_the_documented_v1_endpoint() -> None:
    """ConfigCat's "List Audit log items for Organization" page (seed 004) documents
    ``GET /v1/organizations/:organizationId/auditlogs`` answering a bare array; a server that
    has only it answered our v2 request 404, and the source failed every poll."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == f"/v1/organizations/{ORG}/auditlogs":
            assert "fromUtcDateTime" in request.url.params and "toUtcDateTime" in request.url.params
            return httpx.Response(200, json=[configcat_item(1), configcat_item(2)])
        return httpx.Response(404, json={"message": "Not found."})

    entries = await collect_configcat(handler)
    assert sorted(e["auditLogId"] for e in entries) == [1, 2]
    assert asked[0].startswith("/v2/") and asked[-1].startswith("/v1/")


async def test_configcat_v2_answering_a_bare_array_is_read_page_by_page() -> None:
    """The v1 shape (a bare array) on the v2 path, as v1 redirected there would give: read, and
    the next page asked for while pages come back full."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["pageNumber"])
        size = int(request.url.params["pageSize"])
        items = [configcat_item(n) for n in range(1, 8)]
        return httpx.Response(200, json=items[(page - 1) * size : page * size])

    entries = await collect_configcat(handler, page_size=3)
    assert sorted(e["auditLogId"] for e in entries) == list(range(1, 8))


async def test_configcat_v2_bare_array_ignoring_page_number_ends_the_window() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[configcat_item(n) for n in range(1, 4)])

    entries = await collect_configcat(handler, page_size=3)
    assert sorted(e["auditLogId"] for e in entries) == [1, 2, 3]


async def test_configcat_v2_not_found_stays_an_error_when_v2_is_chosen() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/"):
            return httpx.Response(200, json=[configcat_item(1)])
        return httpx.Response(404, json={"message": "Not found."})

    try:
        await collect_configcat(handler, api_version="v2")
    except Exception as exc:
        assert "404" in str(exc)
    else:
        raise AssertionError("a 404 with api_version v2 must fail the poll")


def test_leef_values_carry_no_pipe_and_no_tab() -> None:
    """IBM's LEEF guidelines (research sinks-schemas §3.2): no tab or pipe in keys or values.
    A ``|`` in a value showed a line split on ``|`` an extra header field."""
    event = make_event(
        id="x:1",
        time="2026-01-01T00:00:00.000Z",
        observed_time="2026-01-01T00:00:00.000Z",
        vendor="codacy",
        source="codacy",
        organization="gh/acme",
        action="repositories.settings.update",
        activity="update",
        category="configuration",
        outcome="success",
        message="a|b\tc",
        target={"type": "repository", "id": "1", "name": "web|app"},
        raw={},
    )
    for delimiter in ("\t", "^"):
        line = get_formatter("leef", {"delimiter": delimiter})(record(event)).decode()
        assert len(line.split("|")) == 7, line
        attributes = line.split("|", 6)[6]
        assert "msg=a b c" in attributes and "targetName=web app" in attributes
        if delimiter != "\t":
            assert "\t" not in line


def test_epoch_number_times_are_read_not_quarantined() -> None:
    """CodeStax and CodeScoring document only "the time (UTC)" of an entry; an epoch number
    there (ms or s, as a number or as digits) was quarantined as an unreadable time."""
    expected = "2026-11-24T04:30:00.123Z"
    ms = 1_795_494_600_123
    for value in (ms, str(ms), ms / 1000):
        raw = {"timestamp": value, "action": "scan.triggered", "user": {"email": "a@b.c"}}
        assert codestax_entry("cx", "acme", raw, "codestax:acme:1", OBSERVED)["time"] == expected
        assert time_at("timestamp")(raw) == ms
    scoring = {"id": 1, "created_at": 1_795_494_600, "actor": "system", "message": "User logged in"}
    assert codescoring_entry("cs", "default", scoring, "codescoring:default:1", OBSERVED)["time"] == (
        "2026-11-24T04:30:00.000Z"
    )
    codacy = {"actor": {"email": "a@b.c"}, "action": "user.login", "result": "succeed", "timestamp": ms}
    assert codacy_entry("codacy", "gh/acme", codacy, "codacy:1", OBSERVED)["time"] == expected
