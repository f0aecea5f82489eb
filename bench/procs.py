"""Child processes of the benchmark and what they cost.

The forwarder's CPU comes from ``os.wait4`` on its own process: the kernel's accounting of
that child (and of any child it waited for) alone, so the receivers, the emulator and the
benchmark's own sampling never count.

Its peak memory does not: ``ru_maxrss`` keeps the high-water mark of the memory the child had
*before* it exec'd, which is the benchmark process's own (forked, or shared under vfork):
``--help`` measured 63 MB that way and 16 MB under ``/usr/bin/time``. A ``python -m MODULE``
command is therefore run through ``PEAK_SHIM``, which runs the module as ``-m`` would and, at
exit, writes the process's ``VmHWM`` (the peak RSS of its own address space since the exec)
to a file; ``ru_maxrss`` stays the fallback when a process dies before writing it.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, delivered)


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

    sampler = threading.Thread(target=sample, daemon=True)
    if count is not None:
        sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    if count is not None:
        sampler.join()
    if not isinstance(out, int):
        out.close()
    peak_kb = usage.ru_maxrss
    if peak_file is not None:
        written = Path(peak_file).read_text().strip()
        os.unlink(peak_file)
        peak_kb = int(written) if written else peak_kb
    return Measured(wall, usage.ru_utime + usage.ru_stime, peak_kb / 1024, proc.returncode, samples)
