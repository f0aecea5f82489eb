"""`audit-forwarder demo`: the README's first command ends here; it must keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.daemon import read_ndjson


def test_demo_collects_every_vendor(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "demo", "--output-dir", str(out), "--entries", "25"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    events = read_ndjson(out)
    per_vendor = {
        v: sum(1 for e in events if e["vendor"] == v) for v in ("codacy", "configcat", "codescoring", "codestax")
    }
    assert per_vendor == {"codacy": 50, "configcat": 25, "codescoring": 25, "codestax": 25}
    assert len({e["id"] for e in events}) == len(events)
    assert "Collected" in result.stdout and "One normalized event" in result.stdout
    assert len(list(out.rglob("*.csv"))) == 5
