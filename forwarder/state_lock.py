"""One daemon (or state-changing command) per state_dir: a second one would race on the
journal's offsets. flock is released by the kernel if the process dies, even by kill -9.

The lock file lives in a directory its owner controls while the tools may run as root, so it
is opened through ``forwarder.state_files`` (no symlink followed, a regular file of the
directory's owner, 0600). The pid is written only once the flock is held, at offset 0, and the
file then cut to its length: the cut is harmless on a file that passed those checks, and it
leaves exactly the holder's pid for ``cat``; a process that did not get the lock writes nothing,
so the holder's pid stays readable for the refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from forwarder.journal import StateError
from forwarder.state_files import StateFileError, make_state_dir, open_state_file

LOCK_FILE = "audit-forwarder.lock"


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            make_state_dir(self.state_dir)
            fd = open_state_file(self.state_dir, LOCK_FILE)
        except StateFileError as exc:
            raise StateError(f"refusing the state lock: {exc}") from None
        except OSError as exc:
            raise StateError(
                f"cannot write state_dir {self.state_dir}: {exc.strerror}; check that it exists and that the "
                "daemon's user owns it (under systemd, StateDirectory= does both)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            raise StateError(
                f"the daemon (or another state-changing command{holder}) is running on {self.state_dir} and "
                f"holds {self.path}; stop it first, then run this command again (read-only commands such as "
                "`state show` and `dlq list` work while it runs)"
            ) from None
        pid = str(os.getpid()).encode()
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _pid_in(fd: int) -> str:
    """`, pid N` from the holder's lock file, or nothing if it holds no pid (yet)."""
    with contextlib.suppress(OSError, ValueError):
        return f", pid {int(os.pread(fd, 32, 0))}"
    return ""
