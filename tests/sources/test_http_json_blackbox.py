"""``type: http_json`` tested from outside: three JSON audit APIs an operator might meet, none a
preset (``tests/support/audit_apis.py``), described in YAML as README.md and
docs/configuration.md say, served from loopback with hostile but valid pages, and read by the
real daemon (``once``, ``run`` with entries added, a restart): every entry exactly once, errors
that name the setting, no secret shown, one API's failure not stopping the others."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.audit_apis import AuditApi, Kind, source
from tests.support.daemon import cli, read_ndjson, write_config


def config(tmp_path: Path, sources: dict[str, dict[str, Any]]) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        {
            "state_dir": str(tmp_path / "state"),
            "shutdown_timeout_s": 5,
            "metrics": {"enabled": False},
            "sources": sources,
            "sinks": {
                "out": {"type": "file", "path": str(tmp_path / "out" / "{source}.ndjson"), "batch_max_age_s": 0.05}
            },
        },
    )


def delivered(tmp_path: Path) -> list[dict[str, Any]]:
    return read_ndjson(tmp_path / "out") if (tmp_path / "out").exists() else []


def assert_each_once(api: AuditApi, events: list[dict[str, Any]]) -> None:
    counts = Counter(e["id"] for e in events)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)
    got = Counter(api.time_of(e["raw"]) for e in events)
    want = Counter(e.ms for e in api.entries)
    assert got == want, f"missing {want - got}, extra {got - want}"


@pytest.fixture(params=["link", "cursor"])
def paged(request: pytest.FixtureRequest) -> Iterator[AuditApi]:
    kind: Kind = request.param
    server = AuditApi(kind)
    server.start()
    yield server
    server.stop()


def test_an_empty_page_with_a_next_link_does_not_end_the_walk(paged: AuditApi, tmp_path: Path) -> None:
    """A page may come empty with a link or cursor to more (a page boundary, filtered-out
    entries): ending the walk there moved the cursor past every entry after it, for good."""
    now = datetime.now(UTC)
    for hours in range(1, 20, 2):
        paged.add(now - timedelta(hours=hours, minutes=3), f"u{hours}")
    paged.hostile.empty_first = True
    result = cli(config(tmp_path, {"api": source(paged, slice_hours=24)}), "once")
    assert result.returncode == 0, result.stderr
    assert_each_once(paged, delivered(tmp_path))
