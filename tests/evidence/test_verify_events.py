"""``verify events``: exported events checked stream by stream, each defect named by stream and seq."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from forwarder.cli import main
from forwarder.evidence.chain import START, link
from forwarder.formats import get_formatter
from forwarder.record import record_of
from tests.evidence.test_chain import event


def chained(count: int, org: str = "acme") -> list[dict[str, Any]]:
    head, out = START, []
    for n in range(count):
        one = event(n, org)
        head = link(one, head)
        out.append(one)
    return out


def run(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["verify", "events", "--output", "json", *args])
    return result.exit_code, orjson.loads(result.output)


def ndjson(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def kinds(report: dict[str, Any]) -> list[tuple[str, str, list[int]]]:
    return [(f["kind"], f["stream"], f["seqs"]) for f in report["findings"]]


def test_an_untouched_export_with_duplicates_passes(tmp_path: Path) -> None:
    events = chained(6) + chained(3, "globex")
    code, report = run(str(ndjson(tmp_path / "a.ndjson", events + events[2:4])))  # duplicates: at-least-once
    assert code == 0 and report["ok"], report
    assert {s["stream"]: (s["first"], s["last"], s["duplicates"]) for s in report["streams"]} == {
        "t/acme": (1, 6, 2),
        "t/globex": (1, 3, 0),
    }


def test_one_event_removed_is_named_by_stream_and_seq(tmp_path: Path) -> None:
    events = chained(6) + chained(3, "globex")
    del events[3]  # acme's seq 4
    code, report = run(str(ndjson(tmp_path / "a.ndjson", events)))
    assert code == 1 and kinds(report) == [("missing", "t/acme", [4])]


def test_one_altered_byte_is_named(tmp_path: Path) -> None:
    path = ndjson(tmp_path / "a.ndjson", chained(5))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"action":"x.y"', b'"action":"x.z"')
    path.write_bytes(b"".join(lines))
    code, report = run(str(path))
    assert code == 1 and kinds(report) == [("altered", "t/acme", [2])]  # there, altered: not also "missing"


def test_the_start_of_a_stream_is_checked_when_asked(tmp_path: Path) -> None:
    path = ndjson(tmp_path / "a.ndjson", chained(5)[2:])
    assert run(str(path))[0] == 0  # an export of a later period starts wherever it starts
    code, report = run(str(path), "--from-seq", "1")
    assert code == 1 and kinds(report) == [("missing", "t/acme", [1, 2])]


def test_gzip_splunk_and_syslog_exports_are_read(tmp_path: Path) -> None:
    events = chained(4)
    gz = tmp_path / "a.ndjson.gz"
    gz.write_bytes(gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events[:1])))
    splunk = tmp_path / "splunk.json"
    splunk.write_bytes(orjson.dumps({"preview": False, "result": {"_raw": orjson.dumps(events[1]).decode()}}) + b"\n")
    syslog = tmp_path / "audit.log"
    syslog.write_bytes(
        b"".join(
            b'<110>1 2026-11-24T05:00:00.000Z host audit-forwarder 42 x.y [origin x="a]\\"b"] \xef\xbb\xbf'
            + orjson.dumps(e)
            + b"\n"
            for e in events[2:]
        )
    )
    code, report = run(str(gz), str(splunk), str(syslog), "--from-seq", "1")
    assert code == 0, report
    assert report["streams"][0]["events"] == 4
    syslog.write_bytes(syslog.read_bytes().splitlines(keepends=True)[0])  # the last one lost in transit
    code, report = run(str(gz), str(splunk), str(syslog))
    assert code == 0  # nothing after the last seq seen can be told missing from an export alone
    splunk.unlink()
    code, report = run(str(gz), str(syslog))
    assert code == 1 and kinds(report) == [("missing", "t/acme", [2])]


@pytest.mark.parametrize("name", ["cef", "leef", "csv", "ecs", "ocsf"])
def test_the_links_of_every_other_format_are_checked(tmp_path: Path, name: str) -> None:
    """Formats without the whole event carry the links (docs/formats.md): gaps and order are
    checked from them, in a file and in an RFC 5424 syslog file, the hash not recomputed."""
    formatter = get_formatter(name)
    lines = [formatter(record_of(e, i)).rstrip(b"\r\n") for i, e in enumerate(chained(5), 1)]
    exported = tmp_path / f"a.{name}"
    exported.write_bytes(b"".join(line + b"\n" for line in lines + lines[1:2]))  # one duplicate
    code, report = run(str(exported), "--from-seq", "1")
    assert code == 0, report
    (stream,) = report["streams"]
    assert (stream["first"], stream["last"], stream["duplicates"], stream["links_only"]) == (1, 5, 1, 5)
    syslog = tmp_path / "audit.log"
    header = b"<110>1 2026-11-24T05:00:00.000Z host audit-forwarder 42 x.y - "
    syslog.write_bytes(b"".join(header + line + b"\n" for i, line in enumerate(lines) if i != 2))
    code, report = run(str(syslog), "--from-seq", "1")
    assert code == 1 and kinds(report) == [("missing", stream["stream"], [3])], report


def test_the_text_says_where_each_stream_ends_and_that_the_end_is_unproven(tmp_path: Path) -> None:
    """A truncated export passes (its end cannot be seen): the output gives the last seq and hash
    to compare with `report`'s chain head, and says why."""
    events = chained(4)
    result = CliRunner().invoke(main, ["verify", "events", str(ndjson(tmp_path / "a.ndjson", events[:3]))])
    assert result.exit_code == 0, result.output
    assert f"seq 1 to 3 (hash {events[2]['chain']['hash']})" in result.output
    assert "cannot show what came after its last seq" in result.output
