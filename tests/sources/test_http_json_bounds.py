"""``http_json`` against APIs whose time filter leaves out the instants it names (``from < t <
to``) and that hold an entry at exactly every window boundary: the real daemon reads each entry
once, whether the walk is journaled page by page (next link, cursor) or held to the slice's end
(offset), and whether the bounds are written in milliseconds or whole seconds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from tests.support.audit_apis import AuditApi, Kind, source
from tests.support.config import files_per_source_config
from tests.support.daemon import cli, read_ndjson


@pytest.fixture(params=["link", "cursor", "offset"])
def api(request: pytest.FixtureRequest) -> Iterator[AuditApi]:
    kind: Kind = request.param
    server = AuditApi(kind, "exclusive")
    server.start()
    yield server
    server.stop()


def test_exclusive_bounds_lose_no_boundary_entry(api: AuditApi, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    for hours in (20, 13, 7, 2):
        api.add(now - timedelta(hours=hours, seconds=7), f"h{hours}")
    api.plant_at_to = True
    cfg = files_per_source_config(tmp_path, {"api": source(api)})
    result = cli(cfg, "once")
    assert result.returncode == 0, result.stderr
    assert len(api.planted) >= 3, api.planted  # the walk is sliced: inner window ends hold entries
    events = read_ndjson(tmp_path / "out")
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    got = sorted(api.time_of(e["raw"]) for e in events)
    assert got == sorted(e.ms for e in api.entries), "entries at a window boundary were lost"
    # a second poll re-reads the overlap and the padded ends: nothing comes twice
    assert cli(cfg, "once").returncode == 0
    again = read_ndjson(tmp_path / "out")
    assert len(again) == len(events), Counter(e["id"] for e in again).most_common(3)


def test_inclusive_setting_asks_exact_windows(tmp_path: Path) -> None:
    """time_bounds: inclusive is the operator saying the vendor documents them so: the window
    asked for is exactly the slice, no wider."""
    server = AuditApi("offset", "inclusive")
    server.start()
    try:
        server.add(datetime.now(UTC) - timedelta(hours=3))
        cfg = files_per_source_config(tmp_path, {"api": source(server, time_bounds="inclusive")})
        assert cli(cfg, "once").returncode == 0
        spans = sorted({(int(r.query["from_ms"][0]), int(r.query["to_ms"][0])) for r in server.requests})
        assert len(spans) >= 2 and all(nxt[0] == prev[1] for prev, nxt in pairwise(spans)), spans
    finally:
        server.stop()
