"""`audit-forwarder demo`: the README's first command ends here; it must keep working."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

from tests.support.daemon import read_ndjson


def test_demo_collects_every_vendor(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "demo", "--output-dir", str(out), "--entries", "25"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    events = read_ndjson(out)
    per_vendor = {
        v: sum(1 for e in events if e["vendor"] == v) for v in ("codacy", "configcat", "codescoring", "codestax")
    }
    assert per_vendor == {"codacy": 50, "configcat": 25, "codescoring": 25, "codestax": 25}
    assert len({e["id"] for e in events}) == len(events)
    assert "Collected" in result.stdout and "One normalized event" in result.stdout
    # off a terminal (CI, a log) the counts are tab-separated, every value whole, one line a file
    assert "configcat\tconfigcat\t0a3c4b52-7f1e-4d2a-9b61-5c8e2f7d9a10\t25\n" in result.stdout
    assert all(f"{path}  (" in result.stdout for path in out.rglob("*.csv"))
    assert len(list(out.rglob("*.csv"))) == 5
    # the closing hint runs as printed, from anywhere (it names the config by its installed path)
    hint = result.stdout.split("Inspect the journal, cursors and sink offsets with:")[1].strip().splitlines()[0]
    shown = subprocess.run(
        ["bash", "-c", hint.replace("audit-forwarder", f"{sys.executable} -m forwarder", 1)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert shown.returncode == 0 and "events journaled" in shown.stdout, shown.stdout + shown.stderr


def test_demo_presets_adds_okta_github_and_google_workspace(tmp_path: Path) -> None:
    """``demo --presets``: the preset emulators, read through ``type: okta|github|google_workspace``,
    land in the same files as the four vendors, whose counts stay as they were."""
    out = tmp_path / "demo-output"
    result = subprocess.run(
        [sys.executable, "-m", "forwarder", "demo", "--presets", "--output-dir", str(out), "--entries", "10"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    events = read_ndjson(out)
    per_source = Counter((e["source"], e["vendor"], e["organization"]) for e in events)
    assert {key: n for key, n in per_source.items() if key[0] in ("okta", "github", "google_workspace")} == {
        ("okta", "okta", "acme"): 10,
        ("github", "github", "octo-org"): 10,
        ("google_workspace", "google_workspace", "login"): 10,
        ("google_workspace", "google_workspace", "admin"): 10,
    }
    assert sum(per_source.values()) == 4 * 10 + 5 * 10  # the default demo's five organizations too
    assert len({e["id"] for e in events}) == len(events)
    for preset in ("Okta", "Github", "Google Workspace"):
        assert f"{preset} emulator at http://127.0.0.1:" in result.stdout
    assert "google_workspace" in result.stdout.split("Collected")[1]
    assert len(list(out.rglob("*.csv"))) == 9


def test_the_demo_config_ships_in_the_wheel(tmp_path: Path) -> None:
    """``pip install .`` (not editable) must still find the demo's configuration."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("audit_forwarder-*.whl")
    assert "forwarder/demo.yaml" in zipfile.ZipFile(wheel).namelist()
