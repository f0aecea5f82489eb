"""The journaled events' bytes in segment files (``forwarder.journal.segments``): written once,
private, synced before their rows commit, deleted whole once pruned, and a state written before
them (version 2, bytes in the database) still read."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from forwarder.chunks import JournalEntry
from forwarder.journal import DiskFullError, SqliteJournal, StateError, segments
from forwarder.journal import sqlite as sqlite_journal
from forwarder.journal.segments import directory_of
from forwarder.journal.sqlite import SqliteState


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


async def test_a_failed_pages_bytes_are_cut_off_and_stray_segments_go_with_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that failed before its COMMIT: its bytes are cut off again, so retries on a
    full disk do not pile up copies of the page (five retries left five copies before); a
    segment no row refers to is deleted when the writer next opens, never by a reader."""
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(2), {"w": 1})
    [name] = segment_files(path)
    size = (directory_of(path) / name).stat().st_size

    def failing(*_: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr("forwarder.journal.cursors.put", failing)
        for _ in range(5):
            with pytest.raises(DiskFullError):
                await journal.append("src", "org", entries(2, 2, size=1000), {"w": 2})
    assert (directory_of(path) / name).stat().st_size == size
    await journal.append("src", "org", entries(1, 2), {"w": 3})
    records = await journal.read(0, 10, 1 << 20)
    assert [r.data for r in records] == [e.data for e in entries(2) + entries(1, 2)]
    assert (directory_of(path) / name).read_bytes()[size:] == entries(1, 2)[0].data
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


def failing_commit(code: int, message: str) -> Callable[..., AbstractContextManager[None]]:
    """``transaction`` whose COMMIT fails with SQLite's ``code`` after the body ran (rolled
    back, as SQLite does on SQLITE_FULL and SQLITE_IOERR)."""

    @contextmanager
    def transaction(db: sqlite3.Connection, durable: bool = True) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
        error = sqlite3.OperationalError(message)
        error.sqlite_errorcode = code
        raise error

    return transaction


async def test_a_failed_commit_keeps_its_bytes_until_the_writers_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMMIT that reported a full disk or an I/O error may still be replayed at the next
    start (its frames may have reached the WAL), its rows pointing at its bytes: they stay, the
    next write goes after them, and the writer's next start (after SQLite's recovery) drops
    them when nothing covers them."""
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(1), {"w": 1})
    segment = directory_of(path) / segment_files(path)[0]
    size = segment.stat().st_size
    kept = b"\n".join(e.data for e in entries(2, 1, size=1000))
    for code, message in [
        (sqlite3.SQLITE_FULL, "database or disk is full"),
        (sqlite3.SQLITE_IOERR_FSYNC, "disk I/O error"),
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(sqlite_journal, "transaction", failing_commit(code, message))
            with pytest.raises(DiskFullError):
                await journal.append("src", "org", entries(2, 1, size=1000), {"w": 2})
    assert segment.read_bytes()[size:] == kept + kept  # either may come back with its rows pointing there
    await journal.append("src", "org", entries(1, 1), {"w": 3})
    assert segment.read_bytes()[size + 2 * len(kept) :] == entries(1, 1)[0].data
    await journal.close()

    journal = await opened(path)  # SQLite did not replay them: nothing covers those bytes
    data = segment.read_bytes()
    assert b"x" * 1000 not in data
    assert data[:size] == entries(1)[0].data and data.endswith(entries(1, 1)[0].data)
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == ["id-0", "id-1"]
    await journal.close()


async def test_pruned_bytes_a_crash_kept_from_being_punched_go_at_the_writers_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill -9 between a prune's durable commit and its punching: no row refers to those
    bytes any more; the next writer drops them, a reader leaves them."""
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(3, size=500), {"w": 1})
    await journal.append("src", "org", entries(3, 3, size=500), {"w": 2})
    segment = directory_of(path) / segment_files(path)[0]
    await journal.commit("a", 3)
    with monkeypatch.context() as patch:
        patch.setattr(segments.SegmentStore, "released", lambda self, chunks: None)  # the crash
        assert await journal.prune() == 3
    await journal.close()
    assert b"id-0" in segment.read_bytes()
    reader = await opened(path, migrate=False)
    await reader.close()
    assert b"id-0" in segment.read_bytes()
    journal = await opened(path)
    kept = segment.read_bytes()
    assert b"id-0" not in kept and kept.count(b"x" * 500) == 3
    assert [r.event_id for r in await journal.read(3, 10, 1 << 20)] == ["id-3", "id-4", "id-5"]
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


