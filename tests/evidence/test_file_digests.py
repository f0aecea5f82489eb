"""File-sink digests and ``verify files``: untouched output passes; each kind of tampering is
named exactly and fails the run."""

from __future__ import annotations

import asyncio
import base64
import gzip
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from forwarder.cli import main
from forwarder.event import canonical_json
from forwarder.evidence import digest
from forwarder.evidence.keys import generate, load_private
from forwarder.record import record_of
from sinks.file import FileSink
from sinks.file_config import FileSinkConfig
from tests.evidence.test_verify_events import chained


def verify(directory: Path, *public: Path) -> tuple[int, dict[str, Any]]:
    keys = [arg for key in public for arg in ("--public-key", str(key))]
    result = CliRunner().invoke(main, ["verify", "files", str(directory), *keys, "--output", "json"])
    return result.exit_code, orjson.loads(result.output)


def kinds(report: dict[str, Any]) -> list[str]:
    return [f["kind"] for f in report["findings"]]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A file sink's output: rotated (gzipped) files, an open one, three digests."""
    base = tmp_path_factory.mktemp("file-digests")
    private, public = base / "evidence.key", base / "evidence.pub"
    generate(private, public)
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    out = base / "out"
    config = FileSinkConfig.model_validate(
        {
            "type": "file",
            "path": str(out / "{organization}.ndjson"),
            "rotate_max_bytes": 1500,
            "evidence": {"signing_key_file": str(private)},
        }
    )
    records = [record_of(e, i) for i, e in enumerate(chained(12) + chained(4, "globex"), 1)]

    async def run() -> None:
        sink = FileSink("archive", config)
        await sink.start()
        assert sink.digests is not None
        for i in range(0, len(records), 3):
            await sink.send(records[i : i + 3])
            if i % 6 == 0:
                await asyncio.to_thread(sink.digests.write)
        await sink.close()  # the last digest, covering the open files

    asyncio.run(run())
    return out, public, private


@pytest.fixture
def copy(written: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    shutil.copytree(written[0], tmp_path / "out")
    return tmp_path / "out"


def rotated(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".gz"))


def holding(directory: Path, seq: int) -> Path:
    """The rotated acme file holding that seq: one in the middle of the stream, so its loss is a gap."""
    for path in rotated(directory):
        if path.name.startswith("acme") and f'"seq":{seq},'.encode() in gzip.decompress(path.read_bytes()):
            return path
    raise AssertionError(f"no rotated file holds seq {seq}")


def digests(directory: Path) -> list[Path]:
    return sorted((directory / "_digests").iterdir())


def test_untouched_output_passes(written: tuple[Path, Path, Path]) -> None:
    out, public, _ = written
    assert len(rotated(out)) >= 3 and len(digests(out)) >= 3
    code, report = verify(out, public)
    assert code == 0, report
    assert report["streams"] == {"t/acme": {"first": 1, "last": 12}, "t/globex": {"first": 1, "last": 4}}


def test_a_deleted_file_is_named(copy: Path, written: tuple[Path, Path, Path]) -> None:
    victim = holding(copy, 5)
    victim.unlink()
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report)[0] == "missing" and victim.name[:-3] in report["findings"][0]["detail"]
    assert set(kinds(report)) == {"missing", "chain_gap"}


def test_a_deleted_first_file_names_the_seqs_it_held(copy: Path, written: tuple[Path, Path, Path]) -> None:
    """The first file of a stream leaves no gap between what remains: its finding itself must
    say which events went with it."""
    victim = holding(copy, 1)
    held = [orjson.loads(line)["chain"]["seq"] for line in gzip.decompress(victim.read_bytes()).splitlines()]
    victim.unlink()
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report) == ["missing"], report
    finding = report["findings"][0]
    assert finding["stream"] == "t/acme" and finding["seqs"] == held, finding
    assert finding["detail"].endswith(f"it held t/acme seq 1-{held[-1]}")


def test_one_altered_byte_is_named(copy: Path, written: tuple[Path, Path, Path]) -> None:
    victim = holding(copy, 5)
    content = bytearray(gzip.decompress(victim.read_bytes()))
    content[10] ^= 1
    victim.write_bytes(gzip.compress(bytes(content)))
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report) == ["altered", "chain_gap"], report
    assert victim.name[:-3] in report["findings"][0]["detail"]


