"""The journaled events' bytes in segment files (``forwarder.journal.segments``): written once,
private, synced before their rows commit, deleted whole once pruned, and a state written before
them (version 2, bytes in the database) still read."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from forwarder.chunks import JournalEntry
from forwarder.journal import DiskFullError, SqliteJournal, StateError, segments
from forwarder.journal.segments import directory_of


def entries(n: int, start: int = 0, size: int = 10) -> list[JournalEntry]:
    return [
        JournalEntry(f"id-{i}", "codacy", 1_700_000_000_000 + i, b'{"id":"id-%d","pad":"%s"}' % (i, b"x" * size))
        for i in range(start, start + n)
    ]


async def opened(path: Path, **kw: object) -> SqliteJournal:
    journal = SqliteJournal(path, **kw)  # type: ignore[arg-type]
    await journal.open()
    return journal


def segment_files(path: Path) -> list[str]:
    return sorted(os.listdir(directory_of(path)))


async def test_event_bytes_are_in_private_segments_not_in_the_database(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(3), {"w": 1})
    assert journal.db.execute("SELECT data, segment FROM chunks").fetchall() == [(b"", 1)]
    assert b'"pad"' not in path.read_bytes() + (path.with_name(path.name + "-wal")).read_bytes()  # ids stay, as columns
    directory = directory_of(path)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [name] = segment_files(path)
    assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    records = await journal.read(0, 10, 1 << 20)
    assert [r.data for r in records] == [e.data for e in entries(3)]
    await journal.close()
    reopened = await opened(path, migrate=False)  # a reader without the lock reads them too
    assert [r.event_id for r in await reopened.read(1, 10, 1 << 20)] == ["id-1", "id-2"]
    await reopened.close()


async def test_a_segment_is_deleted_once_every_sink_has_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "SEGMENT_MAX_BYTES", 100)  # a new segment after each page
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a", "b"])
    for page in range(3):
        await journal.append("src", "org", entries(4, page * 4), {"w": page})
    assert len(segment_files(path)) == 3
    await journal.commit("a", 8)
    assert await journal.prune() == 0  # b has none of them yet
    await journal.commit("b", 6)
    await journal.prune()
    assert len(segment_files(path)) == 2  # the first page's: every sink is past it
    await journal.commit("b", 12)
    await journal.commit("a", 12)
    await journal.prune()
    assert segment_files(path) == []  # the one written to as well: every event in it was delivered
    await journal.append("src", "org", entries(1, 12), {"w": 9})
    assert segment_files(path) == ["00000000000000000013.seg"]
    assert [r.event_id for r in await journal.read(12, 10, 1 << 20)] == ["id-12"]
    await journal.close()


async def test_bytes_no_row_refers_to_are_never_overwritten_and_go_with_their_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that failed after its bytes were written: they stay (a COMMIT that reported
    an error may still be replayed from the WAL at the next start, its rows pointing there) and
    the next write goes after them; a segment no row refers to is deleted when the writer next
    opens."""
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(2), {"w": 1})
    [name] = segment_files(path)
    size = (directory_of(path) / name).stat().st_size

    def failing(*_: object) -> None:
        raise sqlite3.OperationalError("simulated failure inside the append's transaction")

    with monkeypatch.context() as patch:
        patch.setattr("forwarder.journal.cursors.put", failing)
        with pytest.raises(sqlite3.OperationalError):
            await journal.append("src", "org", entries(2, 2, size=1000), {"w": 2})
    failed = (directory_of(path) / name).read_bytes()[size:]
    assert failed == b"\n".join(e.data for e in entries(2, 2, size=1000))  # written and synced, never committed
    await journal.append("src", "org", entries(1, 2), {"w": 3})
    records = await journal.read(0, 10, 1 << 20)
    assert [r.data for r in records] == [e.data for e in entries(2) + entries(1, 2)]
    assert (directory_of(path) / name).read_bytes()[size:] == failed + entries(1, 2)[0].data
    await journal.close()

    stray = directory_of(path) / "00000000000000000099.seg"
    stray.write_bytes(b"never committed")
    reader = await opened(path, migrate=False)
    await reader.close()
    assert stray.exists()  # a reader without the lock never deletes
    journal = await opened(path)
    assert not stray.exists()
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == ["id-0", "id-1", "id-2"]
    await journal.close()


async def test_a_missing_segment_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.append("src", "org", entries(2), {"w": 1})
    await journal.close()
    for name in segment_files(path):
        os.unlink(directory_of(path) / name)
    journal = await opened(path, migrate=False)
    with pytest.raises(StateError, match="restored together"):
        await journal.read(0, 10, 1 << 20)
    await journal.close()


