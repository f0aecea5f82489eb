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
  A write that failed, or whose transaction failed before its ``COMMIT``, is cut off the file
  again, so retries on a full disk do not pile up copies. Other bytes are never overwritten: a
  ``COMMIT`` that reported an error (a full disk, an I/O error) may still be replayed at the
  next start, its frames having reached the WAL (SQLite does not document which failures leave
  none), so its bytes stay where its rows would point, and the next write goes after them.
  When the writer next opens the state, once SQLite has replayed whatever it will, a segment
  no row refers to is deleted and the bytes of the others that no row covers are punched out
  (and their tail cut off);
* a prune commits durably before its chunks' bytes go: a segment no row refers to any more is
  deleted, and in the others the pruned chunks' bytes are punched out (zeroed where the file
  system cannot) and synced, so a power cut that loses a prune never leaves a row without its
  bytes, and delivered events do not stay readable until their whole segment is pruned. A
  punch that fails is logged and done at the writer's next start.

Only the writer (the process holding the state lock) writes, truncates or deletes; an opener
without the lock (``state show``, ``dlq list``) only reads. Every file is opened, listed and
deleted relative to the directory opened once without following a symlink, so a path swapped
after the checks cannot redirect a write.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path

import structlog

from forwarder.journal.segment_io import holds_data, punch_range, read_all, write_all
from forwarder.journal.types import DiskFullError, StateError
from forwarder.state_files import DIR_MODE, StateFileError, fsync_directory, make_state_dir, open_state_file_at

log = structlog.get_logger("forwarder.journal")

SEGMENT_MAX_BYTES = 64 << 20  # a new segment once the current one holds this much (a page never spans two)
READERS = 8  # segments kept open for reading, least recently read closed first: sinks read near their offsets
_SUFFIX = ".seg"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def directory_of(database: Path) -> Path:
    """Where the segments of the state file ``database`` live: beside it, named after it, as
    SQLite names its ``-wal`` and ``-shm``."""
    return database.with_name(database.name + "-segments")


