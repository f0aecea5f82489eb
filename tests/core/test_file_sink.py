"""File sink: NDJSON and CSV, rotation with gzip, file mode, path templates."""

from __future__ import annotations

import csv
import gzip
import os
import stat
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from forwarder.formats.csv import COLUMNS
from forwarder.record import Record
from sinks import file as file_sink
from sinks.base import FatalSinkError, RetryableError
from sinks.file import FileSink
from sinks.file_config import FileSinkConfig


def record(i: int, org: str = "gh/acme") -> Record:
    event = {
        "id": f"e{i}",
        "time": "2026-01-01T00:00:00.000Z",
        "vendor": "codacy",
        "source": "src",
        "organization": org,
        "actor": {"email": "a@b.c"},
        "action": "user.login",
        "message": 'x, "y"\nz',
    }
    return Record(i, f"e{i}", "src", org, 0, orjson.dumps(event), "codacy")


async def test_ndjson_per_organization_with_mode_0640(tmp_path: Path) -> None:
    sink = FileSink("f", FileSinkConfig(type="file", path=str(tmp_path / "{vendor}" / "{organization}.ndjson")))
    await sink.send([record(1), record(2, "gl/other"), record(3)])
    await sink.close()
    acme = tmp_path / "codacy" / "gh_acme.ndjson"
    lines = acme.read_bytes().splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == ["e1", "e3"]
    assert (tmp_path / "codacy" / "gl_other.ndjson").exists()
    assert stat.S_IMODE(acme.stat().st_mode) == 0o640


async def test_csv_has_header_and_escapes(tmp_path: Path) -> None:
    sink = FileSink("f", FileSinkConfig(type="file", format="csv", path=str(tmp_path / "out.csv")))
    await sink.send([record(1)])
    await sink.close()
    sink = FileSink("f", FileSinkConfig(type="file", format="csv", path=str(tmp_path / "out.csv")))
    await sink.send([record(2)])
    await sink.close()
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == COLUMNS
    content = (tmp_path / "out.csv").read_bytes()  # RFC 4180 2.1: every record ends in CRLF
    assert content.count(b"\r\n") == 3 and content.endswith(b"\r\n") and b'"x, ""y""\nz"' in content
    assert len(rows) == 3  # one header, even across restarts
    assert rows[1][COLUMNS.index("message")] == 'x, "y"\nz'
    assert rows[2][COLUMNS.index("id")] == "e2"


@pytest.mark.parametrize("level", [1, 6, 9])
async def test_rotation_by_size_gzips_the_old_file(tmp_path: Path, level: int) -> None:
    cfg = FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson"), rotate_max_bytes=200, compress_level=level)
    sink = FileSink("f", cfg)
    for i in range(10):
        await sink.send([record(i)])
    await sink.close()
    rotated = sorted(tmp_path.glob("out.ndjson.*.gz"))
    assert rotated
    ids = []
    for path in rotated:
        ids += [orjson.loads(line)["id"] for line in gzip.decompress(path.read_bytes()).splitlines()]
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    ids += [orjson.loads(line)["id"] for line in (tmp_path / "out.ndjson").read_bytes().splitlines()]
    assert sorted(ids) == sorted(f"e{i}" for i in range(10))
    assert not list(tmp_path.glob("*.partial"))


def lines_of(ids: list[str]) -> bytes:
    return b"".join(orjson.dumps({"id": i}) + b"\n" for i in ids)


