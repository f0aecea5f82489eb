"""File sink: NDJSON or CSV files, one per path template, fsynced before the offset moves.

The write path runs in a worker thread (file I/O and fsync block). Rotation happens before a
write once a file is over ``rotate_max_bytes`` or older than ``rotate_max_age_s`` (a file found
at start-up is as old as the last rotation's stamp: a restart does not start its age again); the
rotated file is renamed with a UTC timestamp and optionally gzipped. The gzip is written as
``.gz.partial``, fsynced and renamed before the rotated file is deleted, so a crash leaves
one of them whole; what a crash left unfinished is finished when the daemon next writes to
that path. A crash mid-batch can leave a partial batch in the file; the delivery layer then
re-sends the whole batch, so readers see duplicates with identical ids, never a gap.
A new file's name, the directories made for it and a rotation's rename are made durable
(their directory fsynced) before ``send`` returns, like the lines themselves.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import errno
import glob
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar

import structlog

from forwarder.evidence.file_digests import FileDigests
from forwarder.formats import HEADERS, LINE_ENDS, get_formatter
from forwarder.record import Record
from forwarder.state_files import fsync_directory, try_create_file
from sinks.base import DeliveryReport, FatalSinkError, RetryableError, bounded, gzip_file
from sinks.file_config import FileSinkConfig

log = structlog.get_logger("sinks.file")


@dataclass
class _Open:
    handle: BinaryIO
    opened_at: float


_ROTATED = re.compile(r"\.\d{8}T\d{6}Z(?:\.\d+)?")  # what ``_rotate`` appends to a file's name
_STAMP = re.compile(r"\.(\d{8}T\d{6}Z)(?:\.\d+)?(?:\.gz)?")


def _started_at(path: Path, now: float) -> float:
    """When an existing file was started, for ``rotate_max_age_s``: the last rotation's stamp
    (the next file is started by the write that rotated). Counted from this process's open, a
    daemon restarted more often than the age never rotated by age. A file never rotated has no
    such record (Linux keeps no creation time Python can read): counted from now, as before."""
    latest = None
    for sibling in path.parent.glob(f"{glob.escape(path.name)}.*"):
        found = _STAMP.fullmatch(sibling.name[len(path.name) :])
        if found:
            stamp = calendar.timegm(time.strptime(found.group(1), "%Y%m%dT%H%M%SZ"))
            latest = stamp if latest is None else max(latest, stamp)
    return now if latest is None else min(now, float(latest))


def _safe(value: str) -> str:
    """A name part of the path; ``..`` would climb out of the configured directory."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in value)
    return safe if safe.strip(".") else "_"


# mkdir errors no retry can fix: no permission, a read-only or pseudo file system (/proc), a loop
_CANNOT_CREATE = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS, errno.ELOOP, errno.ENAMETOOLONG}

# Room a path component must leave for what rotation appends (".20261124T101010Z.12.gz")
_ROTATION_ROOM = 24
_NAME_MAX = 255


def _write_all(handle: BinaryIO, data: bytes) -> None:
    """Unbuffered, so a write that fails halfway leaves nothing behind in a buffer to flush later."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view) or 0 :]


def _end_unfinished_line(path: Path) -> bool:
    """A process killed halfway through a write leaves part of a line, and the batch sent again
    would be glued onto it, its first event unreadable. What follows the last LF was never
    confirmed: it is cut; where the file may not be cut (append-only, write-only, or no LF
    within the last 16 MiB) a LF ends the fragment on its own line instead."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end == 0:
                return False
            handle.seek(end - 1)
            if handle.read(1) == b"\n":
                return False
            start = max(0, end - (16 << 20))
            handle.seek(start)
            lf = handle.read(end - start).rfind(b"\n")
    except (FileNotFoundError, PermissionError):  # nothing yet, or a write-only file: nothing to tell
        return False
    if lf != -1:
        with contextlib.suppress(PermissionError):  # an append-only file cannot be cut
            os.truncate(path, start + lf + 1)
            return True
    with path.open("ab", buffering=0) as handle:
        _write_all(handle, b"\n")
    return True


def directory_mode_for(mode: int) -> int:
    """Who may read the files may list their directory; no one else may write in it (under
    umask 000, mkdir's 0777 let anyone delete an archive or plant a symlink at the next name)."""
    return 0o700 | (mode & 0o077) | ((mode & 0o044) >> 2)


