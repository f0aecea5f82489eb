"""Who may read and write the state directory: only its owner.

The journal holds every event unredacted, quarantined raw entries and dead letters, so
state_dir is created 0700 and every file in it 0600, whatever the umask of whoever started the
process (a shell, cron, ``make demo``). SQLite creates ``-wal`` and ``-shm`` with the mode of
the database file (and fchmods them to it), so a database that is 0600 before SQLite first
opens it keeps its later ``-wal`` and ``-shm`` at 0600 too.

Operators may run the tools as root against the service user's directory, whose owner can
plant a symlink or a hard link at any name in it. A state file is therefore opened relative to
the directory, without following a symlink, and must be a regular file owned by the
directory's owner: otherwise root would write to (or chmod) a file that owner chose.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

import structlog

log = structlog.get_logger("forwarder.state")

DIR_MODE = 0o700
FILE_MODE = 0o600
_warned: set[Path] = set()


class StateFileError(Exception):
    """A state path is not what the forwarder made it (a symlink, a directory, another's file)."""


def make_state_dir(path: Path) -> None:
    """Creates ``path`` 0700 (its missing parents take the umask's mode, like ``mkdir -p``).

    An existing directory keeps its mode: it may be one the operator shares or that systemd
    manages (``StateDirectoryMode=``), and changing the mode of a directory the forwarder did
    not create could break its other users. The files in it are 0600 regardless, so a wider
    directory only shows their names; that is worth a warning, once per process."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        pass
    else:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, DIR_MODE)  # the umask may have taken bits away (umask 0o200 would leave 0500)
        finally:
            os.close(fd)
        return
    if path.is_dir() and path not in _warned:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            _warned.add(path)
            log.warning(
                "state_dir is accessible to other users; its files are private (0600), but their names "
                "are visible: chmod 700 it (under systemd, StateDirectoryMode=0700)",
                state_dir=str(path),
                mode=f"{mode:04o}",
            )


def open_state_file(directory: Path, name: str, flags: int = os.O_RDWR, create: bool = True) -> int:
    """A file descriptor of ``directory/name``, created 0600 if ``create`` and missing, its mode
    narrowed to 0600 if it was wider. Refuses a symlink, anything but a regular file, and a file
    owned by someone other than the directory's owner. The caller closes it.

    A file root creates in another user's state_dir is given to that user, as SQLite does with
    the ``-wal`` and ``-shm`` it creates as root: a root-owned lock file would keep the daemon
    from starting."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_state_file_at(dir_fd, directory, name, flags, create)
    finally:
        os.close(dir_fd)


def open_state_file_at(dir_fd: int, directory: Path, name: str, flags: int = os.O_RDWR, create: bool = True) -> int:
    """``open_state_file`` in the directory open at ``dir_fd`` (``directory`` names it in
    messages): for a caller that opened the directory itself without following a symlink, so
    the directory checked is the one written in even if its path is swapped afterwards."""
    owner = os.fstat(dir_fd)
    fd, created = _open_at(dir_fd, directory / name, flags, create)
    try:
        info = os.fstat(fd)
        if created and info.st_uid != owner.st_uid:
            if os.geteuid() == 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
                info = os.fstat(fd)
            else:  # not ours to leave in another user's directory
                os.unlink(name, dir_fd=dir_fd)
        _check(directory, name, info, owner.st_uid)
        if stat.S_IMODE(info.st_mode) != FILE_MODE:
            with contextlib.suppress(PermissionError):  # not ours to change: its owner narrows it at its start
                os.fchmod(fd, FILE_MODE)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_at(dir_fd: int, path: Path, flags: int, create: bool) -> tuple[int, bool]:
    """The file and whether this call created it; never through a symlink, never blocking on a
    FIFO planted at the name."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        if create:
            try:
                return os.open(path.name, flags | os.O_CREAT | os.O_EXCL, FILE_MODE, dir_fd=dir_fd), True
            except FileExistsError:
                pass
        return os.open(path.name, flags, dir_fd=dir_fd), False
    except OSError as exc:
        if os.path.islink(path):
            raise StateFileError(
                f"{path} is a symbolic link; state files must be regular files: remove it "
                "(someone may have planted it to make the forwarder write elsewhere)"
            ) from None
        if os.path.lexists(path) and not path.is_file():
            raise StateFileError(f"{path} is not a regular file; state files must be: remove it") from None
        raise exc


def _check(directory: Path, name: str, info: os.stat_result, owner: int) -> None:
    path = directory / name
    if not stat.S_ISREG(info.st_mode):
        raise StateFileError(f"{path} is not a regular file; state files must be: remove it")
    if info.st_uid != owner:
        raise StateFileError(
            f"{path} is owned by uid {info.st_uid}, but its state_dir {directory} by uid {owner}; "
            "every state file must belong to the state_dir's owner: run audit-forwarder (and its "
            "tools) as that user, and remove or chown the file"
        )


def secure_state_file(directory: Path, name: str, create: bool = True) -> None:
    """``open_state_file`` for its checks and mode only: files SQLite opens itself by name."""
    try:
        fd = open_state_file(directory, name, os.O_RDONLY, create=create)
    except FileNotFoundError:
        return
    os.close(fd)


def fsync_directory(path: Path) -> None:
    """Make creations, renames and deletions in ``path`` durable (a file's own fsync does not):
    the journal's segments and the file sink's rotations both need it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_create_file(directory: Path, mode: int) -> None:
    """Creates and removes a file in ``directory`` (``check``'s proof that a component can write
    there; raises OSError). The name is this call's own: ``check`` probes the state and the sinks
    at once, and two probes of one directory (a file sink beside the state) under one name
    removed each other's file, so one of them failed with ENOENT."""
    probe = directory / f".audit-forwarder-check-{os.getpid()}-{secrets.token_hex(4)}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    probe.unlink()
