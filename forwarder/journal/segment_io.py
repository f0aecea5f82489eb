"""The journal's segment files at the level of one descriptor: whole writes and reads whatever
``pwrite``/``pread`` return, and punching bytes out (``fallocate``, which the standard library
lacks). Kept apart from ``forwarder.journal.segments``, which decides what goes where and when."""

from __future__ import annotations

import ctypes
import errno
import functools
import os

_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (linux/falloc.h)
_ZEROS = bytes(1 << 20)


def write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:  # pwrite may write less than asked (a signal, a nearly full disk)
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def read_all(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset``; fewer only at the end of the file (pread may return
    less than asked, e.g. after a signal)."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def holds_data(fd: int, start: int, end: int) -> bool:
    """Whether [start, end) may hold data (not already a hole), so a restart does not punch
    again what earlier prunes punched."""
    try:
        return os.lseek(fd, start, os.SEEK_DATA) < end
    except OSError as exc:
        return exc.errno != errno.ENXIO  # ENXIO: only holes from ``start`` to the end


def punch_range(fd: int, offset: int, size: int) -> None:
    if _fallocate(fd, _PUNCH_HOLE, offset, size) != 0:  # not on this file system: zeros
        for at in range(offset, offset + size, len(_ZEROS)):
            os.pwrite(fd, memoryview(_ZEROS)[: min(len(_ZEROS), offset + size - at)], at)


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
