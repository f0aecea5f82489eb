"""Promise 1, nothing lost: 50 SIGKILLs at random moments, four vendors, four real receivers.

While the daemon lives (0.2 to 1.5 s, seeded), all four vendor emulators (Codacy, ConfigCat,
Codescoring, CodeStax) gain entries and four sinks drain the journal: file, rsyslog over
TCP, the Splunk HEC receiver and moto S3. A kill can land anywhere: mid-poll of any source,
mid-transaction, mid-batch, between a receiver's confirmation and the offset's commit. After
a final clean ``once`` every entry of every vendor must be in every receiver, and any
duplicate must be the same event under the same id.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.config import make_config
from tests.support.daemon import cli, start
from tests.support.emulators import EmulatorProcess
from tests.support.figures import Figures, vm_hwm_kb
from tests.support.receivers import AWS_ENV, Receivers
from tests.support.vendors import VENDORS, expected_ids

pytestmark = pytest.mark.integration

KILLS = 50
SEED = 20240607


def test_fifty_sigkills_lose_nothing_in_any_sink(
    tmp_path: Path, vendor_emulators: dict[str, EmulatorProcess], receivers: Receivers, figures: Figures
) -> None:
    sources = {name: VENDORS[name].source(emulator.url) for name, emulator in vendor_emulators.items()}
    cfg = make_config(tmp_path, sources, receivers.sinks())
    rng = random.Random(SEED)
    peak_kb = 0
    unexpected_exits = []
    began = time.monotonic()
    for life in range(KILLS):
        for name, emulator in vendor_emulators.items():
            more = {"generate": rng.randint(1, 8), "span_s": 5, **VENDORS[name].generate}
            emulator.control("POST", "entries", more)
        daemon = start(cfg, "run", env=AWS_ENV)
        time.sleep(rng.uniform(0.2, 1.5))
        if daemon.poll() is not None:  # it must still be alive: a crash on its own is a failure
            unexpected_exits.append((life, daemon.returncode, daemon.stderr.read() if daemon.stderr else b""))
        else:
            try:
                peak_kb = max(peak_kb, vm_hwm_kb(daemon.pid))
            except (FileNotFoundError, AssertionError):
                pass
            os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)
        if daemon.stderr:
            daemon.stderr.close()
    killed_in = time.monotonic() - began
    final = cli(cfg, "once", "--timeout", "150", timeout=240, env=AWS_ENV)
    assert final.returncode == 0, final.stderr[-3000:]
    assert not unexpected_exits, f"daemon exited on its own: {unexpected_exits[:2]!r}"

    want_by_vendor = {name: expected_ids(emulator, name) for name, emulator in vendor_emulators.items()}
    want = set().union(*want_by_vendor.values())
    assert len(want) == sum(len(ids) for ids in want_by_vendor.values()), "two vendors' ids collide"
    lost = 0
    duplicated = 0
    duplicated_by_vendor: Counter[str] = Counter()
    got_by_sink = receivers.events()
    torn = receivers.torn
    for sink, events in got_by_sink.items():
        ids = Counter(e["id"] for e in events)
        for vendor, vendor_ids in want_by_vendor.items():
            missing = vendor_ids - set(ids)
            lost += len(missing)
            assert not missing, f"{sink} lost {len(missing)} of {len(vendor_ids)} {vendor} events"
        assert set(ids) <= want | {e["id"] for e in events if e.get("vendor") == "forwarder"}
        duplicated += sum(n - 1 for n in ids.values())
        seen: set[str] = set()
        for event in events:
            if event["id"] in seen:
                duplicated_by_vendor[event["source"]] += 1
            seen.add(event["id"])
        first: dict[str, dict[str, Any]] = {}
        for event in events:  # a duplicate is the very same event; only observed_time may differ
            event = {k: v for k, v in event.items() if k != "observed_time"}
            assert first.setdefault(event["id"], event) == event, f"{sink}: same id, different content"
        assert {e["source"] for e in events if e["id"] in want} == set(VENDORS), f"{sink}: a source is missing"
    figures.record(lost=lost, duplicated=duplicated, rss_kb=peak_kb)
    per_vendor = ", ".join(
        f"{name}={len(ids)} (duplicated {duplicated_by_vendor[name]})" for name, ids in want_by_vendor.items()
    )
    print(
        f"\ncrash: {KILLS} SIGKILLs in {killed_in:.0f}s, {len(want)} entries ({per_vendor}) x 4 sinks, "
        f"lost={lost}, duplicated={duplicated}, torn syslog fragments={torn}"
    )