async def test_what_a_crash_left_of_a_rotation_is_finished_at_the_next_start(tmp_path: Path) -> None:
    """``_compress`` deletes a rotated file only once its gzip has its final name; a crash can
    come before the gzip was begun, while it was written, or between its rename and the delete."""
    rotated = {stamp: tmp_path / f"out.ndjson.20261124T{stamp}Z" for stamp in ("090000", "100000", "110000")}
    for stamp, path in rotated.items():
        path.write_bytes(lines_of([f"{stamp}-{i}" for i in range(50)]))
    # 09:00 was never begun; 10:00 was cut short; 11:00 was finished but not yet deleted
    (tmp_path / "out.ndjson.20261124T100000Z.gz.partial").write_bytes(b"\x1f\x8b truncated")
    (tmp_path / "out.ndjson.20261124T110000Z.gz").write_bytes(gzip.compress(rotated["110000"].read_bytes()))
    orphan = tmp_path / "out.ndjson.20261124T080000Z.gz.partial"  # its source is gone: nothing to redo
    orphan.write_bytes(b"\x1f\x8b")
    sink = FileSink("f", FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson")))
    await sink.send([record(1)])
    await sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ndjson"] + [f"{p.name}.gz" for p in rotated.values()]
    for stamp, path in rotated.items():
        lines = gzip.decompress(Path(f"{path}.gz").read_bytes()).splitlines()
        assert [orjson.loads(line)["id"] for line in lines] == [f"{stamp}-{i}" for i in range(50)]
    assert [orjson.loads(line)["id"] for line in (tmp_path / "out.ndjson").read_bytes().splitlines()] == ["e1"]


async def test_check_tries_the_directory_leaves_nothing_and_names_the_setting(tmp_path: Path) -> None:
    template = tmp_path / "logs" / "{source}" / "{organization}.ndjson"
    sink = FileSink("f", FileSinkConfig(type="file", path=str(template)))
    assert (await sink.check()).startswith(f"sinks.f.path: created {tmp_path / 'logs'}, a file in")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "logs").mkdir()
    assert await sink.check() == f"sinks.f.path: created and removed a file in {tmp_path / 'logs'}"
    assert list((tmp_path / "logs").iterdir()) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(FatalSinkError, match=rf"sinks\.f\.path .*: cannot create directory {blocker}: File exists"):
        await FileSink("f", FileSinkConfig(type="file", path=str(blocker / "x.ndjson"))).check()
    with pytest.raises(FatalSinkError, match=r"sinks\.f\.path .*: cannot create directory /proc/af-out: No such file"):
        await FileSink("f", FileSinkConfig(type="file", path="/proc/af-out/{organization}.x")).check()


@pytest.mark.parametrize("mode", [640, 0o1200, 0o444, -1])
def test_a_mode_that_is_not_owner_writable_permission_bits_is_refused(mode: int) -> None:
    with pytest.raises(ValidationError, match="quoted octal string"):
        FileSinkConfig(type="file", path="/tmp/x", mode=mode)
    assert FileSinkConfig(type="file", path="/tmp/x", mode="0640").mode == 0o640


async def test_a_write_that_failed_halfway_leaves_no_unreadable_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full or a size limit halfway through a batch: the retry must not glue its first event
    onto the fragment left behind (unit: the failing write is stubbed)."""
    from sinks import file as file_module

    sink = FileSink("f", FileSinkConfig(type="file", path=str(tmp_path / "out.ndjson")))
    await sink.send([record(1)])
    real = file_module._write_all

    def half_then_fail(handle: Any, data: bytes) -> None:
        real(handle, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_module, "_write_all", half_then_fail)
    # retried, and the operator told which file and why (a write's error names no file: "[Errno 28]" alone)
    with pytest.raises(RetryableError, match=r"file sink 'f' cannot write .*out\.ndjson: No space left on device"):
        await sink.send([record(2), record(3)])
    monkeypatch.setattr(file_module, "_write_all", real)
    await sink.send([record(2), record(3)])  # the delivery layer's retry
    await sink.close()
    # every line reads (a whole line the failed write got out comes again: a duplicate, same id)
    ids = [orjson.loads(line)["id"] for line in (tmp_path / "out.ndjson").read_bytes().splitlines()]
    assert ids[0] == "e1" and ids[-2:] == ["e2", "e3"] and set(ids) == {"e1", "e2", "e3"}


async def test_a_line_cut_by_a_crash_is_dropped_before_the_batch_is_written_again(tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    out.write_bytes(orjson.dumps({"id": "e0"}) + b"\n" + b'{"schema_version":"1.0","id":"e1","ti')
    sink = FileSink("f", FileSinkConfig(type="file", path=str(out)))
    await sink.send([record(1)])
    await sink.close()
    assert [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()] == ["e0", "e1"]


@pytest.mark.parametrize("organization", ["..", ".", "x" * 300])
async def test_an_organization_name_never_leaves_the_directory_or_fails_the_write(
    tmp_path: Path, organization: str
) -> None:
    sink = FileSink("f", FileSinkConfig(type="file", path=str(tmp_path / "orgs" / "{organization}" / "events.ndjson")))
    await sink.send([record(1, organization)])
    await sink.close()
    (written,) = (tmp_path / "orgs").glob("*/events.ndjson")
    assert written.parent.parent == tmp_path / "orgs" and len(written.parent.name.encode()) <= 200


async def test_a_csv_write_that_failed_halfway_leaves_every_row_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV rows hold line feeds inside quoted fields: what a failed write got out is taken back
    whole, not cut at a line feed (unit: the failing write is stubbed)."""
    from sinks import file as file_module

    out = tmp_path / "out.csv"
    sink = FileSink("f", FileSinkConfig(type="file", format="csv", path=str(out)))
    await sink.send([record(1)])
    real = file_module._write_all

    def half_then_fail(handle: Any, data: bytes) -> None:
        real(handle, data[: data.index(b"\n") + 1])  # up to the line feed inside e2's message
        raise OSError(27, "File too large")

    monkeypatch.setattr(file_module, "_write_all", half_then_fail)
    with pytest.raises(RetryableError, match="File too large"):
        await sink.send([record(2), record(3)])
    monkeypatch.setattr(file_module, "_write_all", real)
    await sink.send([record(2), record(3)])
    await sink.close()
    rows = list(csv.DictReader(out.read_text().splitlines(keepends=True)))
    assert [row["id"] for row in rows] == ["e1", "e2", "e3"]