V2_CHUNKS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE chunks (
    first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, source TEXT NOT NULL,
    organization TEXT NOT NULL, journaled_at REAL NOT NULL, bytes INTEGER NOT NULL,
    meta BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE sink_offsets (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


async def test_a_version_2_state_keeps_its_chunks_and_journals_new_ones_in_segments(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(V2_CHUNKS)
    db.execute("INSERT INTO meta VALUES ('state_version', '2')")
    db.execute("INSERT INTO meta VALUES ('head_seq', '2')")
    db.execute("INSERT INTO sink_offsets VALUES ('a', 0)")
    meta = b'[["id-0","id-1"],["codacy","codacy"],[1,2],[null,null],[null,null],[null,null]]'
    db.execute("INSERT INTO chunks VALUES (1, 2, 'src', 'org', 1.5, 11, ?, ?)", (meta, b'{"a":0}\n{"a":1}'))
    db.close()
    with pytest.raises(StateError, match="state version 2 and is migrated"):
        await opened(path, migrate=False)
    journal = await opened(path)
    assert journal.db.execute("SELECT value FROM meta WHERE key='state_version'").fetchone() == ("3",)
    await journal.append("src", "org", entries(1, 5), {"w": 1})
    records = await journal.read(0, 10, 1 << 20)
    assert [(r.seq, r.event_id, r.data) for r in records] == [
        (1, "id-0", b'{"a":0}'),
        (2, "id-1", b'{"a":1}'),
        (3, "id-5", entries(1, 5)[0].data),
    ]
    await journal.commit("a", 3)
    assert await journal.prune() == 3
    assert segment_files(path) == []
    await journal.close()


async def test_pruned_chunks_of_a_segment_still_in_use_are_not_readable(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(3, size=500), {"w": 1})
    await journal.append("src", "org", entries(3, 3, size=500), {"w": 2})
    [name] = segment_files(path)
    segment = directory_of(path) / name
    assert segment.read_bytes().count(b"x" * 500) == 6
    await journal.commit("a", 3)
    assert await journal.prune() == 3
    kept = segment.read_bytes()
    assert kept.count(b"x" * 500) == 3  # the first page's bytes are gone (a hole, or zeros)
    assert b"id-0" not in kept and b"id-3" in kept
    assert [r.event_id for r in await journal.read(3, 10, 1 << 20)] == ["id-3", "id-4", "id-5"]
    await journal.close()


async def test_the_bytes_are_synced_before_their_rows_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    seen: list[int] = []
    fdatasync = os.fdatasync

    def watched(fd: int) -> None:
        fdatasync(fd)
        with sqlite3.connect(path) as other:  # what a crash right now would leave
            seen.append(other.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    monkeypatch.setattr(segments.os, "fdatasync", watched)
    await journal.append("src", "org", entries(2), {"w": 1})
    await journal.append("src", "org", entries(2, 2), {"w": 2})
    assert seen == [0, 1]  # each page's bytes were on disk while its row was not yet committed
    await journal.close()


async def test_a_full_disk_while_writing_is_reported_and_the_next_write_goes_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.append("src", "org", entries(1), {"w": 1})
    pwrite = os.pwrite
    calls = {"n": 0}

    def failing(fd: int, data: bytes, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # the second chunk of the page: the first is already in the file
            raise OSError(errno.ENOSPC, "No space left on device")
        return pwrite(fd, data, offset)

    with monkeypatch.context() as patch:
        patch.setattr(segments.os, "pwrite", failing)
        with pytest.raises(DiskFullError, match="cannot write the journal"):
            await journal.append("src", "org", entries(1500, 1), {"w": 2})  # two chunks
    assert await journal.get_cursor("src", "org") == {"w": 1}
    await journal.append("src", "org", entries(1, 1), {"w": 3})
    [name] = segment_files(path)
    written = b"\n".join(e.data for e in entries(1000, 1))  # the failed page's first chunk, left in place
    assert (directory_of(path) / name).read_bytes() == entries(1)[0].data + written + entries(1, 1)[0].data
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == ["id-0", "id-1"]
    await journal.close()


async def test_a_symlinked_segments_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "00000000000000000001.seg").write_bytes(b"someone else's")
    path.parent.mkdir(mode=0o700)
    directory_of(path).symlink_to(elsewhere)
    with pytest.raises(StateError, match="symbolic link"):
        await opened(path)
    assert (elsewhere / "00000000000000000001.seg").read_bytes() == b"someone else's"
