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
  A crash before that commit leaves bytes no row refers to: the next write truncates them, and
  a segment no row refers to is deleted when the writer next opens the state;
* a segment is unlinked only once the prune that emptied it is durable (the caller commits a
  durable transaction first), so a power cut that loses a prune never leaves a row without its
  bytes.

Only the writer (the process holding the state lock) writes, truncates or deletes; an opener
without the lock (``state show``, ``dlq list``) only reads.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from forwarder.journal.types import DiskFullError, StateError
from forwarder.state_files import StateFileError, make_state_dir, open_state_file

SEGMENT_MAX_BYTES = 64 << 20  # a new segment once the current one holds this much (a page never spans two)
_SUFFIX = ".seg"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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
        self._end = 0  # its committed end: bytes past it belong to no row
        self._written = 0  # its end after the last write, committed or not
        self._readers: dict[int, int] = {}

    def load(self, referenced: Iterable[tuple[int, int]], writer: bool) -> None:
        """``referenced``: (segment, chunk rows) of every segment a row refers to. The writer
        deletes the segments no row refers to (emptied by a prune a crash interrupted, or written
        for a page whose transaction never committed) and always writes into a new segment."""
        self._live = Counter(dict(referenced))
        if not writer:
            return
        try:
            self._make_directory()
            names = os.listdir(self.directory)
        except (OSError, StateFileError) as exc:
            raise StateError(f"cannot open the journal's segments {self.directory}: {exc}") from None
        for name in names:
            if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)].isdigit():
                if int(name[: -len(_SUFFIX)]) not in self._live:
                    os.unlink(self.directory / name)

    def write(self, first_seq: int, datas: list[bytes]) -> list[tuple[int, int]]:
        """Appends each chunk's bytes to the current segment and syncs them; the (segment,
        offset) of each. ``first_seq`` names a new segment. Not part of the journal until the
        caller's transaction commits and calls ``committed``."""
        try:
            segment = self._current
            if segment is None or self._end >= SEGMENT_MAX_BYTES:
                segment = self._start(first_seq)
            fd = self._fd
            if self._written != self._end:  # an earlier write whose transaction failed
                os.ftruncate(fd, self._end)
                self._written = self._end
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
            self._written = offset
            os.fdatasync(fd)
        except OSError as exc:
            if exc.errno in _FULL:
                raise DiskFullError(
                    f"cannot write the journal's segments in {self.directory}: {exc.strerror}"
                ) from None
            raise StateError(f"cannot write the journal's segments in {self.directory}: {exc}") from None
        return places

    def committed(self, chunks: int) -> None:
        """The transaction that refers to the last write's bytes committed."""
        self._end = self._written
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
                f"the journal's segment {self.directory / _name(segment)} cannot be read ({exc}); the state "
                "file and its segments directory must be restored together"
            ) from None
        if len(data) != size:
            raise StateError(
                f"the journal's segment {self.directory / _name(segment)} is shorter than the state says; "
                "the state file and its segments directory must be restored together"
            )
        return data

    def released(self, segments: Iterable[int]) -> list[int]:
        """The prune that just committed deleted a chunk row in each of ``segments`` (one entry
        per row); the segments no row refers to any more, which ``remove`` deletes once that
        prune is durable. The next write starts a new segment if the one written to is among them."""
        self._live.subtract(segments)
        empty = [s for s, n in self._live.items() if n <= 0]
        for segment in empty:
            del self._live[segment]
        if self._current in empty:  # every event in it was delivered: pruned bytes must not linger there
            os.close(self._fd)
            self._fd, self._current = -1, None
        return empty

    def remove(self, segments: list[int]) -> None:
        for segment in segments:
            fd = self._readers.pop(segment, None)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / _name(segment))

    def close(self) -> None:
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._current = None

    def _start(self, first_seq: int) -> int:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._make_directory()
        fd = open_state_file(self.directory, _name(first_seq))
        os.ftruncate(fd, 0)  # a leftover of the same name belonged to no row
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)  # the name is durable before a row refers to it
        finally:
            os.close(dir_fd)
        self._fd, self._current, self._end, self._written = fd, first_seq, 0, 0
        return first_seq

    def _make_directory(self) -> None:
        """0700, and the state_dir owner's: root running a tool must not leave a directory the
        daemon's user cannot write (``open_state_file`` does the same for files)."""
        make_state_dir(self.directory)
        owner = self.directory.parent.stat()
        mine = self.directory.stat()
        if os.geteuid() == 0 and (mine.st_uid, mine.st_gid) != (owner.st_uid, owner.st_gid):
            os.chown(self.directory, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _name(segment: int) -> str:
    return f"{segment:020d}{_SUFFIX}"
