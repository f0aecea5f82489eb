"""How long the evidence ledger keeps each source's rows: the cutoffs the daemon's pruner applies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DAY_MS = 86_400_000
UNKNOWN_RETENTION_DAYS = 365.0  # a vendor whose retention is not known (inferred; set evidence.ledger_retention_days)


def retention_days(source: Any, setting: float | None) -> float:
    """The setting, else the source's vendor retention (``WindowedSource.retention``)."""
    if setting is not None:
        return setting
    retention = getattr(source, "retention", None)
    days = retention() if callable(retention) else getattr(source, "retention_days", None)
    return float(days) if isinstance(days, int | float) and days > 0 else UNKNOWN_RETENTION_DAYS


def cutoffs(sources: Iterable[Any], setting: float | None, now_ms: int) -> tuple[dict[str, int], int]:
    """Per source name, the event time (ms) before which its rows go; and the cutoff of streams
    whose source is no longer configured (the longest retention of all, so nothing goes early)."""
    days = {s.name: retention_days(s, setting) for s in sources}
    longest = max([retention_days(None, setting), *days.values()])
    return {name: now_ms - int(d * DAY_MS) for name, d in days.items()}, now_ms - int(longest * DAY_MS)
