"""The state lock in a directory someone else owns: tools run as root (we are root here) must
not write through a symlink or a hard link planted at the lock's name, and every command that
changes state words its refusal the same way."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from forwarder.journal import SqliteJournal, StateError
from forwarder.state_lock import LOCK_FILE, StateLock
from tests.support.config import codacy_files_config as make_config
from tests.support.daemon import cli

OTHER_UID = 4242


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state_dir with a journal, as the daemon leaves it, and a root-owned file to protect."""
    state = tmp_path / "state"
    journal = SqliteJournal(state / "journal.sqlite3")
    asyncio.run(_open_and_close(journal))
    yield state


async def _open_and_close(journal: SqliteJournal) -> None:
    await journal.open()
    await journal.close()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    victim.chmod(0o644)
    os.utime(victim, (1_600_000_000, 1_600_000_000))
    return victim


def untouched(victim: Path) -> bool:
    info = victim.stat()
    return (
        victim.read_text() == "root's file\n"
        and info.st_mtime == 1_600_000_000
        and stat.S_IMODE(info.st_mode) == 0o644
        and info.st_uid == 0
    )


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(
    tmp_path: Path, state: Path, victim: Path
) -> None:
    os.chown(state, OTHER_UID, OTHER_UID)  # the service user's directory, the tool run as root
    (state / LOCK_FILE).symlink_to(victim)
    cfg = make_config(tmp_path, "http://127.0.0.1:9")
    result = cli(cfg, "state", "reset", "-y")
    assert result.returncode == 1
    assert f"{state / LOCK_FILE} is a symbolic link" in result.stderr, result.stderr
    assert untouched(victim)


def test_a_hard_link_to_another_owners_file_is_refused(state: Path, victim: Path) -> None:
    os.chown(state, OTHER_UID, OTHER_UID)
    os.link(victim, state / LOCK_FILE)
    with pytest.raises(StateError, match=f"owned by uid 0, but its state_dir {state} by uid {OTHER_UID}"):
        StateLock(state).acquire()
    assert untouched(victim)


def test_a_lock_file_of_another_owner_is_refused(tmp_path: Path, state: Path) -> None:
    lock = state / LOCK_FILE
    lock.write_text("123")
    os.chown(lock, OTHER_UID, OTHER_UID)
    cfg = make_config(tmp_path, "http://127.0.0.1:9")
    result = cli(cfg, "state", "reset", "-y")
    assert result.returncode == 1
    assert f"owned by uid {OTHER_UID}" in result.stderr and "run audit-forwarder (and its tools) as" in result.stderr
    assert lock.read_text() == "123"


def test_the_lock_holds_the_pid_and_is_private(state: Path) -> None:
    old = os.umask(0)
    try:
        (state / LOCK_FILE).write_text("a much longer leftover than any pid\n")
        lock = StateLock(state)
        lock.acquire()
    finally:
        os.umask(old)
    assert (state / LOCK_FILE).read_text() == str(os.getpid())
    assert stat.S_IMODE((state / LOCK_FILE).stat().st_mode) == 0o600
    lock.release()


def test_backfill_and_state_reset_refuse_in_the_same_words(tmp_path: Path, state: Path) -> None:
    held = StateLock(state)
    held.acquire()
    try:
        cfg = make_config(tmp_path, "http://127.0.0.1:9")
        reset = cli(cfg, "state", "reset", "-y")
        backfill = cli(cfg, "backfill", "--source", "codacy", "--since", "2024-01-01")
        second = cli(cfg, "once")
    finally:
        held.release()
    expected = (
        f"error: the daemon (or another state-changing command, pid {os.getpid()}) is running on {state} and "
        f"holds {state / LOCK_FILE}; stop it first"
    )
    for result in (reset, backfill, second):
        assert result.returncode == 1
        assert expected in " ".join(result.stderr.split()), result.stderr


def test_a_lock_root_creates_in_another_users_state_dir_is_that_users(state: Path) -> None:
    os.chown(state, OTHER_UID, OTHER_UID)
    lock = StateLock(state)
    lock.acquire()
    lock.release()
    info = (state / LOCK_FILE).stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (OTHER_UID, OTHER_UID, 0o600)
