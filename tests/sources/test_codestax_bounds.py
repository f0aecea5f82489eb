"""CodeStax documents no audit-log endpoint at all (/work/shared/research/sources-api.md, section
4: ``start_date``/``end_date`` are inferred), so nothing says whether its time filter keeps the
instants it names. Served by a loopback API that leaves them out and holds an entry at exactly
every window boundary, the real daemon reads each entry once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import cli, read_ndjson, write_config
from tests.support.spec_emulators import Answer, Request, SpecServer, parse_iso

KEY = "ch_" + "ab" * 32


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ExclusiveCodeStax(SpecServer):
    """``GET /api/audit-logs?skip&limit&start_date&end_date``, ``X-API-Key``, a bare array newest
    first; ``start_date < t < end_date``."""

    def __init__(self) -> None:
        super().__init__("exclusive")
        self.entries: list[dict[str, Any]] = []
        self.planted: list[dict[str, Any]] = []

    def add(self, moment: datetime, action: str) -> None:
        with self.lock:
            self._add(moment, action)

    def _add(self, moment: datetime, action: str) -> None:
        self.entries.append(
            {
                "id": len(self.entries) + 1,
                "timestamp": stamp(moment),
                "action": action,
                "user": {"name": "A", "email": "a@example.com"},
                "target": "repo",
            }
        )

    def answer(self, request: Request) -> Answer:
        if request.path != "/api/audit-logs":
            return Answer(404, {"detail": "Not Found"})
        if request.headers.get("x-api-key") != KEY:
            return Answer(401, {"detail": "Not authenticated"})
        start, end = (parse_iso(request.query[n][-1]) for n in ("start_date", "end_date"))
        skip, limit = int(request.query["skip"][-1]), int(request.query["limit"][-1])
        with self.lock:
            if end < datetime.now(UTC) - timedelta(minutes=1) and all(
                e["timestamp"] != stamp(end) for e in self.entries
            ):
                self._add(end, "auth.login")
                self.planted.append(self.entries[-1])
            chosen = [e for e in self.entries if self.within(parse_iso(e["timestamp"]), start, end)]
        chosen.sort(key=lambda e: (e["timestamp"], e["id"]), reverse=True)
        return Answer(200, chosen[skip : skip + limit])


@pytest.fixture
def codestax() -> Iterator[ExclusiveCodeStax]:
    server = ExclusiveCodeStax()
    server.start()
    yield server
    server.stop()


def test_exclusive_bounds_lose_no_boundary_entry(codestax: ExclusiveCodeStax, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    for hours in (40, 30, 20, 10, 2):
        codestax.add(now - timedelta(hours=hours), "scan.triggered")
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "metrics": {"enabled": False},
            "sources": {
                "codestax": {
                    "type": "codestax",
                    "base_url": f"{codestax.url}/api",
                    "api_key": KEY,
                    "organization": "acme",
                    "limit": 2,
                    "slice_hours": 6,
                    "initial_lookback_days": 2,
                    "lag_s": 1,
                    "max_attempts": 2,
                    "backoff_initial_s": 0.05,
                }
            },
            "sinks": {"out": {"type": "file", "path": str(tmp_path / "out" / "x.ndjson"), "batch_max_age_s": 0.05}},
        },
    )
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    assert len(codestax.planted) >= 5, codestax.planted
    events = read_ndjson(tmp_path / "out")
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    assert sorted(e["raw"]["id"] for e in events) == [e["id"] for e in codestax.entries]
    assert cli(cfg, "once").returncode == 0
    assert len(read_ndjson(tmp_path / "out")) == len(events)
