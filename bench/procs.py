"""Child processes of the benchmark and what they cost.

The forwarder's CPU comes from ``os.wait4`` on its own process: the kernel's accounting of that
child (and of any child it waited for) alone, so the receivers, the emulator and the benchmark's
own sampling never count. Its peak memory is the ``VmHWM`` of its own address space, read from
``/proc`` while it runs (the last reading before it exits): ``ru_maxrss`` also counts the address
space the child was started from, and CPython starts children with ``vfork``, so every child
reported at least the benchmark's own peak (215 MB for two different sinks in one run, after the
benchmark had read a receiver's output into memory).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PEAK_FILE_ENV = "AF_BENCH_PEAK_FILE"
PEAK_SHIM = f"""
import atexit, os, runpy, sys

def _peak(path=os.environ.pop({PEAK_FILE_ENV!r})):
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            with open(path, "w") as out:
                out.write(line.split()[1])

atexit.register(_peak)
sys.argv.pop(0)
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def start_listening(module_args: Sequence[str], log: Path, timeout: float = 300.0) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m ...`` that prints ``LISTENING <url>`` once ready; return it and the URL."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", *module_args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("LISTENING "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{' '.join(module_args)} did not start: {line!r}; see {log}")
    return proc, line.split(" ", 1)[1]


def stop(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, as systemd stops the daemon; SIGKILL if it has not exited within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, delivered)
    main_thread_cpu_s: float | None = None  # the event loop's thread; the rest is the I/O threads'


def run_measured(
    cmd: Sequence[str],
    env: dict[str, str] | None = None,
    log: Path | None = None,
    count: Callable[[], int] | None = None,
    interval_s: float = 0.1,
    cwd: Path = REPO_ROOT,
) -> Measured:
    """Run ``cmd`` to its end (from ``cwd``, another tree's root for ``--compare``); while it
    runs, sample ``count()`` every ``interval_s``."""
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    out = log.open("wb") if log else subprocess.DEVNULL
    cmd, env = list(cmd), {**os.environ, **(env or {})}
    peak_file = None
    if cmd[:2] == [sys.executable, "-m"]:
        fd, peak_file = tempfile.mkstemp(prefix="af-bench-peak-")
        os.close(fd)
        cmd, env[PEAK_FILE_ENV] = [sys.executable, "-c", PEAK_SHIM, *cmd[2:]], peak_file
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def sample() -> None:
        while not done.wait(interval_s):
            samples.append((time.monotonic() - started, count()))  # type: ignore[misc]

    hwm = [0.0]
    main_cpu = [0.0]

    def watch_memory() -> None:  # the address space after exec is the child's own: VmHWM is its peak
        status = Path(f"/proc/{proc.pid}/status")
        main_stat = Path(f"/proc/{proc.pid}/task/{proc.pid}/stat")
        while not done.wait(0.02):
            try:
                line = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:"))
                main_cpu[0] = thread_cpu_s(main_stat.read_text())
            except (OSError, StopIteration):
                continue  # exited (a zombie has no VmHWM) or not yet readable
            hwm[0] = int(line.split()[1]) / 1024

    sampler = threading.Thread(target=sample, daemon=True)
    if count is not None:
        sampler.start()
    watcher = threading.Thread(target=watch_memory, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    watcher.join()
    if count is not None:
        sampler.join()
    if not isinstance(out, int):
        out.close()
    peak = hwm[0] or usage.ru_maxrss / 1024  # no reading (not Linux, or a process too short to sample)
    return Measured(wall, usage.ru_utime + usage.ru_stime, peak, proc.returncode, samples, main_cpu[0] or None)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu_s(stat: str) -> float:
    """User + system CPU of one thread from its ``/proc/PID/task/TID/stat`` line (fields 14 and 15,
    counted after the command name, which may hold spaces). Read every 20 ms until the process
    exits, so the main thread's figure misses at most its last 20 ms."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
