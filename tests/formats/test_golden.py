"""Every format, every vendor shape: byte-for-byte against the reviewed golden files.

A deliberate change regenerates them with ``python -m tests.formats.samples`` (then review the diff).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import orjson
import pytest

from forwarder.formats import FORMATS, get_formatter
from forwarder.formats.csv import COLUMNS
from tests.formats.samples import FORMATS as GOLDEN_FORMATS
from tests.formats.samples import events, golden_path, parse_cef, parse_leef, record

EVENTS = events()
CASES = [(vendor, fmt) for vendor in EVENTS for fmt in GOLDEN_FORMATS]


def test_every_registered_format_has_golden_files() -> None:
    assert set(GOLDEN_FORMATS) == set(FORMATS)
    assert {"codacy", "configcat", "codescoring", "codestax"} <= set(EVENTS)


@pytest.mark.parametrize(("vendor", "fmt"), CASES)
def test_golden(vendor: str, fmt: str) -> None:
    line = get_formatter(fmt)(record(EVENTS[vendor]))
    assert line + b"\n" == golden_path(vendor, fmt).read_bytes()
    assert b"\n" not in line and b"\r" not in line


@pytest.mark.parametrize("vendor", list(EVENTS))
def test_golden_lines_carry_the_event(vendor: str) -> None:
    event = EVENTS[vendor]
    rec = record(event)
    header, ext = parse_cef(get_formatter("cef")(rec).decode())
    assert header[:3] == ["0", header[1], "Audit Log"] and header[6] in ("3", "5", "7")
    assert header[4] == event["action"] and ext["cs1"] == event["organization"]
    assert ext["externalId"] == event["id"][:40] and ext.get("flexString1", event["id"]) == event["id"]
    leef_header, attrs = parse_leef(get_formatter("leef")(rec).decode())
    assert leef_header[3] == event["action"] and attrs["devTime"] == event["time"]
    assert attrs["cat"] == event["category"] and attrs["externalId"] == event["id"]
    ecs = orjson.loads(get_formatter("ecs")(rec))
    assert ecs["event"]["id"] == event["id"] and ecs["@timestamp"] == event["time"]
    assert orjson.loads(ecs["event"]["original"]) == event["raw"]
    ocsf = orjson.loads(get_formatter("ocsf")(rec))
    assert ocsf["metadata"]["uid"] == event["id"] and orjson.loads(ocsf["raw_data"]) == event["raw"]
    row = next(csv.reader(io.StringIO(get_formatter("csv")(rec).decode())))
    assert row[COLUMNS.index("id")] == event["id"]
    assert get_formatter("json")(rec) is rec.data  # the fast path: no re-serialization


def test_codacy_cef_escapes_the_repository_name() -> None:
    line = golden_path("codacy", "cef").read_text()
    assert "cs5=web\\=app|x " in line  # '=' escaped, '|' left alone in extensions
    assert parse_cef(line.strip())[1]["cs5"] == "web=app|x"


def test_the_examples_in_the_formats_doc_are_the_golden_files() -> None:
    """docs/formats.md says its examples are these files: an operator writes SIEM parsers from them.
    The vendor's original entry is elided there (``{"id":5138,...}``)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
    examples = re.findall(r"<!-- golden: (\S+) -->\n```\w*\n(.*?)\n```", doc, re.S)
    assert {name for name, _ in examples} == {"codestax.ecs", "codestax.ocsf", "codestax.cef", "codestax.leef"}
    for name, shown in examples:
        golden = golden_path(name.split(".")[0], name.split(".")[1]).read_text().strip()
        if name.endswith((".cef", ".leef")):
            assert shown.replace("<TAB>", "\t") == golden, name
            continue
        expected, got = orjson.loads(golden), orjson.loads(shown)
        for event in (expected, got):
            event.pop("raw_data", None)
            event.get("event", {}).pop("original", None)
        assert got == expected, name
