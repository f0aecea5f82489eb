"""Every request the Codacy and ConfigCat sources send, checked against the vendor's OpenAPI
document, with the emulator's answer to it: the emulators are lenient where the vendors may
not be (a date-time that is not RFC 3339, an unknown parameter), so a source is only known to
ask what the vendor accepts if its own requests are checked, not the tests' hand-made ones."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from forwarder.emulators.configcat import DEFAULT_ORG_ID, DEFAULT_PASSWORD, DEFAULT_USER
from forwarder.sources.codacy import CodacyConfig, CodacySource
from forwarder.sources.configcat import ConfigCatConfig, ConfigCatSource
from tests.support.openapi import Start, Validate

pytestmark = pytest.mark.integration

DAY = 86400


def record(client: httpx.AsyncClient) -> list[httpx.Response]:
    """Every response the client gets, read, with the request that asked for it."""
    seen: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        seen.append(response)

    client.event_hooks["response"] = [*client.event_hooks["response"], keep]
    return seen


async def walk(source: CodacySource | ConfigCatSource, organization: str) -> list[str]:
    keys: list[str] = []
    cursor: dict[str, Any] | None = None
    for _ in range(2):  # a first run, then an incremental one from its cursor
        async for page in source.pages(organization, cursor):
            keys += [key for _, key in page.entries]
            cursor = page.cursor
    return keys


async def test_codacy_source_requests_follow_the_document(start: Start, validate_codacy: Validate) -> None:
    emulator = start("codacy", 30, {"orgs": ["gh/acme"], "span_s": 3 * DAY})
    config = CodacyConfig(
        type="codacy",
        base_url=f"{emulator.url}/api/v3",
        api_token="codacy-test-token",
        organizations=["gh/acme"],
        initial_lookback_days=5,
        lag_s=0,
        max_attempts=1,
    )
    source = CodacySource("codacy", config)
    seen = record(source.client)
    try:
        keys = await walk(source, "gh/acme")
        await source.check()
    finally:
        await source.close()
    assert len(set(keys)) == 30
    assert len(seen) >= 6  # one per day of the lookback, twice, and the check
    for response in seen:
        validate_codacy(response)


def products(emulator_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{emulator_url}/v1/products", auth=(DEFAULT_USER, DEFAULT_PASSWORD), timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


@pytest.mark.parametrize(
    "variant",
    ["v2", "v2-filters", "v2-product-route", "v1"],
)
async def test_configcat_source_requests_follow_the_document(
    start: Start, validate_configcat: Validate, variant: str
) -> None:
    emulator = start("configcat", 120, {"span_s": 30 * DAY, "config": {"bucket_size": 100000}})
    product = products(emulator.url)[0]["productId"]
    settings: dict[str, Any] = {
        "type": "configcat",
        "base_url": emulator.url,
        "username": DEFAULT_USER,
        "password": DEFAULT_PASSWORD,
        "organizations": [DEFAULT_ORG_ID],
        "page_size": 10,
        "lag_s": 0,
        "max_attempts": 1,
    }
    unit = DEFAULT_ORG_ID
    if variant == "v2-filters":
        settings.update(
            product_id=product,
            config_id=str(uuid.uuid4()),
            environment_id=str(uuid.uuid4()),
            audit_log_type="settingValueChanged",
        )
    elif variant == "v2-product-route":
        settings.update(organizations=[], product_ids=[product])
        unit = f"product:{product}"
    elif variant == "v1":
        settings.update(api_version="v1", window_days=7, initial_lookback_days=20)
    source = ConfigCatSource("configcat", ConfigCatConfig.model_validate(settings))
    seen = record(source.client)
    try:
        keys = await walk(source, unit)
        await source.check()
    finally:
        await source.close()
    if variant == "v2":
        assert len(set(keys)) == len([e for e in emulator.entries() if e["_org"] == DEFAULT_ORG_ID]) > 0
    assert len(seen) >= 3
    for response in seen:
        assert response.status_code == 200, response.text
        validate_configcat(response)
