"""The journaled events' bytes, in append-only segment files beside the SQLite state file.

Why not in the database: a chunk's bytes written as a blob went to the WAL, were copied again
into the database at the checkpoint, and were zeroed twice more when pruned (``secure_delete``
keeps pruned events from staying readable in free pages). That was the largest system-CPU cost
of a drain (docs/performance.md, round 10). Here each event's bytes are written once; the chunk
row in SQLite keeps the segment and offset, and a segment is deleted whole, so nothing pruned
stays readable in the state.

The order of writes is the journal's promise (nothing lost):

* a page's chunk bytes are written and ``fdatasync``'d, and a new segment's directory entry
  ``fsync``'d, *before* the transaction that inserts their rows and moves the cursor commits.
  Bytes are never overwritten: a transaction that failed may still be replayed from the WAL
  at the next start (a ``COMMIT`` that reported a disk error after writing its frames), so its
  bytes stay where its rows would point, and the next write goes after them. Bytes no row
  refers to are dropped with their segment; a segment no row refers to is deleted when the
  writer next opens the state;
* a prune commits durably before its chunks' bytes go: a segment no row refers to any more is
  deleted, and in the others the pruned chunks' bytes are punched out (zeroed where the file
  system cannot), so a power cut that loses a prune never leaves a row without its bytes, and
  delivered events do not stay readable until their whole segment is pruned.

Only the writer (the process holding the state lock) writes, truncates or deletes; an opener
without the lock (``state show``, ``dlq list``) only reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from forwarder.journal.types import DiskFullError, StateError
from forwarder.state_files import StateFileError, fsync_directory, make_state_dir, open_state_file

SEGMENT_MAX_BYTES = 64 << 20  # a new segment once the current one holds this much (a page never spans two)
_SUFFIX = ".seg"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (linux/falloc.h)
_ZEROS = bytes(1 << 20)


def directory_of(database: Path) -> Path:
    """Where the segments of the state file ``database`` live: beside it, named after it, as
    SQLite names its ``-wal`` and ``-shm``."""
    return database.with_name(database.name + "-segments")


class SegmentStore:
    def __init__(self, database: Path) -> None:
        self.directory = directory_of(database)
        self._live: Counter[int] = Counter()  # segment -> chunk rows referring to it (writer only)
        self._current: int | None = None  # the segment written to, None until the first write
        self._fd = -1  # its descriptor
        self._end = 0  # where its next write goes; -1 after a failure: the file's size says
        self._readers: dict[int, int] = {}
        self._last = 0  # the highest segment name in use: a name is never given twice

    def load(self, referenced: Iterable[tuple[int, int]], writer: bool) -> None:
        """``referenced``: (segment, chunk rows) of every segment a row refers to. The writer
        deletes the segments no row refers to (emptied by a durable prune a crash interrupted,
        or written for a page whose transaction never committed) and always writes into a new
        segment."""
        self._live = Counter(dict(referenced))
        self._last = max(self._live, default=0)
        try:
            if not self._directory(create=writer) or not writer:
                return
            for name in os.listdir(self.directory):
                if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)].isdigit():
                    if int(name[: -len(_SUFFIX)]) not in self._live:
                        os.unlink(self.directory / name)
        except OSError as exc:
            raise StateError(f"cannot open the journal's segments {self.directory}: {exc}") from None

    def write(self, first_seq: int, datas: list[bytes]) -> list[tuple[int, int]]:
        """Appends each chunk's bytes to the current segment and syncs them; the (segment,
        offset) of each. ``first_seq`` names a new segment. Not part of the journal until the
        caller's transaction commits and calls ``committed``."""
        try:
            segment = self._current
            if segment is None or self._end >= SEGMENT_MAX_BYTES:
                segment = self._start(first_seq)
            fd = self._fd
            if self._end < 0:  # after a failed write, past whatever of it reached the file
                self._end = os.fstat(fd).st_size
            places = []
            offset = self._end
            for data in datas:
                view = memoryview(data)
                at = offset
                while view:  # pwrite may write less than asked (a signal, a nearly full disk)
                    done = os.pwrite(fd, view, at)
                    view, at = view[done:], at + done
                places.append((segment, offset))
                offset += len(data)
            os.fdatasync(fd)
            self._end = offset
        except (OSError, StateFileError) as exc:
            self._end = -1
            if isinstance(exc, OSError) and exc.errno in _FULL:
                raise DiskFullError(
                    f"cannot write the journal's segments in {self.directory}: {exc.strerror}"
                ) from None
            raise StateError(f"cannot write the journal's segments in {self.directory}: {exc}") from None
        return places

    def committed(self, chunks: int) -> None:
        """The transaction that refers to the last write's bytes committed."""
        if self._current is not None:
            self._live[self._current] += chunks

    def read(self, segment: int, offset: int, size: int) -> bytes:
        fd = self._readers.get(segment)
        try:
            if fd is None:
                fd = open_state_file(self.directory, _name(segment), os.O_RDONLY, create=False)
                self._readers[segment] = fd
            data = os.pread(fd, size, offset)
        except (OSError, StateFileError) as exc:
            raise StateError(
                f"the journal's segment {self.directory / _name(segment)} cannot be read ({exc}); if the daemon "
                "is running it may have just pruned it, otherwise the state file and its segments directory "
                "must be restored together"
            ) from None
        if len(data) != size:
            raise StateError(
                f"the journal's segment {self.directory / _name(segment)} is shorter than the state says; "
                "the state file and its segments directory must be restored together"
            )
        return data

    def released(self, chunks: list[tuple[int, int, int]]) -> None:
        """A durable prune deleted the rows of ``chunks`` (segment, offset, size): segments no
        row refers to any more are deleted (the next write starts a new one if the one written
        to is among them), the others have those bytes punched out. Best effort: what a failure
        leaves is deleted with its segment later, or at the writer's next start."""
        self._live.subtract(segment for segment, _, _ in chunks)
        empty = {s for s, n in self._live.items() if n <= 0}
        for segment in empty:
            del self._live[segment]
            fd = self._readers.pop(segment, None)
            if fd is not None:
                os.close(fd)
            if segment == self._current:
                os.close(self._fd)
                self._fd, self._current = -1, None
            with contextlib.suppress(OSError):
                os.unlink(self.directory / _name(segment))
        for segment, offset, size in chunks:
            if segment not in empty:
                with contextlib.suppress(OSError, StateFileError):
                    self._punch(segment, offset, size)

    def _punch(self, segment: int, offset: int, size: int) -> None:
        fd = open_state_file(self.directory, _name(segment), os.O_WRONLY, create=False)
        try:
            if _fallocate(fd, _PUNCH_HOLE, offset, size) != 0:  # not on this file system: zeros
                for at in range(offset, offset + size, len(_ZEROS)):
                    os.pwrite(fd, memoryview(_ZEROS)[: min(len(_ZEROS), offset + size - at)], at)
        finally:
            os.close(fd)

    def close(self) -> None:
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._current = None

    def _start(self, first_seq: int) -> int:
        """A new segment, named after the first seq it holds unless that name was given already
        (a page that failed, written again once the segment before it filled up)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._directory(create=True)
        name = self._last = max(first_seq, self._last + 1)
        fd = open_state_file(self.directory, _name(name))
        try:
            os.ftruncate(fd, 0)  # a leftover of a name not in use belongs to no row
            fsync_directory(self.directory)  # the name is durable before a row refers to it
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._current, self._end = fd, name, 0
        return name

    def _directory(self, create: bool) -> bool:
        """Whether the directory exists (created 0700 if ``create``). Refused like a state file
        (``forwarder.state_files``): a symlink, anything but a directory, another owner than
        state_dir's. One root creates is given to that owner, and its name made durable."""
        created = create and not os.path.lexists(self.directory)
        if created:
            make_state_dir(self.directory)
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            raise StateError(
                f"{self.directory} is a symbolic link or not a directory; the journal's segments must be a "
                "directory: remove it (someone may have planted it to make the forwarder write elsewhere)"
            )
        owner = self.directory.parent.stat()
        if created:
            if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (owner.st_uid, owner.st_gid):
                os.chown(self.directory, owner.st_uid, owner.st_gid, follow_symlinks=False)
            fsync_directory(self.directory.parent)
        elif info.st_uid != owner.st_uid:
            raise StateError(
                f"{self.directory} is owned by uid {info.st_uid}, but its state_dir by uid {owner.st_uid}; "
                "run audit-forwarder (and its tools) as that user, and remove or chown the directory"
            )
        return True


def _name(segment: int) -> str:
    return f"{segment:020d}{_SUFFIX}"


def _fallocate(fd: int, mode: int, offset: int, size: int) -> int:
    """glibc's ``fallocate`` (the standard library has only ``posix_fallocate``, which cannot
    punch holes); -1 where there is none (not Linux) or the file system refuses."""
    call = getattr(_libc(), "fallocate", None)
    if call is None:
        return -1
    return int(call(fd, mode, ctypes.c_longlong(offset), ctypes.c_longlong(size)))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
