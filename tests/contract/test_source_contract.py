"""The source contract (``docs/specs/source.md``), run over every type in
``forwarder.sources.SOURCES`` against the emulator that declares it (``tests/contract/sources.py``).

A source type that no emulator declares fails this suite with a message saying what to add.
Each test walks the source itself, as the poller does: ``pages(organization, cursor)``, then
``normalize`` on every entry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from forwarder.event import parse_ms
from forwarder.sources import SOURCES
from forwarder.sources.base import Page, Source
from forwarder.sources.http import RetryableHTTPError, SourceError
from tests.contract.sources import MISSING, SourceCase, case_of
from tests.support.emulators import EmulatorProcess, running

pytestmark = pytest.mark.integration

ENTRIES = 30


@dataclass
class Running:
    case: SourceCase
    emulator: EmulatorProcess

    def source(self) -> Source:
        config = self.case.config(self.emulator.url)
        config_class, factory = SOURCES[config["type"]]
        return factory("contract", config_class.model_validate(config))

    def expected_ids(self) -> set[str]:
        return {self.case.key(entry) for entry in self.emulator.entries()}


@pytest.fixture(params=sorted(SOURCES))
def vendor(request: pytest.FixtureRequest) -> Iterator[Running]:
    case = case_of(request.param)
    if case is None:
        pytest.fail(MISSING.format(type=request.param))
    emulator = running(case.emulator, entries=ENTRIES, options={"span_s": 2 * 86400, **case.options})
    try:
        yield Running(case, emulator)
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def schema() -> Draft202012Validator:
    """What ``audit-forwarder schema`` prints: the promise made to whoever reads the events."""
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "schema"], capture_output=True, text=True, timeout=60, check=True
    )
    return Draft202012Validator(json.loads(result.stdout))


@dataclass
class Walk:
    pages: list[Page]
    events: list[dict[str, Any]]


async def walk(source: Source, cursor: dict[str, Any] | None = None) -> Walk:
    """Every organization's pages from ``cursor``, and their entries normalized in page order."""
    pages: list[Page] = []
    events: list[dict[str, Any]] = []
    for organization in source.organizations():
        async for page in source.pages(organization, cursor):
            pages.append(page)
            observed = datetime.now(UTC)
            events += [source.normalize(organization, raw, key, observed) for raw, key in page.entries]
    return Walk(pages, events)


def requests(emulator: EmulatorProcess) -> list[tuple[str, int]]:
    """(path with query, status) of each request the emulator answered, in order."""
    return [(path, status) for _, _, path, status in emulator.control("GET", "requests")]


def test_every_registered_source_has_an_emulator() -> None:
    missing = [t for t in sorted(SOURCES) if case_of(t) is None]
    assert not missing, "\n".join(MISSING.format(type=t) for t in missing)


async def test_pages_come_oldest_first_with_every_entry_once(vendor: Running) -> None:
    source = vendor.source()
    try:
        done = await walk(source)
    finally:
        await source.close()
    ids = [event["id"] for event in done.events]
    assert len(ids) == len(set(ids)), "an entry came twice in one walk"
    assert set(ids) == vendor.expected_ids()
    times = [parse_ms(event["time"]) for event in done.events]
    assert times == sorted(times), "pages (and the entries of each) must come oldest first"
    keys = [key for page in done.pages for _, key in page.entries]
    assert keys == ids, "an event's id is the key its page paired it with"


async def test_the_cursor_is_json_and_resumes_where_the_walk_stopped(vendor: Running) -> None:
    source = vendor.source()
    try:
        done = await walk(source)
        for page in done.pages:
            assert json.loads(json.dumps(page.cursor)) == page.cursor, "a cursor must be plain JSON"
            # the clock-step check and the cursor-lag metric read it (forwarder.sources.window)
            assert isinstance(page.cursor.get("watermark_ms"), int), page.cursor
        cursor = json.loads(json.dumps(done.pages[-1].cursor))  # as the journal stores it
        assert (await walk(source, cursor)).events == [], "resuming from the cursor read entries again"
        added = vendor.emulator.control("POST", "entries", {"generate": 3, "span_s": 1})
        assert added == {"added": 3}
        new_ids = vendor.expected_ids() - {event["id"] for event in done.events}
        assert len(new_ids) == 3
        resumed = await walk(source, cursor)
    finally:
        await source.close()
    assert [event["id"] for event in resumed.events] != []
    assert {event["id"] for event in resumed.events} == new_ids


async def test_every_event_validates_against_the_schema(vendor: Running, schema: Draft202012Validator) -> None:
    source = vendor.source()
    try:
        done = await walk(source)
    finally:
        await source.close()
    assert len(done.events) == len(vendor.expected_ids())
    for event in done.events:
        problems = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in schema.iter_errors(event)]
        assert not problems, f"{event['id']}: {problems}"


async def test_a_401_fails_the_poll_at_once_with_a_clear_message(vendor: Running) -> None:
    vendor.emulator.control("POST", "faults", {"status": 401, "count": 1000})
    source = vendor.source()
    try:
        with pytest.raises(SourceError) as caught:
            await walk(source)
    finally:
        await source.close()
    assert not isinstance(caught.value, RetryableHTTPError)
    message = str(caught.value)
    assert "401" in message and "credentials" in message, message
    assert source.organizations()[0] in message, "the message names the organization"
    assert [status for _, status in requests(vendor.emulator)] == [401], "a refused credential is not retried"


@pytest.mark.parametrize("status", [500, 503])
async def test_a_5xx_is_retried_and_nothing_is_lost(vendor: Running, status: int) -> None:
    vendor.emulator.control("POST", "faults", {"status": status, "count": 1})
    source = vendor.source()
    try:
        done = await walk(source)
    finally:
        await source.close()
    assert {event["id"] for event in done.events} == vendor.expected_ids()
    answered = requests(vendor.emulator)
    assert answered[0][1] == status
    assert answered[1] == (answered[0][0], 200), "the same request again, after a backoff"