def test_a_deleted_and_an_altered_event_are_named_by_stream_and_seq(
    copy: Path, written: tuple[Path, Path, Path]
) -> None:
    """The digest vouches for the whole file; verify also says which events changed in it."""
    victim = holding(copy, 5)
    lines = gzip.decompress(victim.read_bytes()).split(b"\n")
    index = next(i for i, line in enumerate(lines) if b'"seq":5,' in line)
    del lines[index]
    lines[0] = lines[0].replace(b'"outcome":"success"', b'"outcome":"failure"', 1)
    assert b'"outcome":"failure"' in lines[0]
    first_seq = orjson.loads(lines[0])["chain"]["seq"]
    victim.write_bytes(gzip.compress(b"\n".join(lines)))
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report) == ["altered", "chain_gap"], report
    finding = report["findings"][0]
    assert finding["stream"] == "t/acme" and finding["seqs"] == sorted({first_seq, 5})
    assert "t/acme seq 5 missing" in finding["detail"]
    assert f"line 1 (seq {first_seq}) altered" in finding["detail"]


def test_a_duplicated_and_a_reordered_event_are_named_and_none_called_missing(
    copy: Path, written: tuple[Path, Path, Path]
) -> None:
    """An event repeated or two swapped after the digest: the file is not what the sink wrote
    (exit 1), and the finding says which lines, so nobody hunts for a changed or lost event."""
    victim = holding(copy, 5)
    lines = gzip.decompress(victim.read_bytes()).split(b"\n")[:-1]
    assert len(lines) >= 2
    lines.insert(1, lines[0])  # a duplicate of the first event, right after it
    lines[-1], lines[-2] = lines[-2], lines[-1]  # the last two events swapped
    seqs = [orjson.loads(line)["chain"]["seq"] for line in lines]
    victim.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines)))
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report)[0] == "altered", report
    finding = report["findings"][0]
    assert finding["stream"] == "t/acme" and "missing" not in finding["detail"], finding
    assert f"line 2 (seq {seqs[0]}) a duplicate of an intact event" in finding["detail"]
    assert f"line {len(lines)} (seq {seqs[-1]}) out of order" in finding["detail"]


def test_a_duplicate_inserted_in_the_open_file_names_no_event_missing(
    copy: Path, written: tuple[Path, Path, Path]
) -> None:
    """The open file's digest vouches for a prefix; a line inserted pushes listed events past it,
    and they are still there: only the duplicate is named."""
    victim = copy / "acme.ndjson"
    lines = victim.read_bytes().split(b"\n")[:-1]
    assert lines, "the fixture leaves events in the open file"
    lines.insert(0, lines[0])
    victim.write_bytes(b"".join(line + b"\n" for line in lines))
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report) == ["altered"], report
    detail = report["findings"][0]["detail"]
    seq = orjson.loads(lines[0])["chain"]["seq"]
    assert "missing" not in detail and f"line 2 (seq {seq}) a duplicate of an intact event" in detail, detail


def test_the_newest_digest_is_named_since_its_deletion_cannot_be_seen(
    copy: Path, written: tuple[Path, Path, Path]
) -> None:
    """Deleting the newest digest leaves a valid chain: verify cannot fail it, so it says which
    digest it ends at and when that was written, for the auditor to hold against the interval."""
    *_, before, newest = digests(copy)
    newest.unlink()
    code, report = verify(copy, written[1])
    assert code == 0 and report["newest_digest"]["location"] == before.name, report
    body = orjson.loads(before.read_bytes())["body"]
    assert report["newest_digest"]["to"] == body["to"]
    text = CliRunner().invoke(main, ["verify", "files", str(copy), "--public-key", str(written[1])]).output
    assert f"newest digest: {before.name}, written {body['to']}" in text and "cannot be seen" in text


def test_a_moved_file_is_named(copy: Path, written: tuple[Path, Path, Path]) -> None:
    victim = holding(copy, 5)
    victim.rename(copy / "elsewhere.ndjson.20200101T000000Z.gz")
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report) == ["moved"], report
    assert "elsewhere.ndjson.20200101T000000Z" in report["findings"][0]["detail"]


def test_a_file_outside_every_digest_is_named(copy: Path, written: tuple[Path, Path, Path]) -> None:
    (copy / "acme.ndjson.20200101T000000Z").write_bytes(b'{"forged":true}\n')
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report) == ["unlisted"], report