async def test_a_name_that_fits_a_file_name_is_kept_as_it_is(tmp_path: Path) -> None:
    """Only names too long for a file name (with rotation's suffix) are bounded: the others keep
    the paths earlier releases wrote to."""
    sink = FileSink("f", FileSinkConfig(type="file", path=str(tmp_path / "{organization}.ndjson")))
    await sink.send([record(1, "o" * 220)])
    await sink.close()
    assert (tmp_path / ("o" * 220 + ".ndjson")).exists()


async def test_new_names_and_rotation_renames_are_made_durable_before_send_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's fsync does not make its name durable: without its directory's fsync a power cut
    after the offset moved could lose the new file, or bring the rotated one back at its old name."""
    synced: list[tuple[Path, list[str]]] = []  # each directory fsync, with what the directory held then
    monkeypatch.setattr(file_sink, "fsync_directory", lambda d: synced.append((d, sorted(os.listdir(d)))))
    out = tmp_path / "new" / "out.ndjson"
    sink = FileSink("f", FileSinkConfig(type="file", path=str(out), rotate_max_bytes=10, compress_rotated=False))
    await sink.send([record(1)])
    assert synced == [(tmp_path, ["new"]), (out.parent, ["out.ndjson"])]
    synced.clear()
    await sink.send([record(2)])  # the file is over 10 bytes: rotated first
    rotated = next(name for name in os.listdir(out.parent) if name != "out.ndjson")
    assert synced == [(out.parent, [rotated]), (out.parent, ["out.ndjson", rotated])]
    await sink.close()


async def test_fsync_false_gives_up_the_directory_fsyncs_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(file_sink, "fsync_directory", synced.append)
    cfg = FileSinkConfig(
        type="file", path=str(tmp_path / "out.ndjson"), rotate_max_bytes=10, compress_rotated=False, fsync=False
    )
    sink = FileSink("f", cfg)
    await sink.send([record(1)])
    await sink.send([record(2)])
    await sink.close()
    assert synced == [] and len(list(tmp_path.iterdir())) == 2


async def test_mode_is_what_new_files_and_directories_get_whatever_the_umask(tmp_path: Path) -> None:
    """docs: `mode` is the permission bits of new files. os.open's mode passes through the umask,
    so a group-writable '0660' for a shared ingest group came out 0640 under systemd's umask 022."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "new" / "out.ndjson"
        cfg = FileSinkConfig(type="file", path=str(path), mode="0660", rotate_max_bytes=200)
        sink = FileSink("f", cfg)
        for i in range(4):
            await sink.send([record(i)])
        await sink.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o770
    rotated = list(path.parent.glob("out.ndjson.*.gz"))
    assert rotated and all(stat.S_IMODE(p.stat().st_mode) == 0o660 for p in rotated)


async def test_rotation_by_age_counts_from_the_last_rotation_across_a_restart(tmp_path: Path) -> None:
    """rotate_max_age_s: a file older than this is rotated. The age was counted from this
    process's open, so a daemon restarted more often than rotate_max_age_s never rotated by age."""
    path = tmp_path / "out.ndjson"
    path.write_bytes(b'{"id": "old"}\n')  # started two days ago, at the last rotation
    two_days_ago = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 2 * 86_400))
    (tmp_path / f"out.ndjson.{two_days_ago}.gz").write_bytes(gzip.compress(b'{"id": "older"}\n'))
    sink = FileSink("f", FileSinkConfig(type="file", path=str(path), rotate_max_age_s=86_400))
    await sink.send([record(1)])
    await sink.close()
    assert [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()] == ["e1"]
    assert len(list(tmp_path.glob("out.ndjson.*.gz"))) == 2


async def test_a_file_rotated_recently_is_not_rotated_again_at_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(b'{"id": "old"}\n')
    an_hour_ago = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3_600))
    (tmp_path / f"out.ndjson.{an_hour_ago}.gz").write_bytes(gzip.compress(b'{"id": "older"}\n'))
    sink = FileSink("f", FileSinkConfig(type="file", path=str(path), rotate_max_age_s=86_400))
    await sink.send([record(1)])
    await sink.close()
    assert [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()] == ["old", "e1"]
