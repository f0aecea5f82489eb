"""Memory: a large backlog streams through in bounded memory.

100,000 Codacy entries are waiting on the first start. The daemon must page through them
(a window at a time, the journal in between), so its peak RSS (the kernel's VmHWM of the
daemon process) stays under a fixed bound however long the backlog is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from forwarder import memory
from tests.support.config import file_sink, make_config
from tests.support.daemon import DaemonProcess
from tests.support.emulators import EmulatorProcess, running
from tests.support.figures import Figures, vm_hwm_kb
from tests.support.vendors import codacy_source
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

BACKLOG = 100_000
PEAK_RSS_LIMIT_MB = 250


@pytest.fixture
def backlog() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=BACKLOG, options={"orgs": ["gh/acme"], "span_s": 2 * 86400})
    yield emulator
    emulator.stop()


def count_lines(directory: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in directory.glob("*.ndjson"))


def test_large_backlog_stays_within_the_memory_bound(
    tmp_path: Path, backlog: EmulatorProcess, figures: Figures
) -> None:
    out = tmp_path / "out"
    source = codacy_source(backlog.url, organizations=["gh/acme"], slice_hours=2, overlap_s=60, interval_s=5)
    cfg = make_config(tmp_path, source, {"file": file_sink(out, batch_max_events=2000, rotate_max_bytes=1 << 40)})
    began = time.monotonic()
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        wait_until(
            f"{BACKLOG} events in the file sink",
            lambda: count_lines(out) >= BACKLOG,
            timeout=150,
            every=1.0,
            detail=daemon.log,
        )
        took = time.monotonic() - began
        peak_kb = vm_hwm_kb(daemon.pid)
        crashed = daemon.crashed()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert not crashed, daemon.log()[-3000:]
    ids = [orjson.loads(line)["id"] for path in out.glob("*.ndjson") for line in path.read_bytes().splitlines()]
    unique = len(set(ids))
    figures.record(lost=BACKLOG - unique, duplicated=len(ids) - unique, rss_kb=peak_kb)
    print(f"\nmemory: {BACKLOG} entries in {took:.0f}s ({BACKLOG / took:.0f}/s), peak RSS {peak_kb / 1024:.1f} MB")
    assert unique == BACKLOG, f"{BACKLOG - unique} entries lost"
    assert peak_kb / 1024 < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_kb / 1024:.1f} MB over {PEAK_RSS_LIMIT_MB} MB"


@pytest.mark.parametrize(
    ("setting", "variable", "expected"),
    [
        (memory.limit_malloc_arenas, "MALLOC_ARENA_MAX", (memory.M_ARENA_MAX, 1)),
        (memory.pin_mmap_threshold, "MALLOC_MMAP_THRESHOLD_", (memory.M_MMAP_THRESHOLD, 4 << 20)),
    ],
    ids=["arenas", "mmap-threshold"],
)
def test_malloc_is_tuned_unless_the_operator_chose(
    monkeypatch: pytest.MonkeyPatch, setting: Callable[[], None], variable: str, expected: tuple[int, int]
) -> None:
    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: Libc())
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.delenv(variable, raising=False)
    setting()
    assert calls == [expected]
    monkeypatch.setenv(variable, "8")  # the operator's choice is glibc's to apply
    setting()
    monkeypatch.delenv(variable)
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))  # musl: no mallopt to call
    setting()
    assert calls == [expected]


def test_the_freed_heap_is_released_on_glibc_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: Libc())
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    memory.release_freed_heap()
    assert calls == [0]
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("", ""))  # musl: no malloc_trim to call
    memory.release_freed_heap()
    assert calls == [0]
