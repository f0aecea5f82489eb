"""Process memory at start-up and reload: fewer malloc arenas, large blocks always in their own
mappings, and what start-up built frozen out of the cycle collector's way. All three shape the
peak RSS of a draining backlog (``tests/reliability/test_memory.py``)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform

M_ARENA_MAX = -8  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20  # pinned (see ``pin_mmap_threshold``): above a chunk (1 MiB) and an S3 batch (2 MiB)


def tune_gc() -> None:
    """Everything start-up (or a reload) built lives until the next reload: frozen, the cycle
    collector stops re-scanning it on every collection while a backlog drains; a reload
    unfreezes it first (``thaw``), so what the old configuration built can still be collected.
    The thresholds stay at their defaults: httpx leaves each response in a reference cycle with
    its request body, and only frequent young collections free those megabytes promptly."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """Before a reload: what the old configuration built may now be garbage, cycles included."""
    gc.unfreeze()


def limit_malloc_arenas(arenas: int = 1) -> None:
    """glibc gives each thread that allocates under contention an arena of its own, and memory
    freed in one arena is never reused by another: the journal thread and the sinks' worker
    threads (S3's gzip and PUTs) each kept their own freed megabytes, raising the peak RSS.
    One arena (``MALLOC_ARENA_MAX=1``): with two, the journal thread's (its reads of chunks,
    SQLite's page cache, the page's transaction) held ~9 MB resident apart from the main
    heap's free space, and a 100,000-event file-sink ``once`` peaked 2 MB higher (73.1 against
    71.0 MB, three runs each; CPU the same within the noise: the event loop and the journal
    thread seldom allocate large blocks at the same moment, small objects go to Python's own
    allocator under the GIL). An operator's own setting wins, and other C libraries (musl)
    are left alone. Called before the first worker thread starts."""
    if "MALLOC_ARENA_MAX" not in os.environ:
        _glibc("mallopt", M_ARENA_MAX, arenas)


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> None:
    """glibc serves a block of at least 128 KiB with its own ``mmap`` and gives it back on free,
    but each such free raises that threshold to the freed size (up to 32 MiB): after the first
    large answer, answers and batches were carved from the heap instead, where freed megabytes
    stay resident between the smaller objects around them. Pinned at 4 MiB, a vendor's large
    answers come and go with their own mappings, while the megabyte chunk buffers and batches,
    made and freed thousands of times in a drain, stay in the heap: pinned at glibc's 128 KiB
    they cost a fresh mapping, its page faults and zeroing each time (+2 to +4 s of system CPU
    per million events, for 1-2 MB less RSS; docs/performance.md, round 10).
    ``MALLOC_MMAP_THRESHOLD_`` (glibc's own variable) wins, as for the arenas. Set in-process,
    so systemd, the container and cron alike get it."""
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        _glibc("mallopt", M_MMAP_THRESHOLD, threshold)


def release_freed_heap() -> None:
    """After a one-off build that parsed megabytes and let most of them go again (botocore's data
    files, read as an S3 client is built: the endpoints of every AWS service, of which the
    client keeps only its own): glibc gives back only the top of a heap by itself, and the
    freed pages between the blocks that stay remained resident; ``malloc_trim`` returns every
    whole free page. Not on a hot path: each call walks the arenas. Other C libraries (musl)
    are left alone."""
    _glibc("malloc_trim", 0)


def _glibc(function: str, *args: int) -> None:
    """Calls glibc's ``function`` if this process runs on glibc; elsewhere (musl) nothing."""
    if platform.libc_ver()[0] != "glibc":
        return
    with contextlib.suppress(OSError, AttributeError):
        getattr(ctypes.CDLL(None), function)(*args)