def test_reordered_digests_are_named(copy: Path, written: tuple[Path, Path, Path]) -> None:
    first, second = digests(copy)[:2]
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    code, report = verify(copy, written[1])
    assert code == 1 and "digest_moved" in kinds(report) and "digest_link" in kinds(report), report


def test_a_swapped_signature_is_named(copy: Path, written: tuple[Path, Path, Path]) -> None:
    first, second = digests(copy)[:2]
    one, two = orjson.loads(first.read_bytes()), orjson.loads(second.read_bytes())
    one["signature"] = two["signature"]
    first.write_bytes(orjson.dumps(one))
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report)[0] == "digest_signature" and first.name in report["findings"][0]["detail"]


def test_a_digest_forged_with_another_key_is_named(
    copy: Path, written: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    generate(tmp_path / "other.key", tmp_path / "other.pub")
    other = load_private(tmp_path / "other.key")
    newest = digests(copy)[-1]
    body, _ = digest.parse(newest.read_bytes())
    forged = digest.build(
        sink="archive",
        kind="file",
        start=_time(body["from"]),
        end=_time(body["to"]),
        listings=[],
        previous=body["previous"],
        key=other,
    )
    newest.write_bytes(forged)
    code, report = verify(copy, written[1])
    assert code == 1 and kinds(report)[0] == "digest_signature"
    assert "signed by another key" in report["findings"][0]["detail"]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_after_a_key_rotation_both_public_keys_verify_the_period(
    copy: Path, written: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    generate(tmp_path / "new.key", tmp_path / "new.pub")
    newest = digests(copy)[-1]
    body, _ = digest.parse(newest.read_bytes())
    resigned = digest.build(
        sink="archive",
        kind="file",
        start=_time(body["from"]),
        end=_time(body["to"]),
        listings=[],
        previous=body["previous"],
        key=load_private(tmp_path / "new.key"),
    )
    doc = orjson.loads(resigned)
    doc["body"]["objects"] = body["objects"]  # the same listing, signed by the new key
    doc["signature"] = base64.b64encode(load_private(tmp_path / "new.key").sign(canonical_json(doc["body"]))).decode()
    newest.write_bytes(orjson.dumps(doc))
    assert verify(copy, written[1])[0] == 1  # the old key alone does not vouch for the new digest
    code, report = verify(copy, written[1], tmp_path / "new.pub")
    assert code == 0, report


def test_a_digest_is_written_every_interval_even_when_nothing_was(tmp_path: Path) -> None:
    generate(tmp_path / "k", tmp_path / "k.pub")
    config = FileSinkConfig.model_validate(
        {
            "type": "file",
            "path": str(tmp_path / "out" / "{organization}.ndjson"),
            "evidence": {"signing_key_file": str(tmp_path / "k"), "digest_interval_s": 0.05},
        }
    )

    async def idle() -> None:
        sink = FileSink("archive", config)
        await sink.start()
        while not (tmp_path / "out" / "_digests").is_dir() or len(digests(tmp_path / "out")) < 3:
            await asyncio.sleep(0.05)
        await sink.close()

    asyncio.run(idle())
    bodies = [digest.parse(p.read_bytes())[0] for p in digests(tmp_path / "out")]
    assert all(body["objects"] == [] for body in bodies)
    assert bodies[0]["previous"] is None and all(b["previous"]["location"] for b in bodies[1:])
    code, report = verify(tmp_path / "out", tmp_path / "k.pub")
    assert code == 0 and report["digests"] == len(bodies), report


def test_a_listing_names_the_exact_seqs_an_object_holds() -> None:
    """A batch split across two hourly partitions interleaves seqs: 3 and 5 here, 4 elsewhere.
    Were 3 to 5 claimed, losing the object with 4 would leave no gap in the chain's coverage."""
    listing = digest.Listing("a", "0" * 64, 0)
    for seq in (3, 5, 6, 7):
        listing.add_event("t/acme", seq, f"p{seq}", f"h{seq}", None)
    chain = listing.as_dict()["chains"]["t/acme"]
    assert chain == {"first": 3, "last": 7, "first_prev": "p3", "last_hash": "h7", "seqs": [[3, 3], [5, 7]]}