async def test_a_full_disk_while_writing_is_reported_and_the_partial_write_cut_off(
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
        with pytest.raises(DiskFullError, match=r"cannot write the journal's segments in .*: No space left on device"):
            await journal.append("src", "org", entries(1500, 1), {"w": 2})  # two chunks
    assert await journal.get_cursor("src", "org") == {"w": 1}
    [name] = segment_files(path)
    assert (directory_of(path) / name).read_bytes() == entries(1)[0].data  # no COMMIT was tried: cut off
    await journal.append("src", "org", entries(1, 1), {"w": 3})
    assert (directory_of(path) / name).read_bytes() == entries(1)[0].data + entries(1, 1)[0].data
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == ["id-0", "id-1"]
    await journal.close()


@pytest.mark.parametrize(
    ("fails", "error", "message"),
    [
        ("fsync", OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        ("open", OSError(errno.EMFILE, "Too many open files"), "Too many open files"),
    ],
)
async def test_a_segment_that_cannot_be_created_at_rollover_is_retried_by_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str, error: OSError, message: str
) -> None:
    """The failed creation left the store as it was; before, every later write failed with
    'Bad file descriptor' until a restart."""
    monkeypatch.setattr(segments, "SEGMENT_MAX_BYTES", 100)  # a new segment after each page
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(4), {"w": 1})
    real = getattr(os, fails)
    left = {"n": 1}

    def once(*args: Any, **kwargs: Any) -> Any:
        if left["n"] and (fails == "fsync" or str(args[0]).endswith(".seg")):  # the new segment's
            left["n"] -= 1
            raise error
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(segments.os, fails, once)
        with pytest.raises((DiskFullError, StateError), match=message):
            await journal.append("src", "org", entries(4, 4), {"w": 2})
        await journal.append("src", "org", entries(4, 4), {"w": 2})
    assert await journal.get_cursor("src", "org") == {"w": 2}
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == [f"id-{i}" for i in range(8)]
    await journal.close()
    journal = await opened(path)
    assert [r.event_id for r in await journal.read(0, 10, 1 << 20)] == [f"id-{i}" for i in range(8)]
    await journal.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_segments_read_keep_a_bounded_number_of_descriptors_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "SEGMENT_MAX_BYTES", 100)  # a new segment after each page
    path = tmp_path / "journal.sqlite3"
    journal = await opened(path)
    await journal.register_sinks(["behind"])  # keeps every segment
    before = open_fds()
    for page in range(40):
        await journal.append("src", "org", entries(4, page * 4), {"w": page})
        assert [r.seq for r in await journal.read(page * 4, 100, 1 << 20)] == list(range(page * 4 + 1, page * 4 + 5))
    assert len(segment_files(path)) == 40
    kept = 9  # segments.READERS (8) and the writer's own, which reads the segment it writes
    assert open_fds() - before <= kept
    assert len(await journal.read(0, 1000, 1 << 20)) == 160  # every segment again, from the start
    assert open_fds() - before <= kept
    await journal.close()


def test_a_short_read_is_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = SqliteState(tmp_path / "journal.sqlite3")
    state.open()
    state.append("src", "org", entries(3, size=100), {"w": 1})
    pread = os.pread
    monkeypatch.setattr(segments.os, "pread", lambda fd, n, at: pread(fd, min(n, 7), at))
    state.events.forget_decoded()
    assert [r.data for r in state.read(0, 10, 1 << 20)] == [e.data for e in entries(3, size=100)]
    state.close()


def test_a_prune_syncs_the_segment_it_punched_and_a_failed_punch_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "SEGMENT_MAX_BYTES", 4000)  # three pages of three events in the first segment
    state = SqliteState(tmp_path / "journal.sqlite3")
    state.open()
    state.register_sinks(["a"])
    for page in range(4):
        state.append("src", "org", entries(3, page * 3, size=500), {"w": page})
    first, _ = segment_files(state.path)
    synced: list[int] = []
    fdatasync = os.fdatasync

    def watched(fd: int) -> None:
        synced.append(fd)
        fdatasync(fd)

    monkeypatch.setattr(segments.os, "fdatasync", watched)
    state.commit("a", 3)
    assert state.prune() == 3
    assert len(synced) == 1  # the punched segment, once, after the prune committed
    assert b"id-0" not in (directory_of(state.path) / first).read_bytes()

    def refused(*_: object, **__: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segments, "open_state_file_at", refused)
    state.commit("a", 6)
    with capture_logs() as logs:
        assert state.prune() == 3
    [warning] = [line for line in logs if line["log_level"] == "warning"]
    assert "cannot punch pruned events" in warning["event"]
    assert warning["segment"] == str(directory_of(state.path) / first) and warning["error"] == "Input/output error"
    assert "id-3" not in str(warning)
    state.close()


def test_a_wider_segments_directory_is_narrowed_by_the_writer_and_state_dir_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite3"
    state = SqliteState(path)
    state.open()
    state.append("src", "org", entries(1), {"w": 1})
    state.close()
    directory = directory_of(path)
    os.chmod(directory, 0o777)
    reader = SqliteState(path, migrate=False)
    reader.open()
    assert [r.event_id for r in reader.read(0, 10, 1 << 20)] == ["id-0"]
    reader.close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777  # a reader changes nothing
    synced: list[Path] = []
    monkeypatch.setattr(segments, "fsync_directory", synced.append)
    with capture_logs() as logs:
        state = SqliteState(path)
        state.open()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert any("narrowed to 0700" in line["event"] and line["mode"] == "0777" for line in logs)
    assert synced == [tmp_path]  # its name durable, though an earlier start made it
    state.close()


async def test_a_segments_directory_swapped_after_its_checks_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are opened relative to the directory checked, not by its path again: a symlink
    put in its place right after the check (a race) cannot make the writer write elsewhere."""
    monkeypatch.setattr(segments, "SEGMENT_MAX_BYTES", 100)
    path = tmp_path / "state" / "journal.sqlite3"
    path.parent.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    journal = await opened(path)
    await journal.append("src", "org", entries(4), {"w": 1})
    directory = directory_of(path)
    lstat = os.lstat

    checks = {"n": 0}

    def swapping(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        info = lstat(target, *args, **kwargs)
        if isinstance(target, Path) and target == directory:
            checks["n"] += 1
            if checks["n"] == 2:  # right after a check that it is a directory, not a symlink
                directory.rename(tmp_path / "moved")
                directory.symlink_to(elsewhere)
        return info

    monkeypatch.setattr(segments.os, "lstat", swapping)
    try:
        await journal.append("src", "org", entries(4, 4), {"w": 2})
    except StateError:
        pass  # refusing is fine too; writing through the symlink is not
    finally:
        monkeypatch.setattr(segments.os, "lstat", lstat)
    await journal.close()
    assert os.listdir(elsewhere) == []


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
