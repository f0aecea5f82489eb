"""Promise 2, bad input never crashes it: property tests over every parser and format, then
the real daemon against a vendor that answers garbage over HTTP.

Every entry must come out normalized or quarantined with a reason (never an exception past
``Poller._normalize``); every page either yields pages or fails with a ``SourceError`` the
poller logs; every formatted line must parse by its format's own rules.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from forwarder.event import epoch_ms, event_time, format_time, make_event, parse_ms, parse_time
from forwarder.formats import FORMATS, get_formatter
from forwarder.formats.csv import FORMULA_START
from forwarder.journal import SqliteJournal
from forwarder.polling import Poller
from forwarder.record import Record
from forwarder.sources import SOURCES
from forwarder.sources.codacy import CodacyConfig, CodacySource
from forwarder.sources.http import SourceError
from tests.support.config import file_sink, make_config
from tests.support.daemon import DaemonProcess, read_ndjson
from tests.support.emulators import EmulatorProcess
from tests.support.figures import Figures
from tests.support.hostile import OBSERVED, codacy_entry, entries, json_values, scalars, text
from tests.support.vendors import TOKEN, codacy_source, expected_ids
from tests.support.waiting import wait_until

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Sources whose mapping is a module-level ``normalize_entry`` (the convention of codacy.py); a
# configurable mapping (http_json) needs its own config and is covered by its own tests.
NORMALIZERS = sorted(
    name for name, (_, cls) in SOURCES.items() if hasattr(sys.modules[cls.__module__], "normalize_entry")
)
assert "codacy" in NORMALIZERS


class _OneVendor:
    """A stand-in source whose ``normalize`` is one registered source's own ``normalize_entry``."""

    def __init__(self, type_name: str) -> None:
        module = sys.modules[SOURCES[type_name][1].__module__]
        self.normalize_entry = module.normalize_entry
        self.name = type_name

    def organizations(self) -> list[str]:
        return ["org"]

    def normalize(self, organization: str, raw: Any, key: str, observed: datetime) -> dict[str, Any]:
        result: dict[str, Any] = self.normalize_entry(self.name, organization, raw, key, observed)
        return result


@pytest.mark.parametrize("type_name", NORMALIZERS)
@PROPERTY
@given(batch=st.lists(entries, max_size=6))
def test_every_entry_is_normalized_or_quarantined_with_a_reason(type_name: str, batch: list[Any]) -> None:
    poller = Poller(cast(Any, _OneVendor(type_name)), cast(Any, None), lambda: None)
    keyed = [(raw, f"{type_name}:key{i}") for i, raw in enumerate(batch)]
    normalized, quarantined = asyncio.run(poller._normalize("org", keyed, OBSERVED))
    assert len(normalized) + len(quarantined) == len(batch)
    for reason, _raw in quarantined:
        assert reason.strip()
    for entry in normalized:  # what the journal stores: the JSON with its id and summary beside it
        event = orjson.loads(entry.data)
        assert event["id"] == entry.event_id and entry.event_id.startswith(f"{type_name}:key")
        assert isinstance(event["time"], str) and isinstance(event["action"], str)
        assert (entry.action, entry.category, entry.outcome) == (event["action"], event["category"], event["outcome"])


pages = (
    json_values
    | st.lists(entries, max_size=5)
    | st.fixed_dictionaries(
        {"data": st.lists(entries, max_size=5)},
        optional={"pagination": st.dictionaries(st.sampled_from(["cursor", "limit"]), json_values) | json_values},
    )
)


async def _drain_codacy(body: Any) -> int:
    config = CodacyConfig(
        type="codacy", api_token=TOKEN, organizations=["gh/acme"], initial_lookback_days=2, lag_s=0, slice_hours=24
    )
    source = CodacySource("codacy", config)

    async def get_json(organization: str, url: str, params: Any = None, *, budget: Any = None) -> Any:
        return body

    source.fetcher.get_json = get_json  # type: ignore[method-assign]
    poller = Poller(source, cast(Any, None), lambda: None)
    handled = 0
    try:
        async for page in source.pages("gh/acme", None):
            normalized, quarantined = await poller._normalize("gh/acme", page.entries, OBSERVED)
            assert len(normalized) + len(quarantined) == len(page.entries)
            handled += len(page.entries)
    except SourceError as exc:  # the poller logs it and retries next cycle; anything else is a bug
        assert str(exc)
    finally:
        await source.close()
    return handled


