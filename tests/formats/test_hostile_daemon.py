"""The output formats seen from outside, as a SIEM engineer would: the real daemon (``once``)
reads hostile-but-valid entries from a raw loopback server and writes every format to a file
sink, and CEF and LEEF to a real rsyslog. Every record must come out as exactly one record, read
back by parsers written from the specifications (``tests/formats/samples.py``, not the
formatters), with no field able to start another field or another record."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.event import format_time
from tests.formats.samples import parse_cef, parse_leef
from tests.support.daemon import cli, write_config
from tests.support.raw_http import json_vendor
from tests.support.rsyslog import Rsyslog

pytestmark = pytest.mark.integration

FORGED_CEF = "CEF:0|Evil|Forged|1|login|root logged in|10|suser=root"
FORGED_SYSLOG = "<13>1 2026-01-01T00:00:00Z evil forged - - - root logged in"
VALUES = [
    f'a|b\\c=d\ne\rf\tg]h"i{FORGED_CEF}',
    "".join(f"{c}{FORGED_CEF}" for c in "\x00\x0b\x0c\x1b\x1c\x1e\x7f\x85\u2028\u2029"),
    f"\r\n{FORGED_SYSLOG}\n{FORGED_SYSLOG}",
    " suser=evil act=injected cs1=x",
    "trailing\\",
    '=HYPERLINK("http://evil.example","x")',
    "Ünïcødé 日本 🙂",
    "\\" * 5000 + "=" * 5000,  # over every CEF/LEEF value limit, and the syslog cap once escaped
]
FIELDS = ("who", "email", "uid", "agent", "ttype", "tid", "tname", "repo", "text")
FORMATS: dict[str, dict[str, Any]] = {
    "cef": {},
    "leef": {},
    "leef_caret": {"format": "leef", "format_options": {"delimiter": "^"}},
    "csv": {},
    "ecs": {},
    "ocsf": {},
    "json": {},
}


def page(when: datetime) -> bytes:
    entries = [
        {
            "id": f"e{n}",
            "time": format_time(when),
            "action": value[:40] or "x",
            **dict.fromkeys(FIELDS, value),
        }
        for n, value in enumerate(VALUES)
    ]
    return orjson.dumps(entries)


def source(url: str) -> dict[str, Any]:
    mapping = {
        "action": "action",
        "actor.name": "who",
        "actor.email": "email",
        "actor.id": "uid",
        "actor.user_agent": "agent",
        "target.type": "ttype",
        "target.id": "tid",
        "target.name": "tname",
        "repository": "repo",
        "message": "text",
    }
    return {
        "type": "http_json",
        "vendor": "acme",
        "url": f"{url}/audit/{{organization}}",
        "organizations": ["o"],
        "id_field": "id",
        "time_field": "time",
        "mapping": mapping,
        "initial_lookback_days": 1,
        "lag_s": 0,
        "max_attempts": 1,
    }


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    with Rsyslog(tmp_path_factory.mktemp("rsyslog")) as server:
        yield server


def lines(path: Path) -> list[str]:
    """Records as a Unicode-aware reader splits them (``str.splitlines``: also at \\x0b, \\x0c,
    \\x1c-\\x1e, NEL, U+2028/9), the strictest reader a SIEM's scripts use."""
    return path.read_bytes().decode().splitlines()


async def test_every_value_stays_in_its_field_and_every_event_in_one_record(tmp_path: Path, rsyslog: Rsyslog) -> None:
    out = tmp_path / "out"
    apps = {"cef": f"c{uuid.uuid4().hex[:8]}", "leef": f"l{uuid.uuid4().hex[:8]}"}
    sinks: dict[str, Any] = {
        name: {"type": "file", "format": name, "path": str(out / f"{name}.log"), "batch_max_age_s": 0.05, **extra}
        for name, extra in FORMATS.items()
    }
    port = rsyslog.ports["tcp"]
    sinks["syslog_cef"] = {
        "type": "syslog",
        "host": "127.0.0.1",
        "port": port,
        "format": "cef",
        "app_name": apps["cef"],
    }
    sinks["syslog_leef"] = {
        "type": "syslog",
        "host": "127.0.0.1",
        "port": port,
        "format": "leef",
        "rfc": "3164",
        "framing": "lf",
        "app_name": apps["leef"],
    }
    async with json_vendor(page(datetime.now(UTC) - timedelta(minutes=5))) as url:
        config = {"state_dir": str(tmp_path / "state"), "metrics": {"enabled": False}, "sources": {"h": source(url)}}
        cfg = write_config(tmp_path / "config.yaml", {**config, "sinks": sinks})
        result = await asyncio.to_thread(cli, cfg, "once")
    assert result.returncode == 0, result.stderr
    n = len(VALUES)

    events = [orjson.loads(line) for line in (out / "json.log").read_bytes().split(b"\n") if line]
    assert sorted(e["id"] for e in events) == sorted(f"acme:e{i}" for i in range(n))
    for name in ("ecs", "ocsf"):
        docs = [orjson.loads(line) for line in (out / f"{name}.log").read_bytes().split(b"\n") if line]
        assert len(docs) == n, name

    cef_lines = lines(out / "cef.log")
    assert len(cef_lines) == n and all(line.startswith("CEF:0|acme|") for line in cef_lines)
    for line in cef_lines:
        header, ext = parse_cef(line)
        assert header[6] in ("3", "5") and "Evil" not in header[1:3]
        assert ext["deviceExternalId"] == "h" and ext["cs1"] == "o"  # the fields the event set, unmoved

    for name, delimiter in (("leef", "x09"), ("leef_caret", "^")):
        leef_lines = lines(out / f"{name}.log")
        assert len(leef_lines) == n and all(line.startswith("LEEF:2.0|acme|") for line in leef_lines)
        for line in leef_lines:
            header, attrs = parse_leef(line)
            assert line.split("|")[5] == delimiter  # the header names it; no value can add a "|"
            assert attrs["sourceName"] == "h" and attrs["org"] == "o" and attrs["sev"] in ("3", "5")

    rows = list(csv.reader(io.StringIO((out / "csv.log").read_bytes().decode(), newline="")))
    assert len(rows) == n + 1 and {len(row) for row in rows} == {len(rows[0])}
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows[1:] for cell in row)

    got = await rsyslog.wait_for(2 * n, lambda r: r["app_name"] in apps.values(), timeout=20)
    assert rsyslog.records(lambda r: r["app_name"] not in apps.values()) == [], "a value became a message"
    for record in got:
        line = record["msg"].removeprefix("\ufeff").removeprefix(" ")  # RFC 3164: the space after "TAG:"
        if record["app_name"] == apps["cef"]:
            assert parse_cef(line)[1]["deviceExternalId"] == "h"
        else:
            attrs = parse_leef(line.replace("#011", "\t"))[1]  # rsyslog shows a received tab as #011
            assert attrs["sourceName"] == "h"
