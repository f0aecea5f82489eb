"""CodeScoring's audit endpoint and its date filters are undocumented (``created_at_after`` and
``created_at_before`` are inferred): nothing says whether they keep the instants they name. A
poll's window starts where the last one ended minus ``overlap_s``; with ``overlap_s: 0`` an
entry at exactly that instant fell outside both windows of a server that leaves the bounds out.
The real daemon, two polls, a loopback server that plants an entry at each window's end."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import cli, read_ndjson, write_config
from tests.support.spec_emulators import Answer, Request, SpecServer, parse_iso

TOKEN = "cs-token-SECRET-42"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ExclusiveCodescoring(SpecServer):
    """``GET /api/audit_logs/?page&per_page&created_at_after&created_at_before``, a bare list
    newest first, ``after < t < before``."""

    def __init__(self) -> None:
        super().__init__("exclusive")
        self.entries: list[dict[str, Any]] = []
        self.planted: list[dict[str, Any]] = []

    def _add(self, moment: datetime, message: str) -> None:
        self.entries.append(
            {"id": len(self.entries) + 1, "created_at": stamp(moment), "actor": "admin", "message": message}
        )

    def add(self, moment: datetime, message: str) -> None:
        with self.lock:
            self._add(moment, message)

    def answer(self, request: Request) -> Answer:
        if request.path != "/api/audit_logs/":
            return Answer(404, {"detail": "Not found."})
        if request.headers.get("authorization") != f"Token {TOKEN}":
            return Answer(401, {"detail": "Invalid token."})
        start = parse_iso(request.query["created_at_after"][-1])
        end = parse_iso(request.query["created_at_before"][-1])
        page, size = int(request.query["page"][-1]), int(request.query["per_page"][-1])
        with self.lock:
            if page == 1 and all(e["created_at"] != stamp(end) for e in self.entries):
                self._add(end, "at a window's end")  # written at the very instant the window ends
                self.planted.append(self.entries[-1])
            chosen = [e for e in self.entries if self.within(parse_iso(e["created_at"]), start, end)]
        chosen.sort(key=lambda e: (e["created_at"], e["id"]), reverse=True)
        return Answer(200, chosen[(page - 1) * size : page * size])


@pytest.fixture
def server() -> Iterator[ExclusiveCodescoring]:
    api = ExclusiveCodescoring()
    api.start()
    yield api
    api.stop()


def test_exclusive_bounds_with_no_overlap_lose_nothing(server: ExclusiveCodescoring, tmp_path: Path) -> None:
    server.add(datetime.now(UTC) - timedelta(hours=3), "older")
    cfg = write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "metrics": {"enabled": False},
            "sources": {
                "cs": {
                    "type": "codescoring",
                    "base_url": server.url,
                    "token": TOKEN,
                    "installation": "main",
                    "per_page": 2,
                    "initial_lookback_days": 1,
                    "lag_s": 0,
                    "overlap_s": 0,
                    "max_attempts": 2,
                    "backoff_initial_s": 0.05,
                }
            },
            "sinks": {"out": {"type": "file", "path": str(tmp_path / "out" / "x.ndjson"), "batch_max_age_s": 0.05}},
        },
    )
    for _ in range(2):
        result = cli(cfg, "once")
        assert result.returncode == 0, result.stderr
        time.sleep(0.05)
    assert len(server.planted) >= 2
    events = read_ndjson(tmp_path / "out")
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    # the last window's end is read by the next poll; every earlier entry is in
    delivered = {e["raw"]["id"] for e in events}
    assert {e["id"] for e in server.entries[:-1]} <= delivered, (delivered, server.entries)
    assert TOKEN not in result.stderr + result.stdout
