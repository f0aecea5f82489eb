"""The container image, built and run for real with podman (no Docker engine runs here, and no
image registry is reachable, so the base is Debian bookworm made by debootstrap from the apt
mirror and imported once; podman keeps it for the next run).

The image is started on the host's network against a vendor emulator on 127.0.0.1, with its
metrics endpoint moved to loopback; its configuration, state and file-sink output are bind
mounts. Skipped only where podman is not installed: ``make test`` (and so CI) installs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.daemon import read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.health import get
from tests.support.ports import free_port
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (make test installs it)"),
    pytest.mark.timeout(1200),  # the first run makes the base image; later runs reuse it and the build's layers
]

BASE_IMAGE = "localhost/audit-forwarder-base:bookworm-python3"
IMAGE = "localhost/audit-forwarder:test"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
UID = 10001
ORGS = ["gh/acme"]
STOP_TIMEOUT_S = 60  # what the README tells operators to give `docker stop`
# Where podman runs containers on these machines (a cgroup v1 host without systemd as PID 1).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def debian_mirror() -> str:
    """The Debian archive apt already uses here (a mirror or a proxy may be all that is reachable)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        for uri in re.findall(r"(?m)^(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+)", path.read_text(errors="replace")):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
    return "http://deb.debian.org/debian"


def ensure_base_image() -> str:
    """Debian bookworm with python3 (3.11) and venv, imported as an image: made only once per host."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    assert shutil.which("debootstrap"), "debootstrap is needed once to make the base image (make test installs it)"
    with tempfile.TemporaryDirectory(prefix="af-rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / cache, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [*PODMAN, "import", "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True, timeout=600
        )
        assert tar.wait(timeout=60) == 0 and imported.returncode == 0, imported.stderr
    return BASE_IMAGE


def build_image() -> str:
    """The repository's Dockerfile on the local base; the host's CA bundle lets pip through a
    TLS-inspecting proxy, as the Dockerfile's PIP_CERT build argument documents."""
    args = ["build", "--format", "docker", "--network", "host", "--build-arg", f"BASE={ensure_base_image()}"]
    bundle = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        args += ["--volume", f"{bundle.resolve()}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    podman(*args, "--tag", IMAGE, str(REPO_ROOT), timeout=900)
    return IMAGE


@pytest.fixture(scope="module")
def image() -> str:
    return build_image()


@dataclass
class Container:
    name: str
    port: int
    out: Path

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=15, options={"orgs": ORGS, "span_s": 86400})
    yield emulator
    emulator.stop()


@pytest.fixture
def container(image: str, codacy: EmulatorProcess) -> Iterator[Container]:
    work = Path(tempfile.mkdtemp(prefix="af-container-"))
    work.chmod(0o755)
    state, out = work / "state", work / "out"
    for directory in (state, out):
        directory.mkdir(mode=0o700)
        os.chown(directory, UID, UID)
    config: dict[str, Any] = {
        "sources": {
            "codacy": {
                "type": "codacy",
                "base_url": f"{codacy.url}/api/v3",
                "api_token": "${CODACY_TOKEN}",
                "organizations": ORGS,
                "initial_lookback_days": 7,
                "lag_s": 0,
            }
        },
        "sinks": {"out": {"type": "file", "path": "/srv/out/{organization}.ndjson", "batch_max_age_s": 0.05}},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    (work / "config.yaml").chmod(0o644)
    name, port = f"af-test-{uuid.uuid4().hex[:10]}", free_port()
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        *ULIMITS,
        "--volume",
        f"{work / 'config.yaml'}:/etc/audit-forwarder/config.yaml:ro",
        "--volume",
        f"{state}:/var/lib/audit-forwarder",
        "--volume",
        f"{out}:/srv/out",
        "--env",
        "CODACY_TOKEN=codacy-test-token",
        # on the host's network the image's 0.0.0.0 would listen on every host address: loopback only
        "--env",
        f"AUDIT_FORWARDER_METRICS__LISTEN=127.0.0.1:{port}",
        image,
    )
    try:
        yield Container(name, port, out)
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_image_runs_unprivileged_serves_health_delivers_to_a_volume_and_stops_on_sigterm(
    container: Container,
) -> None:
    wait_until("the events in the mounted volume", lambda: len(read_ndjson(container.out)) == 15 or None, timeout=60)
    events = read_ndjson(container.out)
    assert {e["vendor"] for e in events} == {"codacy"} and len({e["id"] for e in events}) == 15
    assert all(path.stat().st_uid == UID for path in container.out.rglob("*.ndjson"))

    # the daemon itself (PID 1 of the container) runs as the image's unprivileged user
    pid = int(container.inspect("{{.State.Pid}}"))
    uid_line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(UID)] * 4, uid_line
    assert "audit-forwarder" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")

    response = get(f"http://127.0.0.1:{container.port}/healthz")
    assert response.status_code == 200, response.text
    healthcheck = podman("healthcheck", "run", container.name, check=False)
    assert healthcheck.returncode == 0, healthcheck.stdout + healthcheck.stderr + container.logs()
    assert container.inspect("{{.Config.StopSignal}}") in ("SIGTERM", "15")

    podman("stop", "--time", str(STOP_TIMEOUT_S), container.name, timeout=STOP_TIMEOUT_S + 60)
    # 0, not 137: the daemon finished on SIGTERM before podman's SIGKILL at the stop timeout
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    messages = [orjson.loads(line).get("event") for line in container.logs().splitlines() if line.startswith("{")]
    assert "stop requested; finishing in-flight batches" in messages and "audit-forwarder stopped" in messages
    assert len(read_ndjson(container.out)) == 15


def test_the_dockerfile_pins_its_base_and_dependencies() -> None:
    """A reproducible build: the default base is a digest, the install is constrained to exact
    versions, and every runtime dependency of pyproject.toml is among them."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    base = re.search(r"(?m)^ARG BASE=(\S+)$", text)
    assert base and re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", base.group(1)), base
    stages = re.findall(r"(?m)^FROM .*", text)
    assert len(stages) == 2 and all(line == "FROM ${BASE}" or line.startswith("FROM ${BASE} AS ") for line in stages)
    assert "PIP_CONSTRAINT=/src/constraints.txt" in text and "constraints.txt" in text.split("COPY", 1)[1]
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version
    for declared in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(declared)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned), f"constraints.txt pins {requirement.name}=={pinned}: {declared}"
    assert {"setuptools", "wheel"} <= pins.keys()
