"""The benchmark harness end to end on a tiny backlog and a two-second live feed: the JSON it
writes has the documented shape. Timings are never asserted (they depend on the machine and
its load)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.run import main

EVENTS = 2000
LIVE_RATE = 10


QUICK_EXTRAS = ["--startup-runs", "1", "--idle-s", "2", "--idle-orgs", "3", "--idle-interval", "1"]


def test_bench_harness_writes_the_documented_shape(tmp_path: Path) -> None:
    main(
        [
            "--events",
            str(EVENTS),
            "--sinks",
            "file",
            "--output-dir",
            str(tmp_path),
            "--live-s",
            "2",
            "--live-rate",
            str(LIVE_RATE),
            "--live-interval",
            "1",
            *QUICK_EXTRAS,
        ]
    )

    results = orjson.loads((tmp_path / "latest.json").read_bytes())
    assert set(results) == {"sinks", "baselines", "large_answers", "machine", "startup", "idle"}
    assert_startup_and_idle(results)
    assert set(results["sinks"]) == {"file"}
    assert set(results["baselines"]) == {"orjson", "httpx_loop", "normalize_loop", "durable_loop", "curl_jq"}
    sink = results["sinks"]["file"]
    for key in ("events_per_s", "cpu_s_per_100k", "peak_rss_mb", "latency_p50_s", "latency_p99_s"):
        assert isinstance(sink[key], float) and sink[key] > 0, key
    assert sink["delivered"] == EVENTS and sink["exit_code"] == 0
    assert sink["latency_p50_s"] <= sink["latency_p99_s"]
    assert sink["drain_p50_s"] <= sink["drain_p99_s"]
    live = sink["live"]
    assert live["entries"] == live["delivered"] == 2 * LIVE_RATE
    assert live["interval_s"] == 1 and live["lag_s"] == 0 and live["batch_max_age_s"] == 1.0
    assert live["target_p99_s"] == 2.0 and isinstance(live["meets_target"], bool)
    for name, base in results["baselines"].items():
        assert base["events_per_s"] > 0 and base["cpu_s_per_100k"] > 0, name
        assert base["events"] == EVENTS, name
    assert set(sink["cpu_ratio"]) == set(results["baselines"])
    assert results["machine"]["events"] == EVENTS
    large = results["large_answers"]["file"]  # the 24-hour slices of a backlog 33,000 entries a day
    assert large["delivered"] == EVENTS and large["exit_code"] == 0 and large["span_days"] == 1.0
    assert large["peak_rss_mb"] > 0 and set(large["cpu_ratio"]) == set(results["baselines"])
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_budget_splits_the_hot_path_into_its_stages(tmp_path: Path) -> None:
    from bench.budget import main as budget

    budget(["--events", str(EVENTS), "--repeat", "1", "--output-dir", str(tmp_path)])
    result = orjson.loads((tmp_path / "budget.json").read_bytes())
    assert result["events"] == EVENTS
    stages = result["stages"]
    assert "floor: orjson loads + dumps each" in stages and "journal append (SQLite, fsync)" in stages
    assert {
        "sink: file (json lines)",
        "sink: syslog (RFC 5424 encode)",
        "sink: HEC (envelopes)",
        "sink: S3 (NDJSON + gzip -1)",
    } <= set(stages)
    for name, stage in stages.items():
        assert stage["us_per_event"] >= 0 and stage["x_floor"] >= 0, name
    assert result["pipeline_to_file_s_per_100k"] > 0


def test_instruction_count_gives_the_cost_of_one_more_event(tmp_path: Path) -> None:
    """Under valgrind: the forwarder delivers both backlogs (the tool refuses a count of a run
    that did not), and one more event costs a plausible number of instructions. 3,000 events
    put ~400 million instructions between the two runs, twice what a run's wall-time dependent
    extra work has been seen to add."""
    from bench.instructions import main as instructions

    result = instructions(
        ["--events", "3000", "--repeat", "1", "--output-dir", str(tmp_path), "--work-dir", str(tmp_path / "work")]
    )
    assert orjson.loads((tmp_path / "instructions.json").read_bytes()) == result
    assert result["instructions_at_2n"] > result["instructions_at_n"] > 0
    # Tens of thousands of instructions per event (parse, hash, normalize, journal, write);
    # below a thousand or above ten million, the runs would not have measured events.
    assert 1_000 < result["instructions_per_event"] < 10_000_000
    assert result["startup_instructions"] > 0
    assert Path(result["profile"]).is_file()


def test_instruction_count_reads_cachegrinds_summary(tmp_path: Path) -> None:
    from bench.instructions import summary_instructions

    profile = tmp_path / "cachegrind.out"
    profile.write_text("desc: I1 cache: ...\ncmd: python\nevents: Ir\nfl=x.c\nfn=f\n1 5\nsummary: 123456\n")
    assert summary_instructions(profile) == 123456
    profile.write_text("events: Ir\n")
    with pytest.raises(ValueError, match="no summary line"):
        summary_instructions(profile)


def assert_startup_and_idle(results: dict[str, Any]) -> None:
    assert set(results["startup"]) == {"help", "schema", "state_show"}
    for name, cmd in results["startup"].items():
        assert cmd["runs"] == 1 and cmd["exit_codes"] == [0], name
        assert 0 < cmd["cpu_s_min"] <= cmd["cpu_s"] <= cmd["cpu_s_max"] and cmd["peak_rss_mb"] > 0, name
    idle = results["idle"]
    assert idle["organizations"] == 3 and idle["interval_s"] == 1 and idle["exit_code"] == 0
    assert idle["window_s"] >= 2 and idle["requests_in_window"] >= 3  # every organization polled in the window
    assert idle["cpu_s"] >= 0 and idle["rss_mb_start"] > 0 and isinstance(idle["meets_cpu_target"], bool)
    # the window's halves tell a settling from a leak (bench.idle.rss_trend)
    assert idle["rss_mb_mid"] > 0 and idle["requests_per_organization"] >= 1
    halves = idle["rss_growth_first_half_mb"] + idle["rss_growth_second_half_mb"]
    assert halves == pytest.approx(idle["rss_mb_end"] - idle["rss_mb_start"], abs=0.2)
    # a 2 s window may leave too few samples in its second half for a slope: None then, as
    # tests/bench/test_idle_trend.py proves of bench.idle.rss_trend itself
    for key in ("rss_slope_mb_per_hour_second_half", "rss_anon_slope_mb_per_hour_second_half"):
        assert idle[key] is None or isinstance(idle[key], float), key
    assert 0 < idle["rss_anon_mb_start"] < idle["rss_mb_start"] and idle["rss_anon_mb_end"] > 0


def test_compare_measures_another_revision_in_the_same_run(tmp_path: Path) -> None:
    """``--compare HEAD`` (the committed tree): the drain, the start-up and the idle daemon are
    measured on both trees, the ratios are ours over REF's, and the temporary worktree is gone."""
    main(
        [
            "--events",
            str(EVENTS),
            "--sinks",
            "file",
            "--output-dir",
            str(tmp_path),
            "--live-s",
            "0",
            *QUICK_EXTRAS,
            "--compare",
            "HEAD",
        ]
    )

    results = orjson.loads((tmp_path / "latest.json").read_bytes())
    ref = results["compare"]
    assert ref["ref"] == "HEAD" and len(ref["commit"]) == 40
    assert ref["sinks"]["file"]["delivered"] == EVENTS and ref["sinks"]["file"]["exit_code"] == 0
    assert_startup_and_idle(results)
    assert_startup_and_idle(ref)
    ratio = ref["ratio"]
    sink = ratio["sinks"]["file"]
    assert sink["cpu_s_per_100k"] == round(
        results["sinks"]["file"]["cpu_s_per_100k"] / ref["sinks"]["file"]["cpu_s_per_100k"], 3
    )
    assert set(ratio["startup"]) == {"help", "schema", "state_show"} and set(ratio["idle"]) == {"cpu_s", "rss_mb_end"}
    worktrees = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True, check=True).stdout
    assert "af-bench-ref-" not in worktrees