class FileSink:
    type_name: ClassVar[str] = "file"

    def __init__(self, name: str, config: FileSinkConfig) -> None:
        self.name = name
        self.config = config
        self.formatter = get_formatter(config.format, config.format_options)
        self.header = HEADERS.get(config.format)
        self.line_end = LINE_ENDS.get(config.format, b"\n")  # ends in LF: _end_unfinished_line holds
        self.files: dict[Path, _Open] = {}
        self._paths: dict[tuple[str, str, str], Path] = {}
        self._resumed: set[Path] = set()  # paths whose interrupted compressions were finished
        self._lock = threading.Lock()  # a digest's scan sees no write or rotation half done
        self.digests = (
            None
            if config.evidence is None
            else FileDigests(
                name, config.path, config.evidence, self._lock, config.mode, directory_mode_for(config.mode)
            )
        )

    def path_for(self, source: str, vendor: str, organization: str) -> Path:
        # Cached: a few triples cover every record, and rebuilding the path per record was a
        # tenth of the forwarder's CPU.
        key = (source, vendor, organization)
        path = self._paths.get(key)
        if path is None:
            names = {"source": _safe(source), "vendor": _safe(vendor), "organization": _safe(organization)}
            path = Path(self.config.path.format(**names))
            if any(len(part.encode()) > _NAME_MAX - _ROTATION_ROOM for part in path.parts):
                # a name too long for a file name (and its rotation suffix): bounded, with a hash
                path = Path(self.config.path.format(**{k: bounded(v, 150) for k, v in names.items()}))
            self._paths[key] = path
        return path

    async def start(self) -> None:
        if self.digests is not None:
            self.digests.start()

    async def send(self, batch: Sequence[Record]) -> DeliveryReport | None:
        # Looked up by the strings: hashing a Path per record costs more than formatting it.
        groups: dict[Path, list[bytes]] = {}
        by_key: dict[tuple[str, str, str], list[bytes]] = {}  # keys sharing a path share its list
        formatter = self.formatter
        for record in batch:
            key = (record.source, record.vendor, record.organization)
            lines = by_key.get(key)
            if lines is None:
                lines = by_key[key] = groups.setdefault(self.path_for(*key), [])
            lines.append(formatter(record))
        try:
            await asyncio.to_thread(self._write, groups)
        except PermissionError as exc:
            raise FatalSinkError(f"file sink {self.name!r} cannot write {exc.filename}: permission denied") from None
        except OSError as exc:  # a full disk, an I/O error: retried; the operator is told which file and why
            reason = exc.strerror or str(exc)
            raise RetryableError(f"file sink {self.name!r} cannot write {exc.filename}: {reason}") from None
        return None

    def _write(self, groups: dict[Path, list[bytes]]) -> None:
        with self._lock:
            self._write_groups(groups)

    def _write_groups(self, groups: dict[Path, list[bytes]]) -> None:
        for path, lines in groups.items():
            entry = self._open(path)
            lines.append(b"")  # the last line's end, without copying the joined batch once more
            before = entry.handle.tell()
            try:
                _write_all(entry.handle, self.line_end.join(lines))
                if self.config.fsync:
                    os.fsync(entry.handle.fileno())
            except BaseException as exc:  # what this write got out goes, or the retry would be glued onto it
                with contextlib.suppress(OSError):
                    os.ftruncate(entry.handle.fileno(), before)
                entry.handle.close()
                del self.files[path]
                if isinstance(exc, OSError) and exc.filename is None:  # a write names no file: "[Errno 28]" alone
                    exc.filename = str(path)
                raise

    def _open(self, path: Path) -> _Open:
        entry = self.files.get(path)
        if entry is not None:
            size = entry.handle.tell()
            if size >= self.config.rotate_max_bytes or time.time() - entry.opened_at >= self.config.rotate_max_age_s:
                entry.handle.close()
                del self.files[path]
                self._rotate(path)
                entry = None
        if entry is None:
            self._make_directories(path.parent)
            if path not in self._resumed:
                self._finish_compressions(path)
            if _end_unfinished_line(path):
                log.warning(
                    "file sink ended an unfinished last line left by an interrupted write; its batch is sent again",
                    sink=self.name,
                    path=str(path),
                )
            opened_at = self._rotate_if_due(path)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, self.config.mode)
            except FileExistsError:  # O_CREAT still: a dangling symlink's target is created, as it always was
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.config.mode)
            else:
                os.fchmod(fd, self.config.mode)  # the umask took bits away (0660 under umask 022 was 0640)
                self._sync_directory(path.parent)  # the new name, before any offset moves past its events
            handle = os.fdopen(fd, "ab", buffering=0)
            if handle.seek(0, os.SEEK_END) == 0 and self.header is not None:
                _write_all(handle, self.header + self.line_end)
            entry = _Open(handle, opened_at)
            self.files[path] = entry
        return entry

    def _rotate_if_due(self, path: Path) -> float:
        """A file this process did not start (a restart) is rotated before its first write here
        if it is already over either limit, as one it had open would be; returns when the file
        to be written was started."""
        now = time.time()
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return now
        started = _started_at(path, now)
        if size > 0 and (size >= self.config.rotate_max_bytes or now - started >= self.config.rotate_max_age_s):
            self._rotate(path)
            return now
        return started

    def _rotate(self, path: Path) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = path.with_name(f"{path.name}.{stamp}")
        n = 1
        while target.exists() or Path(f"{target}.gz").exists():
            target = path.with_name(f"{path.name}.{stamp}.{n}")
            n += 1
        path.rename(target)
        self._sync_directory(path.parent)  # or a power cut could bring the old name back over the new file
        if self.config.compress_rotated:
            self._compress(target)

    def _sync_directory(self, directory: Path) -> None:
        """A new or renamed name is durable only once its directory is fsynced; ``fsync: false``
        gives that up along with the files' own fsync."""
        if self.config.fsync:
            fsync_directory(directory)

    def _finish_compressions(self, path: Path) -> None:
        """A crash while rotating can leave a rotated file not yet compressed (with or without
        its ``.gz.partial``), or whole beside its finished ``.gz`` (killed before the delete):
        the first time this process writes to that path, compress the one, delete the other."""
        self._resumed.add(path)
        if not self.config.compress_rotated:
            return
        for leftover in sorted(path.parent.glob(f"{glob.escape(path.name)}.*")):
            suffix = leftover.name[len(path.name) :]
            if suffix.endswith(".gz.partial") and not Path(str(leftover)[: -len(".gz.partial")]).exists():
                leftover.unlink(missing_ok=True)  # its source removed by hand, or just compressed here
            elif _ROTATED.fullmatch(suffix):
                if Path(f"{leftover}.gz").exists():  # fsynced before its rename: whole
                    leftover.unlink()
                else:
                    self._compress(leftover)

    def _compress(self, rotated: Path) -> None:
        """Replace ``rotated`` by its gzip, never losing both: the ``.gz`` is written under a
        temporary name and fsynced, renamed, and only once that rename is durable is the
        uncompressed file deleted (without the fsyncs, a power cut could keep the deletion
        and lose the compressed data, which was only in the page cache)."""
        partial = Path(f"{rotated}.gz.partial")
        gzip_file(rotated, partial, self.config.compress_level, self.config.mode)
        partial.rename(f"{rotated}.gz")
        fsync_directory(rotated.parent)
        rotated.unlink()

    @property
    def _where(self) -> str:
        return f"file sink {self.name!r} (sinks.{self.name}.path {self.config.path})"

    def _make_directories(self, directory: Path) -> list[Path]:
        """``mkdir -p``, returning the directories it created (outermost first), each new name
        made durable in its parent like a new file's. A directory that cannot be created (no
        permission, a read-only or pseudo file system such as /proc) is a FatalSinkError:
        retrying cannot make it, and a retried FileNotFoundError said neither which setting nor
        that mkdir failed."""
        missing = [d for d in (directory, *directory.parents) if not d.is_dir()][::-1]
        created: list[Path] = []
        directory_mode = directory_mode_for(self.config.mode)
        for d in missing:
            try:
                d.mkdir(mode=directory_mode)
                os.chmod(d, directory_mode)  # as the files: whatever the umask
            except FileExistsError:
                if not d.is_dir():
                    raise  # a file in the way: retried (dead-lettered with a finite max_attempts) until removed
                continue  # made meanwhile (another sink writing under the same parent)
            except OSError as exc:
                if exc.errno not in _CANNOT_CREATE:
                    raise  # disk full or I/O: may pass, so the batch is retried
                raise FatalSinkError(f"{self._where}: cannot create directory {d}: {exc.strerror}") from None
            created.append(d)
            self._sync_directory(d.parent)
        return created

    async def check(self) -> str:
        return await asyncio.to_thread(self._check)

    def _check(self) -> str:
        """Tries what the sink will do: creates the directories before the first placeholder as
        ``send`` would, creates and removes a probe file in there, then removes the directories
        it created, so nothing is left behind (an access() test passed /proc, where nothing can
        be created)."""
        parts = Path(self.config.path).parent.parts
        fixed = Path(*parts[: next((i for i, part in enumerate(parts) if "{" in part), len(parts))] or ".")
        try:
            created = self._make_directories(fixed)
        except OSError as exc:  # a file in the way: retried by send, but the check must fail
            raise FatalSinkError(f"{self._where}: cannot create directory {exc.filename}: {exc.strerror}") from None
        try:
            try_create_file(fixed, self.config.mode)
        except OSError as exc:
            raise FatalSinkError(f"{self._where}: cannot create a file in {fixed}: {exc.strerror}") from None
        finally:
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()
        if created:
            return (
                f"sinks.{self.name}.path: created {created[0]}, a file in {fixed}, and removed them again "
                "(the sink creates them at its first write)"
            )
        return f"sinks.{self.name}.path: created and removed a file in {fixed}"

    async def close(self) -> None:
        files, self.files = self.files, {}
        for entry in files.values():
            await asyncio.to_thread(entry.handle.close)
        if self.digests is not None:
            await self.digests.stop()
