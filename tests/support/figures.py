"""What the reliability suite measured, printed as one line at the end of the run
(``reliability: lost=0 duplicated=N crashed=0 peak_rss_mb=X``) so a CI log shows the three
promises as numbers, not only as a green run. Tests record through the ``figures`` fixture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Figures:
    lost: int = 0
    duplicated: int = 0
    crashed: int = 0
    peak_rss_kb: int = 0
    recorded: int = 0

    def record(self, *, lost: int = 0, duplicated: int = 0, crashed: int = 0, rss_kb: int = 0) -> None:
        self.lost += lost
        self.duplicated += duplicated
        self.crashed += crashed
        self.peak_rss_kb = max(self.peak_rss_kb, rss_kb)
        self.recorded += 1

    def line(self) -> str:
        return (
            f"reliability: lost={self.lost} duplicated={self.duplicated} crashed={self.crashed} "
            f"peak_rss_mb={self.peak_rss_kb / 1024:.1f}"
        )


FIGURES = Figures()


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size of a live process, from the kernel's own high-water mark."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")
