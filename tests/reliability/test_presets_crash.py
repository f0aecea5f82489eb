"""Promise 1 for the presets: SIGKILLs at random moments while Okta, GitHub and Google Workspace
(their emulators, rate limits stated in headers and spent along the way) feed the four sink
types (file, rsyslog over TCP, the Splunk HEC receiver, moto S3). After a final clean ``once``
every entry of every preset is in every receiver, and a duplicate is the same event.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.presets.support import ORGS, PRESETS, expected_keys, preset_source
from tests.support.config import make_config
from tests.support.daemon import cli, start
from tests.support.emulators import EmulatorProcess, running_all
from tests.support.receivers import AWS_ENV, Receivers

pytestmark = pytest.mark.integration

KILLS = 12
SEED = 20261206
# Okta and GitHub state a limit that a backfill spends: the kills land in waits for the reset too.
OPTIONS: dict[str, dict[str, Any]] = {
    "okta": {"config": {"rate_limit": 8, "rate_window_s": 1}},
    "github": {"config": {"rate_limit": 8, "rate_window_s": 1}},
    "google_workspace": {},
}


@pytest.fixture
def emulators() -> Iterator[dict[str, EmulatorProcess]]:
    options = {name: {"span_s": 2 * 86400, "orgs": ORGS[name], **OPTIONS[name]} for name in PRESETS}
    with running_all(20, options) as started:
        yield started


def test_sigkills_lose_nothing_from_any_preset_in_any_sink(
    tmp_path: Path, emulators: dict[str, EmulatorProcess], receivers: Receivers
) -> None:
    sources = {
        name: preset_source(
            name,
            emulator.url,
            tmp_path,
            params={"okta": {"limit": 7}, "github": {"per_page": 7}, "google_workspace": {"maxResults": 7}}[name],
            rate_limit={"early_limit": 1},
            slice_hours=12,
        )
        for name, emulator in emulators.items()
    }
    cfg = make_config(tmp_path, sources, receivers.sinks())
    rng = random.Random(SEED)
    unexpected_exits = []
    for life in range(KILLS):
        for name, emulator in emulators.items():
            more = {"generate": rng.randint(1, 6), "span_s": 5, "orgs": ORGS[name]}
            emulator.control("POST", "entries", more)
        daemon = start(cfg, "run", env=AWS_ENV)
        time.sleep(rng.uniform(0.3, 1.5))
        if daemon.poll() is not None:
            unexpected_exits.append((life, daemon.returncode, daemon.stderr.read() if daemon.stderr else b""))
        else:
            os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)
        if daemon.stderr:
            daemon.stderr.close()
    final = cli(cfg, "once", "--timeout", "150", timeout=240, env=AWS_ENV)
    assert final.returncode == 0, final.stderr[-3000:]
    assert not unexpected_exits, f"daemon exited on its own: {unexpected_exits[:2]!r}"

    want_by_preset = {name: expected_keys(name, emulator.entries()) for name, emulator in emulators.items()}
    want = set().union(*want_by_preset.values())
    for sink, events in receivers.events().items():
        ids = Counter(e["id"] for e in events)
        for name, keys in want_by_preset.items():
            missing = keys - set(ids)
            assert not missing, f"{sink} lost {len(missing)} of {len(keys)} {name} events"
        assert set(ids) <= want | {e["id"] for e in events if e.get("vendor") == "forwarder"}
        first: dict[str, dict[str, Any]] = {}
        for event in events:  # a duplicate is the very same event; only observed_time may differ
            event = {k: v for k, v in event.items() if k != "observed_time"}
            assert first.setdefault(event["id"], event) == event, f"{sink}: same id, different content"
