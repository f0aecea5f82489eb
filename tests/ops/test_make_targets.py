"""The README's two commands through the real ``make``: ``make demo`` installs the runtime only
and says what it does at each step; ``make test`` adds the test tools and the Debian packages
the integration tests use, also after a ``make demo`` made the virtualenv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.integration


def make(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_make_demo_installs_the_runtime_only_and_says_what_it_does(tmp_path: Path) -> None:
    venv, out = tmp_path / "venv", tmp_path / "demo-output"
    result = make(f"VENV={venv}", f"DEMO_OUTPUT={out}", f"PYTHON={sys.executable}", "demo", timeout=600)
    steps = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert steps == [
        f"==> creating the virtualenv {venv}",
        f"==> upgrading pip in {venv}",
        f"==> installing audit-forwarder and its runtime dependencies into {venv} (pip install -e .)",
        f"==> running the demo: vendor emulators on 127.0.0.1, the daemon, output in {out}/",
    ], result.stdout
    assert "Collected" in result.stdout and any(out.rglob("*.ndjson"))
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "freeze"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.lower()
    assert "audit-forwarder==" in installed and "httpx==" in installed
    for tool in ("pytest", "moto", "mypy", "ruff", "matplotlib", "hypothesis"):
        assert f"\n{tool}==" not in f"\n{installed}", f"make demo installed {tool}"

    # the same virtualenv: `make test` must still install the test tools (dry run: what it would do)
    planned = make("-n", f"VENV={venv}", "test").stdout
    assert "pip install -q -e '.[test]'" in planned and "pytest -q" in planned
    # and a second `make demo` installs nothing
    assert "pip install" not in make("-n", f"VENV={venv}", f"DEMO_OUTPUT={out}", "demo").stdout


def test_make_test_installs_the_container_tools_and_then_demo_needs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    planned = make("-n", f"VENV={venv}", "test").stdout
    assert "pip install -q -e '.[test]'" in planned
    for package in ("podman", "runc", "debootstrap", "uidmap", "slirp4netns", "fuse-overlayfs"):
        assert f" {package} " in planned, f"make test does not install {package}"
    for stamp in (".installed", ".runtime"):  # what `make test` leaves: the extras, and so the runtime too
        (venv / stamp).touch()
    assert "pip install" not in make("-n", f"VENV={venv}", "demo").stdout
    assert "pip install" not in make("-n", f"VENV={venv}", "test").stdout
