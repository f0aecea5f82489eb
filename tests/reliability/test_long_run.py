"""What a daemon running for a long time meets, with time compressed by small settings: one
organization whose vendor answers slowly must not hold the source's other organizations back,
and a sink that cannot deliver, holding a full journal, can be let go without losing anything.

The source's cycle used to wait for its slowest organization, and the scheduler skipped every
run due meanwhile: the healthy organizations were not polled again until the slow walk ended
(a tenant with a long backlog or a slow API delayed every tenant's events by hours).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml

from tests.support.config import file_sink, make_config, sink_lag, state
from tests.support.daemon import DaemonProcess, cli, read_ndjson
from tests.support.emulators import EmulatorProcess, running
from tests.support.health import get, health, metric
from tests.support.ports import free_port
from tests.support.receivers import events_in_hec, hec_sink
from tests.support.vendors import ORGS, codacy_source, emulator_of
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SLOW, FAST = ORGS  # gh/acme answers slowly, gl/globex at once
HANG_S = 30.0  # each answer for SLOW: far longer than the test needs with SLOW not holding FAST


@pytest.fixture
def codacy() -> Iterator[EmulatorProcess]:
    emulator = running("codacy", entries=5, options={"orgs": ORGS, "span_s": 3600})
    yield emulator
    emulator.stop()


def ids_of(codacy: EmulatorProcess, org: str) -> set[str]:
    key = emulator_of("codacy").entry_key
    return {key(entry) for entry in codacy.entries() if entry["_org"] == org}


def arrived(out: Path, want: set[str]) -> bool:
    return want <= {e["id"] for e in read_ndjson(out)}


def held_by(port: int, sinks: list[str]) -> bool:
    journal = health(port, "/readyz")[1]["journal"]
    return bool(journal["full"]) and [h["sink"] for h in journal["held_by"]] == sinks


def answered_for(codacy: EmulatorProcess, org: str) -> int:
    """Requests for ``org`` the emulator has answered (it logs a request once answered)."""
    return sum(f"/organizations/{org}/audit" in path for _, _, path, _ in codacy.control("GET", "requests"))


def test_a_slow_organization_does_not_hold_the_others_back(tmp_path: Path, codacy: EmulatorProcess) -> None:
    codacy.control("POST", "faults", {"status": 0, "delay_s": HANG_S, "count": 1000, "path_contains": f"/{SLOW}/"})
    out = tmp_path / "out"
    cfg = make_config(
        tmp_path,
        codacy_source(codacy.url, interval_s=0.3, timeout_s=2 * HANG_S),
        {"file": file_sink(out)},
        log={"level": "debug"},
    )
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        for round_ in range(3):  # new entries of FAST, round after round, each needing a poll of its own
            codacy.control("POST", "entries", {"generate": 2, "orgs": [FAST], "span_s": 1})
            want = ids_of(codacy, FAST)
            wait_until(
                f"round {round_}: {FAST}'s new entries delivered",
                partial(arrived, out, want),
                timeout=HANG_S,
                detail=daemon.log,
            )
            # still within SLOW's first answer: FAST was polled again and again meanwhile
            assert answered_for(codacy, SLOW) == 0, f"{FAST} waited for {SLOW}'s walk"
        assert answered_for(codacy, FAST) >= 3
        log = daemon.log()
        assert "organization still being polled; this cycle skips it" in log  # SLOW's polls never overlap
        assert daemon.alive() and "Traceback" not in log, log[-3000:]
    finally:
        daemon.kill()


def test_a_sink_holding_the_full_journal_is_let_go_by_a_reload_with_finite_retries(tmp_path: Path) -> None:
    """A receiver refusing for good holds a full journal (here ``max_bytes``) for every sink and
    source; the documented way out: ``retry.max_attempts`` set by a reload dead-letters what that
    sink cannot deliver, polling resumes and the healthy sink gets every entry, nothing lost."""
    codacy = running("codacy", entries=60, options={"orgs": ORGS, "span_s": 2 * 86400})
    hec = running("splunk_hec")
    hec.control("POST", "faults", {"status": 503, "count": 1_000_000, "path_contains": "/services/collector/event"})
    port = free_port()
    out = tmp_path / "out"
    cfg = make_config(
        tmp_path,
        codacy_source(codacy.url, slice_hours=4),
        {"hec": hec_sink(hec.url, batch_max_events=10), "file": file_sink(out)},
        journal={"max_bytes": 20_000},
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        want = ids_of(codacy, SLOW) | ids_of(codacy, FAST)
        # the file sink catches up while HEC refuses: then HEC alone holds the full journal (the
        # moment it fills, the file sink may still be writing its last batch)
        wait_until("the journal full, held by HEC alone", partial(held_by, port, ["hec"]), detail=daemon.log)
        assert "journal is full; polling paused until sinks drain (nothing is dropped)" in daemon.log()
        assert metric(get(f"http://127.0.0.1:{port}/metrics").text, "audit_forwarder_journal_full") == 1
        shown = state(cfg)["journal"]  # `state show` tells the operator too
        assert shown["full"] and shown["max_bytes"] == 20_000 and shown["bytes"] >= 20_000
        assert "The journal is full" in cli(cfg, "state", "show").stdout
        assert len({e["id"] for e in read_ndjson(out)}) < len(want)  # the healthy sink waits too

        config = yaml.safe_load(cfg.read_text())
        config["retry"]["max_attempts"] = 2
        cfg.write_text(yaml.safe_dump(config))
        daemon.signal(signal.SIGHUP)
        wait_until("every entry in the healthy sink", partial(arrived, out, want), detail=daemon.log)
        wait_until("HEC's lag dead-lettered", lambda: sink_lag(cfg, "hec") == 0, detail=daemon.log)
        [hec_row] = [s for s in state(cfg)["sinks"] if s["sink"] == "hec"]
        assert hec_row["dead_letters"] == len(want)  # each one kept for `dlq replay`, none dropped
        assert metric(get(f"http://127.0.0.1:{port}/metrics").text, "audit_forwarder_journal_full") == 0
        assert not state(cfg)["journal"]["full"]
        assert daemon.alive() and "Traceback" not in daemon.log()
    finally:
        daemon.kill()
        hec.stop()
        codacy.stop()


def test_under_a_trickle_an_entry_goes_out_when_its_poll_ends_not_a_batch_age_later(
    tmp_path: Path, codacy: EmulatorProcess
) -> None:
    """``batch_max_age_s`` an hour: each lone entry still reaches HEC and the file within the poll
    that collected it, since the end of a poll sends what is waiting (docs/sinks.md, Batching)."""
    hec = running("splunk_hec")
    out = tmp_path / "out"
    hour = 3600.0
    cfg = make_config(
        tmp_path,
        codacy_source(codacy.url, interval_s=0.5),
        {"hec": hec_sink(hec.url, batch_max_age_s=hour), "file": file_sink(out, batch_max_age_s=hour)},
    )
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        for round_ in range(3):
            codacy.control("POST", "entries", {"generate": 1, "orgs": [FAST], "span_s": 0.001})
            want = ids_of(codacy, FAST) | ids_of(codacy, SLOW)
            wait_until(f"round {round_} in the file", partial(arrived, out, want), detail=daemon.log)
            wait_until(
                f"round {round_} in HEC",
                lambda: want <= {e["id"] for e in events_in_hec(hec)},  # noqa: B023 (waited on at once)
                detail=daemon.log,
            )
    finally:
        daemon.kill()
        hec.stop()
