"""``python -m bench.run [--quick] [--events N] [--sinks file,syslog,hec,s3] [--live-s S] [--compare REF]``

Serves N Codacy entries from the benchmark emulator, runs ``audit-forwarder once`` (fetch,
normalize, journal, deliver) in its own process into each sink in turn (the drain phase),
then ``audit-forwarder run`` against a live feed into each sink (the latency phase, see
``bench/live.py``), then the five baselines over the same windows of the backlog, then the
command line's start-up (``bench/startup.py``) and the idle daemon (``bench/idle.py``), and
writes ``bench/results/latest.json`` and ``.png``. With ``--compare REF``, the drain phase,
the start-up and the idle daemon are also measured on revision REF in the same run
(``bench/compare.py``), and ``compare.ratio`` gives this tree's figures over REF's.
See ``docs/performance.md`` for what each figure means exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench import baselines, compare, idle, startup
from bench.live import Feed, run_live
from bench.procs import REPO_ROOT, Measured, run_measured, start_listening
from bench.report import chart, table
from bench.sinks import TARGETS, Target
from forwarder.emulators.codacy import CodacyEmulator

RESULTS = Path(__file__).resolve().parent / "results"
SPAN_S = 86_400.0  # the backlog covers one day
ENTRIES_PER_PAGE = 10_000  # Codacy answers a whole slice at once: size slices to ~10k entries
ORG = "gh/acme"
# A Codacy backlog of 1,000,000 entries over 30 days in the default 24-hour slices: what one answer
# holds when the vendor is denser than the bench's 10,000-entry slices (issue 24's memory target)
LARGE_ANSWER_ENTRIES = 33_000
TOKEN = CodacyEmulator().token
DRAIN_TIMEOUT_S = 60.0  # after the forwarder exits, how long a receiver may take to write


def slice_hours(events: int) -> float:
    return SPAN_S / 3600 / max(1, round(events / ENTRIES_PER_PAGE))


def forwarder_config(work: Path, url: str, events: int, sink: dict[str, Any], **source: float) -> Path:
    """The drain phase's config; ``source`` overrides settings of the Codacy source."""
    config = {
        "state_dir": str(work / "state"),
        "journal": {"max_events": events * 2 + 10_000, "max_bytes": 1 << 40},
        "sources": {
            "codacy": {
                "type": "codacy",
                "base_url": f"{url}/api/v3",
                "api_token": TOKEN,
                "organizations": [ORG],
                "initial_lookback_days": (SPAN_S + 3600) / 86_400,
                "lag_s": 0,
                "slice_hours": slice_hours(events),
                "interval_s": 60,
                "jitter_s": 0,
                **source,
            }
        },
        "sinks": {"out": sink},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def percentile_time(samples: list[tuple[float, int]], wanted: int) -> float | None:
    """The first sample at which at least ``wanted`` events had been written."""
    return next((t for t, n in samples if n >= wanted), None)


def run_sink(
    target: Target, work: Path, url: str, events: int, tree: Path = REPO_ROOT, **source: float
) -> dict[str, Any]:
    config = forwarder_config(work, url, events, target.config, **source)
    cmd = [sys.executable, "-m", "forwarder", "-c", str(config), "once", "--timeout", "7200"]
    env = {**target.env, **startup.tree_env(tree)}
    measured = run_measured(cmd, env=env, log=work / "forwarder.log", count=target.count, cwd=tree)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    start = time.monotonic() - (measured.samples[-1][0] if measured.samples else measured.wall_s)
    delivered = target.count()
    while delivered < events and time.monotonic() < deadline:
        time.sleep(0.1)
        delivered = target.count()
        measured.samples.append((time.monotonic() - start, delivered))
    measured.samples.append((time.monotonic() - start, delivered))
    if measured.returncode != 0 or delivered < events:
        tail = (work / "forwarder.log").read_text(errors="replace")[-3000:]
        print(f"!! {target.name}: exit {measured.returncode}, {delivered}/{events} delivered\n{tail}", file=sys.stderr)
    return {
        **costs(measured, events),
        "peak_rss_mb": round(measured.peak_rss_mb, 1),
        "drain_p50_s": _round(percentile_time(measured.samples, math.ceil(events * 0.50))),
        "drain_p99_s": _round(percentile_time(measured.samples, math.ceil(events * 0.99))),
        "delivered": delivered,
        "exit_code": measured.returncode,
    }


def run_large_answers(name: str, work: Path, events: int) -> dict[str, Any]:
    """The drain phase over a backlog as dense as ``LARGE_ANSWER_ENTRIES`` per day, read with the
    default 24-hour slices: each answer the vendor would send for a configured slice holds that
    many entries, whatever N (N / 33,000 days of backlog), so the peak is the forwarder's bound
    on answer size, not the bench's choice of slices."""
    work.mkdir()
    span_s = max(1.0, events / LARGE_ANSWER_ENTRIES) * 86_400
    emulator, url = start_listening(
        ["bench.emulators", "codacy", "--entries", str(events), "--span-s", str(span_s), "--org", ORG],
        work / "codacy.log",
    )
    try:
        with TARGETS[name](work) as target:
            result = run_sink(target, work, url, events, slice_hours=24, initial_lookback_days=(span_s + 3600) / 86_400)
    finally:
        emulator.kill()
        emulator.wait(timeout=10)
    return {
        "entries_per_configured_slice": round(events / (span_s / 86_400)),
        "span_days": round(span_s / 86_400, 2),
        **result,
    }


def run_live_sink(name: str, work: Path, feed: Feed) -> dict[str, Any]:
    """The live phase for one sink, with a fresh receiver and an emulator that starts empty."""
    work.mkdir()
    emulator, url = start_listening(["bench.emulators", "codacy", "--org", ORG], work / "codacy.log")
    try:
        with TARGETS[name](work, live=True) as target:
            # lag_s 0: a positive lag_s delays every entry by that much, by design
            config = forwarder_config(
                work,
                url,
                1,
                target.config,
                interval_s=feed.interval_s,
                jitter_s=0,
                lag_s=0,
                initial_lookback_days=0.01,
                slice_hours=24,
            )
            return run_live(target, config, url, feed, ORG, work / "forwarder.log")
    finally:
        emulator.kill()
        emulator.wait(timeout=10)


def costs(measured: Measured, events: int) -> dict[str, Any]:
    return {
        "events_per_s": round(events / measured.wall_s, 1),
        "cpu_s_per_100k": round(measured.cpu_s / events * 100_000, 3),
        "wall_s": round(measured.wall_s, 3),
        "cpu_s": round(measured.cpu_s, 3),
        # the event loop's thread (fetch, parse, normalize, chain, the delivery loop); the rest of
        # cpu_s is the journal's and the sinks' worker threads (SQLite, segment and file I/O, syncs)
        "main_thread_cpu_s": _round(measured.main_thread_cpu_s),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def windows(events: int, listening_ms: int) -> list[tuple[int, int]]:
    """The forwarder's slices over the same backlog (same width, same entries per page)."""
    size = int(slice_hours(events) * 3_600_000)
    lo, end = listening_ms - int((SPAN_S + 3600) * 1000), int(time.time() * 1000)
    out = []
    while lo < end:
        out.append((lo, min(lo + size, end) - 1))  # Codacy's bounds are inclusive: no entry twice
        lo += size
    return out


def run_baselines(url: str, work: Path, events: int, listening_ms: int) -> dict[str, Any]:
    audit = f"{url}/api/v3/organizations/{ORG}/audit"
    spans = windows(events, listening_ms)
    pages = baselines.fetch_pages(audit, TOKEN, spans)
    count, cpu = baselines.orjson_floor(pages)
    del pages
    results: dict[str, Any] = {
        "orjson": {
            "events_per_s": round(count / cpu, 1),
            "cpu_s_per_100k": round(cpu / count * 100_000, 3),
            "cpu_s": round(cpu, 3),
            "events": count,
        },
    }
    for kind in baselines.LOOPS:
        out = work / f"{kind}.ndjson"
        cmd = [sys.executable, "-m", "bench.baselines", kind, audit, TOKEN, ORG, str(out), orjson.dumps(spans).decode()]
        results[kind] = {**costs(run_measured(cmd), count), "events": _lines(out)}
    out = work / "curl_jq.ndjson"
    script = work / "curl_jq.sh"
    script.write_text(baselines.curl_jq_script(audit, TOKEN, out, spans))
    results["curl_jq"] = {
        **costs(run_measured(["bash", str(script)], log=work / "curl_jq.log"), count),
        "events": _lines(out),
    }
    return results


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def machine(events: int) -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")),
            model,
        )
    return {
        "events": events,
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def ratios(results: dict[str, Any]) -> None:
    """Our CPU per event divided by each baseline's: how many times the floor we spend."""
    for sink in [*results["sinks"].values(), *results["large_answers"].values()]:
        sink["cpu_ratio"] = {
            name: round(sink["cpu_s_per_100k"] / base["cpu_s_per_100k"], 2)
            for name, base in results["baselines"].items()
        }
        sink["throughput_ratio"] = {
            name: round(sink["events_per_s"] / base["events_per_s"], 3) for name, base in results["baselines"].items()
        }


@dataclass(frozen=True)
class Extras:
    """The measurements beyond the drain and live phases; 0 runs or seconds skips one."""

    startup_runs: int = 5
    idle_s: float = 120.0
    idle_orgs: int = 100
    idle_interval_s: float = 60.0
    compare: str | None = None
    large_answers: list[str] = field(default_factory=list)  # sinks drained from 33,000-entry answers


def run_extras(results: dict[str, Any], key: str, tree: Path, work: Path, extras: Extras) -> None:
    """Start-up and idle figures of ``tree`` into ``results[key]`` / ``results["compare"][key]``."""
    into = results if tree == REPO_ROOT else results["compare"]
    if extras.startup_runs > 0:
        print(f"command-line start-up ({key}, {extras.startup_runs} runs each) ...", flush=True)
        emulator, url = start_listening(
            ["bench.emulators", "codacy", "--entries", "200", "--org", ORG], work / f"startup-codacy-{key}.log"
        )
        try:
            into["startup"] = startup.measure(tree, work / f"startup-{key}", url, extras.startup_runs)
        finally:
            emulator.kill()
            emulator.wait(timeout=10)
    if extras.idle_s > 0:
        print(
            f"idle daemon ({key}: {extras.idle_orgs} organizations every {extras.idle_interval_s:g} s, "
            f"{extras.idle_s:g} s window) ...",
            flush=True,
        )
        into["idle"] = idle.measure(tree, work / f"idle-{key}", extras.idle_orgs, extras.idle_interval_s, extras.idle_s)


def run(
    events: int, sinks: list[str], out_dir: Path, feed: Feed | None, extras: Extras | None = None
) -> dict[str, Any]:
    extras = extras or Extras()
    results: dict[str, Any] = {"sinks": {}, "baselines": {}, "large_answers": {}, "machine": machine(events)}
    with tempfile.TemporaryDirectory(prefix="af-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        ref: Path | None = None
        if extras.compare:
            ref, commit = stack.enter_context(compare.worktree(extras.compare))
            results["compare"] = {"ref": extras.compare, "commit": commit, "sinks": {}}
        if sinks:
            run_drain(results, work, events, sinks, feed, ref)
        for name in extras.large_answers:
            print(f"forwarding {LARGE_ANSWER_ENTRIES:,}-entry answers into {name} ...", flush=True)
            results["large_answers"][name] = run_large_answers(name, work / f"large-{name}", events)
        run_extras(results, "this", REPO_ROOT, work, extras)
        if ref is not None:
            run_extras(results, "ref", ref, work, extras)
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    ratios(results)
    if "compare" in results:
        results["compare"]["ratio"] = compare.ratios(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    if sinks:
        chart(results, out_dir / "latest.png")
    return results


def run_drain(
    results: dict[str, Any], work: Path, events: int, sinks: list[str], feed: Feed | None, ref: Path | None
) -> None:
    """The drain and live phases into each sink (the drain also from ``ref``), then the baselines."""
    print(f"generating {events:,} Codacy entries ...", flush=True)
    emulator, url = start_listening(
        ["bench.emulators", "codacy", "--entries", str(events), "--span-s", str(SPAN_S), "--org", ORG],
        work / "codacy.log",
    )
    listening_ms = int(time.time() * 1000)
    try:
        for name in sinks:
            sink_work = work / name
            sink_work.mkdir()
            print(f"forwarding into {name} ...", flush=True)
            with TARGETS[name](sink_work) as target:
                results["sinks"][name] = run_sink(target, sink_work, url, events)
            if ref is not None:
                print(f"forwarding into {name} from {results['compare']['ref']} ...", flush=True)
                (sink_work / "ref").mkdir()
                with TARGETS[name](sink_work / "ref") as target:
                    results["compare"]["sinks"][name] = run_sink(target, sink_work / "ref", url, events, ref)
            live: dict[str, Any] = {"latency_p50_s": None, "latency_p99_s": None}
            if feed is not None:
                print(f"live feed into {name} ({feed.rate_per_s:g}/s for {feed.seconds:g} s) ...", flush=True)
                live = run_live_sink(name, sink_work / "live", feed)
            results["sinks"][name].update(
                latency_p50_s=live.pop("latency_p50_s"), latency_p99_s=live.pop("latency_p99_s"), live=live
            )
        print("baselines ...", flush=True)
        results["baselines"] = run_baselines(url, work, events, listening_ms)
    finally:
        emulator.kill()
        emulator.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of 1,000,000")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--sinks", default=",".join(TARGETS), help="comma-separated subset of " + ",".join(TARGETS))
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--live-s", type=float, default=30.0, help="seconds of live feed per sink; 0 skips it")
    parser.add_argument("--live-rate", type=float, default=20.0, help="entries per second of the live feed")
    parser.add_argument(
        "--large-answers",
        default="file",
        help="sinks to drain again with 33,000-entry answers (24 h slices); '' skips it",
    )
    parser.add_argument("--live-interval", type=float, default=5.0, help="the daemon's poll interval_s when live")
    parser.add_argument(
        "--startup-runs",
        type=int,
        default=5,
        help="runs of each command for the start-up figures (median); 0 skips them",
    )
    parser.add_argument(
        "--idle-s", type=float, default=120.0, help="the idle window in seconds (the issue asks 600); 0 skips it"
    )
    parser.add_argument("--idle-orgs", type=int, default=100, help="organizations the idle daemon polls")
    parser.add_argument("--idle-interval", type=float, default=60.0, help="the idle daemon's interval_s")
    parser.add_argument(
        "--compare",
        metavar="REF",
        default=None,
        help="also measure git revision REF in the same run (drain, start-up, idle)",
    )
    args = parser.parse_args(argv)
    events = args.events or (100_000 if args.quick else 1_000_000)
    sinks = [s for s in args.sinks.split(",") if s]
    unknown = sorted(set(sinks) - set(TARGETS))
    if unknown:
        parser.error(f"unknown sinks {unknown}; choose among {sorted(TARGETS)}")
    feed = Feed(args.live_s, args.live_rate, args.live_interval) if args.live_s > 0 else None
    large = [s for s in args.large_answers.split(",") if s]
    unknown = sorted(set(large) - set(TARGETS))
    if unknown:
        parser.error(f"unknown sinks {unknown}; choose among {sorted(TARGETS)}")
    extras = Extras(args.startup_runs, args.idle_s, args.idle_orgs, args.idle_interval, args.compare, large)
    results = run(events, sinks, args.output_dir, feed, extras)
    print(table(results))
    print(f"wrote {args.output_dir / 'latest.json'}" + (" and latest.png" if sinks else ""))


if __name__ == "__main__":
    main()