@PROPERTY
@given(body=pages)
@example(body={"data": [], "pagination": "abc"})
def test_codacy_page_handling_never_raises_anything_but_a_source_error(body: Any) -> None:
    asyncio.run(_drain_codacy(body))


times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
    format_time
)
events = st.builds(
    make_event,
    # the journal only holds events whose time parsed (``Poller._entry``): everything else is free
    id=text,
    time=times,
    observed_time=times,
    vendor=text,
    source=text,
    organization=text,
    action=text,
    activity=text,
    category=text,
    outcome=text,
    raw=json_values,
    actor=st.dictionaries(st.sampled_from(["id", "name", "email", "ip", "user_agent", "type"]), scalars),
    target=st.dictionaries(st.sampled_from(["type", "id", "name"]), scalars),
    repository=st.none() | text,
    message=st.none() | text,
    details=st.dictionaries(text, json_values, max_size=3),
)


JSON_FORMATS = {"json", "ecs", "ocsf"}


@pytest.mark.parametrize("name", sorted(FORMATS))
@PROPERTY
@given(event=events)
def test_every_format_writes_a_line_its_own_rules_parse(name: str, event: dict[str, Any]) -> None:
    data = orjson.dumps(event)
    record = Record(1, str(event["id"]), str(event["source"]), str(event["organization"]), 0, data, "v")
    line = get_formatter(name)(record)
    assert line
    if name == "csv":  # a quoted field may hold a newline; the csv rules still read one row
        rows = list(csv.reader(io.StringIO(line.decode(), newline="")))
        defused = "'" if str(event["id"]).startswith(FORMULA_START) else ""  # a formula is written inert
        assert len(rows) == 1 and rows[0][1] == defused + str(event["id"])
        return
    assert b"\n" not in line and b"\r" not in line, "one event, one line"
    if name == "json":
        assert orjson.loads(line) == orjson.loads(data)
    elif name in JSON_FORMATS:
        assert isinstance(orjson.loads(line), dict)


# --- the real daemon against a vendor that answers garbage ---------------------------------

REPEATING = {"data": [codacy_entry(0)], "pagination": {"cursor": "same-again"}}
FAULTS = [
    ("malformed JSON", {"status": 200, "body": '{"data": [{"action": "user.login",', "count": 1}, "not JSON"),
    (
        "HTML with 200",
        {
            "status": 200,
            "content_type": "text/html",
            "count": 1,
            "body": "<!doctype html><html><body>Maintenance</body></html>",
        },
        "not JSON",
    ),
    (
        "10 MB page",
        {"status": 200, "count": 1, "body": '["' + "x" * (10 * 1024 * 1024) + '"]'},
        "where an audit entry belongs",
    ),
    ("endless pagination", {"status": 200, "count": 2, "body": orjson.dumps(REPEATING).decode()}, "pagination"),
]


@pytest.mark.integration
def test_daemon_survives_garbage_over_http_and_loses_nothing(
    tmp_path: Path, codacy: EmulatorProcess, figures: Figures
) -> None:
    out = tmp_path / "out"
    for _, fault, _ in FAULTS:
        fault["path_contains"] = "gh/acme/audit"
    codacy.control("POST", "faults", [fault for _, fault, _ in FAULTS])
    cfg = make_config(tmp_path, codacy_source(codacy.url, max_attempts=1), {"file": file_sink(out)})
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        want = expected_ids(codacy)
        wait_until(
            "every entry once the garbage stopped",
            lambda: {e["id"] for e in read_ndjson(out)} == want,
            timeout=90,
            detail=daemon.log,
        )
        logs = daemon.log()
        crashed = daemon.crashed()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    figures.record(crashed=int(crashed))
    assert not crashed, logs[-4000:]
    failures = [line for line in logs.splitlines() if "poll failed" in line]
    for what, _, says in FAULTS:
        assert any(says in line for line in failures), f"no clear log line for the {what}:\n{logs[-4000:]}"
    got = [e["id"] for e in read_ndjson(out)]
    assert set(got) == want, "only the vendor's real entries may be journaled, none from the garbage"
    figures.record(lost=len(want - set(got)), duplicated=len(got) - len(set(got)))
    print(f"\nhostile HTTP: {len(FAULTS)} kinds of garbage survived, {len(failures)} polls failed cleanly")


CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
near_canonical = st.builds(
    lambda head, frac: head + frac,
    st.sampled_from(["2024-01-01T00:00:00.", "2024-02-29T23:59:59.", "1970-01-01T00:00:00."]),
    st.text(alphabet="0123456789 .TZz+-:٣", min_size=0, max_size=6),
)


@PROPERTY
@given(value=near_canonical | st.text(max_size=40))
def test_event_time_is_canonical_or_refused(value: str) -> None:
    """A vendor time that is kept as sent must already be the canonical form; anything else is
    formatted, and its milliseconds agree with the exact parse."""
    try:
        text = event_time(value)
    except (ValueError, TypeError):
        return
    assert CANONICAL.fullmatch(text), (value, text)
    assert text == format_time(parse_time(value))
    assert parse_ms(text) == epoch_ms(parse_time(value))


@PROPERTY
@given(value=near_canonical | st.builds(lambda head, tail: head + tail, st.text(max_size=23), st.just("Z")))
def test_parse_ms_fast_path_agrees_with_the_exact_parse(value: str) -> None:
    """``parse_ms`` reads canonical-looking times without ``parse_time``'s conversions: same
    milliseconds, and the same refusals."""
    try:
        expected = epoch_ms(parse_time(value))
    except (ValueError, TypeError):
        with pytest.raises((ValueError, TypeError)):
            parse_ms(value)
        return
    assert parse_ms(value) == expected


@pytest.mark.parametrize("value", ["2024-01-01T00:00:00.9 9Z", "2024-01-01T00:00:00.0.0Z", "2024-01-01T00:00:00.06TZ"])
def test_event_time_never_keeps_junk_in_the_milliseconds(value: str) -> None:
    try:
        text = event_time(value)
    except ValueError:
        return
    assert CANONICAL.fullmatch(text), text


def test_epoch_ms_is_exact_far_from_the_epoch() -> None:
    for value, ms in [
        ("9999-12-31T23:59:58.999999Z", 253402300798999),
        ("1969-12-31T23:59:59.999Z", -1),
        ("2024-05-01T12:00:00.001Z", 1714564800001),
    ]:
        assert epoch_ms(parse_time(value)) == ms, value


@pytest.mark.parametrize("where", ["details", "actor"])
async def test_an_entry_nested_deeper_than_json_can_be_written_is_quarantined_alone(tmp_path: Path, where: str) -> None:
    """orjson reads 1,024 levels but writes 254: such an entry failed its page's hash, or the
    quarantine's own write, so the page and its cursor were refused at every poll, for good."""
    now = datetime.now(UTC)
    deep = orjson.loads(b'{"k":' * 300 + b"1" + b"}" * 300)
    good, bad = codacy_entry(int(now.timestamp() * 1000) - 60_000), codacy_entry(int(now.timestamp() * 1000) - 30_000)
    bad[where] = deep
    config = CodacyConfig(type="codacy", api_token=TOKEN, organizations=["gh/acme"], initial_lookback_days=1, lag_s=0)
    source = CodacySource("codacy", config)

    async def get_json(organization: str, url: str, params: Any = None, *, budget: Any = None) -> Any:
        return [good, bad]

    source.fetcher.get_json = get_json  # type: ignore[method-assign]
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    await journal.open()
    try:
        assert await Poller(source, journal, lambda: None).poll()
        stats = await journal.stats()
        assert stats.events == 1 and stats.quarantined == {("codacy", "gh/acme"): 1}
        assert await journal.get_cursor("codacy", "gh/acme") is not None
        (row,) = journal.db.execute("SELECT raw FROM quarantine").fetchall()
        assert b"nested deeper than 200 levels" in row[0]
    finally:
        await journal.close()
        await source.close()
