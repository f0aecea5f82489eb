"""State files are private: state_dir 0700 and every file in it 0600 whatever the umask, no
symlink or other user's file accepted, and pruned events gone from the file's bytes."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from forwarder.chunks import JournalEntry
from forwarder.journal import SqliteJournal, StateError
from forwarder.journal.segments import directory_of
from forwarder.state_files import make_state_dir

MARKER = b"pruned-marker-7f3a9c"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(state: Path) -> dict[str, int]:
    """Every file's mode, and the segments directory's (its files: ``segments/*``)."""
    found = {path.name: mode(path) for path in state.iterdir()}
    segments = state / "journal.sqlite3-segments"
    if segments.is_dir():
        kinds = {mode(path) for path in segments.iterdir()}
        if kinds:  # one mode for all, or none that matches
            found["segments/*"] = kinds.pop() if len(kinds) == 1 else -1
    return found


PRIVATE = {
    "journal.sqlite3": 0o600,
    "journal.sqlite3-wal": 0o600,
    "journal.sqlite3-shm": 0o600,
    "journal.sqlite3-segments": 0o700,  # the events' bytes (forwarder.journal.segments)
    "segments/*": 0o600,
}


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def entries(n: int, start: int = 0) -> list[JournalEntry]:
    return [
        JournalEntry(f"id-{i}", "codacy", 1_700_000_000_000 + i, b'{"id":"id-%d","secret":"%s-%d"}' % (i, MARKER, i))
        for i in range(start, start + n)
    ]


async def test_state_dir_and_every_journal_file_are_private(tmp_path: Path, umask: int) -> None:
    state = tmp_path / "state"
    journal = SqliteJournal(state / "journal.sqlite3")
    await journal.open()
    await journal.append("src", "org", entries(10), {"w": 1})
    assert mode(state) == 0o700
    assert modes(state) == PRIVATE
    journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await journal.close()  # the last connection deletes -wal and -shm: the next open makes new ones
    assert not (state / "journal.sqlite3-wal").exists()
    journal = SqliteJournal(state / "journal.sqlite3")
    await journal.open()
    await journal.append("src", "org", entries(10, 10), {"w": 2})
    assert modes(state) == PRIVATE
    await journal.close()


async def test_files_an_older_release_left_readable_are_narrowed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    journal = SqliteJournal(state / "journal.sqlite3")
    await journal.open()
    await journal.append("src", "org", entries(3), {"w": 1})
    await journal.close()
    (state / "journal.sqlite3").chmod(0o644)
    (state / "journal.sqlite3-wal").write_bytes(b"")  # what a crash leaves beside it
    (state / "journal.sqlite3-wal").chmod(0o666)
    journal = SqliteJournal(state / "journal.sqlite3")
    await journal.open()
    assert modes(state)["journal.sqlite3"] == 0o600 and modes(state)["journal.sqlite3-wal"] == 0o600
    assert mode(state) == 0o755  # an existing directory is warned about, not changed
    await journal.close()


def test_an_existing_wider_state_dir_is_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "wide"
    state.mkdir(mode=0o755)
    make_state_dir(state)
    assert mode(state) == 0o755
    assert "state_dir is accessible to other users" in capsys.readouterr().out


async def test_a_symlinked_journal_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    target.chmod(0o644)
    (state / "journal.sqlite3-wal").symlink_to(target)
    journal = SqliteJournal(state / "journal.sqlite3")
    with pytest.raises(StateError, match="is a symbolic link"):
        await journal.open()
    await journal.close()
    assert target.read_bytes() == b"precious" and mode(target) == 0o644


async def test_a_journal_of_another_owner_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "journal.sqlite3").write_bytes(b"")
    os.chown(state / "journal.sqlite3", 4242, 4242)
    journal = SqliteJournal(state / "journal.sqlite3")
    with pytest.raises(StateError, match="owned by uid 4242"):
        await journal.open()
    await journal.close()


async def test_pruned_events_leave_no_bytes_behind(tmp_path: Path) -> None:
    """The events' bytes are in segment files (``forwarder.journal.segments``), never in the
    database or its WAL, and a segment is deleted once every sink has its events."""
    path = tmp_path / "j.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(500), {"w": 1})
    journal.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    [segment] = directory_of(path).iterdir()
    assert segment.read_bytes().count(MARKER) == 500
    for copy in (path, Path(f"{path}-wal")):
        assert copy.read_bytes().count(MARKER) == 0
    await journal.commit("a", 500)
    assert await journal.prune() == 500
    assert not segment.exists()
    await journal.append("src", "org", [JournalEntry("later", "codacy", 1, b'{"id":"later"}')], {"w": 2})
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 1
    await journal.close()


async def test_deleted_dead_letters_leave_no_bytes_behind(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = SqliteJournal(path)
    await journal.open()
    await journal.register_sinks(["a"])
    await journal.append("src", "org", entries(50), {"w": 1})
    batch = await journal.read(0, 50, 1 << 24)
    await journal.commit("a", 50, [(record, "rejected") for record in batch])
    await journal.prune()
    journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.read_bytes().count(MARKER) > 40  # now only in the dead letters
    await journal.delete_dead_letters([letter.id for letter in await journal.dead_letters()])
    journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.read_bytes().count(MARKER) == 0
    await journal.close()


async def test_files_root_creates_in_another_users_state_dir_are_given_to_that_user(tmp_path: Path) -> None:
    """Root running a tool must not leave a root-owned file the daemon's user cannot open."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 4242, 4243)
    journal = SqliteJournal(state / "journal.sqlite3")
    await journal.open()
    await journal.append("src", "org", entries(3), {"w": 1})
    owners = {path.name: (path.stat().st_uid, path.stat().st_gid) for path in state.iterdir()}
    names = ["journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm", "journal.sqlite3-segments"]
    assert owners == dict.fromkeys(names, (4242, 4243))
    segments = {(p.stat().st_uid, p.stat().st_gid) for p in (state / "journal.sqlite3-segments").iterdir()}
    assert segments == {(4242, 4243)}
    await journal.close()