class SegmentStore:
    def __init__(self, database: Path) -> None:
        self.directory = directory_of(database)
        self._live: Counter[int] = Counter()  # segment -> chunk rows referring to it (writer only)
        self._dir_fd = -1  # the directory, once opened and checked
        self._current: int | None = None  # the segment written to, None until the first write
        self._fd = -1  # its descriptor; -1: the next write starts a new segment
        self._end = 0  # where its next write goes: the end of the last write that succeeded
        self._unsure = False  # cutting a failed write off failed too: the file's size says where to go on
        self._pending: tuple[int, int, int] | None = None  # (segment, start, end) of a write not yet committed
        self._readers: OrderedDict[int, int] = OrderedDict()  # segment -> descriptor, least recently read first
        # The highest name in use. Names of committed rows are never given again (names grow
        # with seqs); one no committed row refers to (a failed page's) may be, truncated first.
        self._last = 0

    def load(self, referenced: Iterable[tuple[int, int, int]], writer: bool) -> None:
        """``referenced``: (segment, offset, size) of every chunk row's bytes, ordered by segment
        and offset. The writer deletes the segments no row refers to (emptied by a durable prune
        a crash interrupted, or written for a page whose transaction never committed), drops the
        bytes of the others that no row covers (see the module's docstring), and always writes
        into a new segment."""
        covered: dict[int, list[tuple[int, int]]] = {}
        for segment, offset, size in referenced:
            covered.setdefault(segment, []).append((offset, size))
        self._live = Counter({segment: len(chunks) for segment, chunks in covered.items()})
        self._last = max(self._live, default=0)
        try:
            dir_fd = self._directory(create=writer)
            if dir_fd < 0 or not writer:
                return
            for name in os.listdir(dir_fd):
                if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)].isdigit():
                    if int(name[: -len(_SUFFIX)]) not in self._live:
                        os.unlink(name, dir_fd=dir_fd)
        except (OSError, StateFileError) as exc:
            raise StateError(f"cannot open the journal's segments {self.directory}: {exc}") from None
        for segment, chunks in covered.items():
            self._drop_uncovered(segment, chunks)

    def write(self, first_seq: int, datas: list[bytes]) -> list[tuple[int, int]]:
        """Appends each chunk's bytes to the current segment and syncs them; the (segment,
        offset) of each. ``first_seq`` names a new segment. Not part of the journal until the
        caller's transaction commits and calls ``committed`` (or fails: ``uncommitted``)."""
        self._pending = None
        try:
            if self._fd < 0 or self._end >= SEGMENT_MAX_BYTES:
                self._start(first_seq)
            if self._unsure:
                self._end, self._unsure = os.fstat(self._fd).st_size, False
        except (OSError, StateFileError) as exc:
            raise self._write_error(exc) from None
        segment, fd, start = self._current, self._fd, self._end
        assert segment is not None
        places = []
        offset = start
        try:
            for data in datas:
                write_all(fd, data, offset)
                places.append((segment, offset))
                offset += len(data)
            os.fdatasync(fd)
        except OSError as exc:
            self._cut(start)  # no COMMIT was attempted for these bytes: nothing can refer to them
            raise self._write_error(exc) from None
        self._end = offset
        self._pending = (segment, start, offset)
        return places

    def committed(self, chunks: int) -> None:
        """The transaction that refers to the last write's bytes committed."""
        if self._pending is not None:
            self._live[self._pending[0]] += chunks
            self._pending = None

    def uncommitted(self, rolled_back: bool) -> None:
        """The transaction that would refer to the last write's bytes did not commit. If it
        failed before its ``COMMIT`` (``rolled_back``), they are cut off; otherwise (a ``COMMIT`` that may
        be replayed from the WAL at the next start) they stay, and the next write goes after
        them."""
        pending, self._pending = self._pending, None
        if rolled_back and pending is not None and pending[0] == self._current and pending[2] == self._end:
            self._cut(pending[1])

    def read(self, segment: int, offset: int, size: int) -> bytes:
        try:
            data = read_all(self._reader(segment), size, offset)
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
        to is among them), the others have those bytes punched out and synced. Best effort:
        what a failure leaves is logged, and dropped at the writer's next start."""
        self._live.subtract(segment for segment, _, _ in chunks)
        empty = {s for s, n in self._live.items() if n <= 0}
        for segment in sorted(empty):
            del self._live[segment]
            self._close_reader(segment)
            if segment == self._current:
                os.close(self._fd)
                self._fd, self._current, self._pending = -1, None, None
            try:
                os.unlink(_name(segment), dir_fd=self._dir_fd)
            except OSError as exc:
                self._warn("cannot delete a pruned journal segment", segment, exc)
        holes: dict[int, list[tuple[int, int]]] = {}
        for segment, offset, size in chunks:
            if segment not in empty:
                holes.setdefault(segment, []).append((offset, size))
        for segment, ranges in holes.items():
            self._punch(segment, ranges)

    def close(self) -> None:
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
        self._current = self._pending = None

    def _start(self, first_seq: int) -> None:
        """A new segment, named after the first seq it holds unless that name was given already
        (a page that failed, written again once the segment before it filled up). The store
        changes only once it exists and its name is durable: a failure (a full disk) leaves the
        segment before it current, and the next write tries again."""
        dir_fd = self._directory(create=True)
        name = max(first_seq, self._last + 1)
        fd = open_state_file_at(dir_fd, self.directory, _name(name))
        try:
            os.ftruncate(fd, 0)  # a leftover of a name not in use belongs to no row
            os.fsync(dir_fd)  # the name is durable before a row refers to it
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._current, self._end, self._unsure, self._last = fd, name, 0, False, name

    def _cut(self, end: int) -> None:
        """Drops what a failed write left after ``end`` (no COMMIT can refer to it)."""
        try:
            os.ftruncate(self._fd, end)
        except OSError:
            self._unsure = True
        else:
            self._end = end

    def _write_error(self, exc: OSError | StateFileError) -> Exception:
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return DiskFullError(f"cannot write the journal's segments in {self.directory}: {exc.strerror}")
        return StateError(f"cannot write the journal's segments in {self.directory}: {exc}")

    def _reader(self, segment: int) -> int:
        """A descriptor to read ``segment`` with: the writer's own for the segment it writes,
        else one of the ``READERS`` kept open."""
        if segment == self._current:
            return self._fd
        fd = self._readers.get(segment)
        if fd is not None:
            self._readers.move_to_end(segment)
            return fd
        if self._directory(create=False) < 0:
            raise FileNotFoundError(errno.ENOENT, "no segments directory")
        fd = self._open(segment, os.O_RDONLY)
        self._readers[segment] = fd
        while len(self._readers) > READERS:
            os.close(self._readers.popitem(last=False)[1])
        return fd

    def _close_reader(self, segment: int) -> None:
        fd = self._readers.pop(segment, None)
        if fd is not None:
            os.close(fd)

    def _punch(self, segment: int, ranges: list[tuple[int, int]]) -> None:
        """Punches ``ranges`` (offset, size) out of ``segment`` and syncs it once."""
        try:
            own = segment == self._current
            fd = self._fd if own else self._open(segment, os.O_WRONLY)
            try:
                for offset, size in ranges:
                    punch_range(fd, offset, size)
                os.fdatasync(fd)
            finally:
                if not own:
                    os.close(fd)
        except (OSError, StateFileError) as exc:
            self._warn("cannot punch pruned events out of a journal segment", segment, exc)

    def _drop_uncovered(self, segment: int, chunks: list[tuple[int, int]]) -> None:
        """Punches out the bytes of ``segment`` that no row covers and cuts its tail after the
        last one: at the writer's start, once SQLite replayed whatever it will, nothing else
        can come to refer to them."""
        try:
            fd = self._open(segment, os.O_RDWR)
        except FileNotFoundError:
            return  # named when a sink reads it
        except (OSError, StateFileError) as exc:
            self._warn("cannot open a journal segment to drop the bytes no row refers to", segment, exc)
            return
        try:
            at = changed = 0
            for offset, size in chunks:
                if offset > at and holds_data(fd, at, offset):
                    punch_range(fd, at, offset - at)
                    changed = 1
                at = max(at, offset + size)
            if os.fstat(fd).st_size > at:
                os.ftruncate(fd, at)
                changed = 1
            if changed:
                os.fdatasync(fd)
        except OSError as exc:
            self._warn("cannot drop the bytes no row refers to from a journal segment", segment, exc)
        finally:
            os.close(fd)

    def _open(self, segment: int, flags: int) -> int:
        return open_state_file_at(self._dir_fd, self.directory, _name(segment), flags, create=False)

    def _warn(self, message: str, segment: int, exc: OSError | StateFileError) -> None:
        """A failed clean-up: the bytes stay until the writer's next start (no event data here)."""
        error = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning(
            f"{message}; its bytes stay until the next start", segment=str(self.directory / _name(segment)), error=error
        )

    def _directory(self, create: bool) -> int:
        """The directory's descriptor, opened once without following a symlink (-1 if it does
        not exist and not ``create``). Refused like a state file (``forwarder.state_files``):
        a symlink, anything but a directory, another owner than state_dir's. One root creates
        is given to that owner, and its name made durable. The writer (``create``) narrows its
        mode to 0700: unlike state_dir, no one else has a use for it, and one who may write in
        it could plant a segment."""
        if self._dir_fd >= 0:
            if os.fstat(self._dir_fd).st_nlink > 0:
                return self._dir_fd
            os.close(self._dir_fd)  # removed while open: made again, as before the first write
            self._dir_fd = -1
        created = create and not os.path.lexists(self.directory)
        if created:
            make_state_dir(self.directory)
        try:
            fd = os.open(self.directory, _DIRECTORY)
        except FileNotFoundError:
            return -1
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise StateError(
                f"{self.directory} is a symbolic link or not a directory; the journal's segments must be a "
                "directory: remove it (someone may have planted it to make the forwarder write elsewhere)"
            ) from None
        try:
            self._check_directory(fd, created, create)
        except BaseException:
            os.close(fd)
            raise
        self._dir_fd = fd
        return fd

    def _check_directory(self, fd: int, created: bool, writer: bool) -> None:
        info = os.fstat(fd)
        owner = self.directory.parent.stat()
        if created:
            if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (owner.st_uid, owner.st_gid):
                os.fchown(fd, owner.st_uid, owner.st_gid)
        elif info.st_uid != owner.st_uid:
            raise StateError(
                f"{self.directory} is owned by uid {info.st_uid}, but its state_dir by uid {owner.st_uid}; "
                "run audit-forwarder (and its tools) as that user, and remove or chown the directory"
            )
        if writer:
            mode = stat.S_IMODE(info.st_mode)
            if mode != DIR_MODE:
                os.fchmod(fd, DIR_MODE)
                log.warning(
                    "the journal's segments directory was accessible to other users; narrowed to 0700",
                    directory=str(self.directory),
                    mode=f"{mode:04o}",
                )
            # its name durable even if a crash came between its creation and this fsync before
            fsync_directory(self.directory.parent)


def _name(segment: int) -> str:
    return f"{segment:020d}{_SUFFIX}"
